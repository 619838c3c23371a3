"""The ``watermark`` task: train an invisible watermark (``ganforge train task=watermark``, preset
``ganforge train watermark data.root=DIR``).

Config section: ``watermark`` (:class:`WatermarkConfig`), plus the shared ones (``data``, ``train``,
``g_optim`` for the encoder and decoder together, ``d_optim`` for the discriminator).

An encoder (:class:`~ganforge.models.watermark.WatermarkEncoder`) adds an invisible residual that
carries ``watermark.bits`` bits; a decoder reads them back; a discriminator keeps marked images
indistinguishable from clean ones (HiDDeN, RivaGAN). The networks work on **luminance** at a fixed
internal resolution ``watermark.res`` (TrustMark): the host image is resized to ``res`` for the
encoder, the residual is resized to the host's size, scaled to a fixed strength and added to every
channel; the decoder reads the (attacked) image resized to ``res``. So one model marks grey and colour
images of any size, and resizing or cropping and resizing back mostly cancel out.

**Strength.** The residual is scaled so its root mean square at the host's size equals the level that
gives ``watermark.psnr`` dB (before clipping and rounding): the decoder learns under a fixed power
(a curriculum starts at ``psnr_start`` and reaches ``psnr`` after ``psnr_steps`` steps), and at embedding a ``strength`` factor trades PSNR (``psnr - 20 log10(strength)``) against robustness.

Each step: a batch of the data at a random host size from ``watermark.sizes``, random bits (from a
seeded generator), the marked batch, one attack of ``watermark.attacks`` (or two in a row with
probability ``watermark.combine``) drawn by :class:`~ganforge.training.attacks.AttackLayer` after the
first ``watermark.clean_steps`` steps, rounding to 8 bits, then the loss

    BCE(decoder bits, message) + clean_weight * BCE(decoder(clean image), 1/2) + adv_weight * adversarial

(the middle term keeps the decoder undecided on unmarked images, which keeps detection's false
positives at the rate the binomial test says). Sample grids show validation images, their marked
versions and the difference amplified 10x, and log ``val_psnr`` and the bit accuracy after no attack,
JPEG 50 and resize 0.5. Networks in a checkpoint: ``generator`` (the :class:`WatermarkModel`: the encoder
and decoder together, keys ``encoder.*`` and ``decoder.*``) and ``discriminator``.
Loading a run gives a :class:`WatermarkHandle`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge import runs
from ganforge.config import SHARED_SECTIONS, Section, nonneg, positive
from ganforge.errors import ConfigError, RunError
from ganforge.imaging import make_grid_uint8, to_uint8
from ganforge.losses import d_logistic, g_nonsaturating
from ganforge.models.watermark import WatermarkDecoder, WatermarkDiscriminator, WatermarkEncoder
from ganforge.tasks.base import TASKS, ExportNet, Handle, Task
from ganforge.training import attacks as A
from ganforge.training.loop import TrainingLoop
from ganforge.training.parts import check_finite, decay_lr

GRID_MAX = 8
MIN_SIDE = 16  # smallest image side the decoder is asked to read (smaller images are refused)


@dataclass
class WatermarkConfig(Section):
    bits: int = 32  # message length the networks carry (32 to 64 and more)
    res: int = 64  # internal resolution (a multiple of 16): images are read and marked at res x res
    width: int = 16  # encoder and decoder channels
    d_width: int = 16  # discriminator channels
    psnr: float = 40.5  # the residual is scaled to this PSNR (dB, at strength 1)
    psnr_start: float = 30.0  # curriculum: training starts at this PSNR (a stronger mark) ...
    psnr_steps: int = 1000  # ... and moves linearly to watermark.psnr over these steps (0: no curriculum)
    sizes: List[int] = field(default_factory=lambda: [32, 64, 128])  # host sides drawn per step
    attacks: List[str] = field(default_factory=lambda: [
        "identity", "jpeg", "jpeg_diff", "resize", "crop", "blur", "noise", "brightness", "contrast", "rotate"])
    combine: float = 0.25  # probability of two attacks in a row
    clean_steps: int = 300  # steps without attacks first
    clean_weight: float = 0.1  # weight of BCE(decoder(clean), 1/2)
    adv_weight: float = 0.01  # weight of the adversarial loss (0: no discriminator)
    lr_decay_start: int = 0  # step at which both learning rates start decaying linearly ...
    lr_decay_steps: int = 0  # ... reaching 0 this many steps later (0: constant learning rates)
    crop_margin: float = 1.1  # reading: a crop hypothesis replaces the direct reading when its mean |logit| is this many times larger

    def check(self, key: str = "watermark") -> None:
        for k in ("bits", "res", "width", "d_width"):
            positive(f"{key}.{k}", getattr(self, k))
        if self.res % 16:
            raise ConfigError(f"{key}.res={self.res}: expected a multiple of 16 (e.g. {max(16, self.res - self.res % 16)})")
        for k in ("psnr", "psnr_start"):
            if not 20 <= getattr(self, k) <= 70:
                raise ConfigError(f"{key}.{k}={getattr(self, k)}: expected a PSNR between 20 and 70 dB")
        if not self.sizes or any(int(s) < MIN_SIDE for s in self.sizes):
            raise ConfigError(f"{key}.sizes={self.sizes}: expected a list of image sides of at least {MIN_SIDE}")
        bad = [a for a in self.attacks if a not in A.ATTACKS]
        if bad or not self.attacks:
            raise ConfigError(f"{key}.attacks: {bad or 'empty'} not allowed; choose from: {', '.join(A.ATTACKS)}")
        if not 0 <= self.combine <= 1:
            raise ConfigError(f"{key}.combine={self.combine}: expected a probability in [0, 1]")
        for k in ("psnr_steps", "clean_steps", "clean_weight", "adv_weight", "lr_decay_start", "lr_decay_steps"):
            nonneg(f"{key}.{k}", getattr(self, k))
        if not self.crop_margin >= 1:
            raise ConfigError(f"{key}.crop_margin={self.crop_margin}: expected a ratio of at least 1 (1.1 by default)")


def target_rms(psnr: float) -> float:
    """Root mean square of a residual in [-1, 1] units whose PSNR (over 8-bit levels) is ``psnr``."""
    return 2.0 * 10 ** (-psnr / 20)


def normalise(r: torch.Tensor, rms: float) -> torch.Tensor:
    """Scale each residual of ``r`` [N, 1, H, W] to root mean square ``rms``."""
    cur = r.pow(2).mean((1, 2, 3), keepdim=True).add(1e-12).sqrt()
    return r * (rms / cur)


def psnr_of(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two float batches in [-1, 1], over 8-bit levels."""
    mse = float(((a - b) * 127.5).pow(2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


class WatermarkModel(nn.Module):
    """The encoder and decoder of a run, and what marking and reading an image of any size means.

    ``forward(y, bits)``: the residual at the internal resolution, luma ``[N, 1, res, res]`` -> ``[N, 1, res, res]``
    (unnormalised; :meth:`residual` resizes and scales it)."""

    def __init__(self, encoder: WatermarkEncoder, decoder: WatermarkDecoder, psnr: float):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.res, self.n_bits, self.psnr = encoder.res, encoder.n_bits, float(psnr)

    def forward(self, y: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        return self.encoder(y, bits, self.decoder(y))  # the decoder's reading of the host informs the encoder

    def residual(self, x: torch.Tensor, bits: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """float images ``[N, C, H, W]`` in [-1, 1] -> the luma residual at full size ``[N, 1, H, W]``."""
        h, w = x.shape[2:]
        y = A.resize_to(A.to_luma(x), (self.res, self.res))  # [N, 1, res, res]
        r = self(y, bits)  # [N, 1, res, res]
        return normalise(A.resize_to(r, (h, w)), target_rms(self.psnr) * strength)  # [N, 1, H, W]

    def embed(self, x: torch.Tensor, bits: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """float images ``[N, C, H, W]`` -> marked float images (clamped to [-1, 1], not rounded)."""
        return (x + self.residual(x, bits, strength)).clamp(-1, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """float images ``[N, C, H, W]`` of any size -> bit logits ``[N, n_bits]``."""
        return self.decoder(A.resize_to(A.to_luma(x), (self.res, self.res)))


# ------------------------------------------------------------------------------------------
# training


class WatermarkTrainer(TrainingLoop):
    """Builds the encoder, decoder and discriminator from a ``task=watermark`` config and trains them."""

    def build(self) -> None:
        cfg = self.cfg
        if cfg.task != "watermark":
            raise ConfigError(f"task: WatermarkTrainer trains watermark networks and needs task=watermark, got task={cfg.task}")
        wm, t = cfg.watermark, cfg.train
        if t.compile:
            self.log("train.compile is not used when training a watermark: running eagerly")
        self.E = WatermarkEncoder(wm.bits, wm.res, wm.width).to(self.device)
        self.Dec = WatermarkDecoder(wm.bits, wm.res, wm.width).to(self.device)
        self.model = WatermarkModel(self.E, self.Dec, wm.psnr)
        self.nets["generator"] = self.model  # the encoder and decoder together (keys encoder.*, decoder.*)
        self.opt_g = self.optimizer(list(self.E.parameters()) + list(self.Dec.parameters()), cfg.g_optim)
        self.optims["g"] = self.opt_g
        self.D: Optional[nn.Module] = None
        if wm.adv_weight > 0:
            self.D = WatermarkDiscriminator(wm.res, wm.d_width).to(self.device)
            self.nets["discriminator"] = self.D
            self.opt_d = self.optimizer(self.D, cfg.d_optim)
            self.optims["d"] = self.opt_d
        self.attacks = A.AttackLayer(wm.attacks, wm.combine)
        self.wm_gen = torch.Generator().manual_seed(t.seed + 5)  # sizes, bits, attacks (on the CPU)
        # the fixed validation batch: seeded images at the largest training size, seeded messages
        n = self.images.shape[0]
        k = min(t.sample_count, GRID_MAX, n)
        g = torch.Generator().manual_seed(t.seed + 3)
        idx = torch.randperm(n, generator=g)[:k]
        s = max(wm.sizes)
        self.val_x = A.resize_to(self.data.images[idx].float().div(127.5).sub(1.0), (s, s)).to(self.device)
        self.val_bits = torch.randint(0, 2, (k, wm.bits), generator=g).float().to(self.device)

    def run_suffix(self) -> str:
        return f"wm{self.cfg.watermark.bits}"

    @property
    def psnr_now(self) -> float:
        """The PSNR the residual is scaled to at this step (the curriculum from ``psnr_start`` to ``psnr``)."""
        wm = self.cfg.watermark
        if wm.psnr_steps <= 0 or self.step >= wm.psnr_steps:
            return wm.psnr
        return wm.psnr_start + (wm.psnr - wm.psnr_start) * self.step / wm.psnr_steps

    def train_step(self) -> Dict[str, float]:
        wm, B = self.cfg.watermark, self.cfg.train.batch_size
        decay_lr(self.optims, {"g": self.cfg.g_optim.lr, "d": self.cfg.d_optim.lr}, self.step, wm.lr_decay_start, wm.lr_decay_steps)
        x, _ = self.real_batch()  # [B, C, H, W] in [-1, 1]
        g = self.wm_gen
        s = int(wm.sizes[int(torch.randint(0, len(wm.sizes), (1,), generator=g))])
        y = A.resize_to(A.to_luma(x), (s, s))  # [B, 1, s, s]: the host images
        bits = torch.randint(0, 2, (B, wm.bits), generator=g).float().to(self.device)  # [B, bits]
        y_in = A.resize_to(y, (wm.res, wm.res))  # [B, 1, res, res]
        clean_logits = self.model.logits(A.quantise(y))  # [B, bits]: what the decoder reads in the unmarked hosts
        r = normalise(A.resize_to(self.E(y_in, bits, clean_logits.detach()), (s, s)), target_rms(self.psnr_now))  # [B, 1, s, s]
        marked = (y + r).clamp(-1, 1)
        if self.step < wm.clean_steps:
            attacked, name = A.quantise(marked), "none"
        else:
            attacked, name = self.attacks(marked, g)
        logits = self.model.logits(attacked)  # [B, bits]
        loss_msg = F.binary_cross_entropy_with_logits(logits, bits)
        stats: Dict[str, float] = {}
        loss = loss_msg
        if wm.clean_weight > 0:
            loss_clean = F.binary_cross_entropy_with_logits(clean_logits, torch.full_like(clean_logits, 0.5))
            loss = loss + wm.clean_weight * loss_clean
            stats["clean"] = loss_clean.item() - math.log(2)  # 0 when the decoder is undecided
        marked_in = A.resize_to(marked, (wm.res, wm.res))
        if self.D is not None:
            loss_d = d_logistic(self.D(y_in), self.D(marked_in.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            self.D.requires_grad_(False)
            adv = g_nonsaturating(self.D(marked_in))
            self.D.requires_grad_(True)
            loss = loss + wm.adv_weight * adv
            stats.update(loss_d=loss_d.item(), adv_g=adv.item())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.step += 1
        self.images_seen += B
        acc = ((logits.detach() > 0).float() == bits).float().mean().item()
        stats.update(msg=loss_msg.item(), bit_acc=acc)
        return stats

    # ---- outputs --------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, float]]:
        """(the validation batch as luma, marked, and figures: PSNR, bit accuracy under three attacks)."""
        was = self.E.training, self.Dec.training
        self.E.eval(), self.Dec.eval()
        y = A.to_luma(self.val_x)
        marked = A.quantise(self.model.embed(y, self.val_bits))
        figs = {"val_psnr": psnr_of(marked, y)}
        for name, f in (("none", lambda v: v), ("jpeg50", lambda v: A.jpeg(v, 50)), ("resize0.5", lambda v: A.resize(v, 0.5))):
            acc = ((self.model.logits(f(marked)) > 0).float() == self.val_bits).float().mean()
            figs[f"val_acc_{name}"] = float(acc)
        self.E.train(was[0]), self.Dec.train(was[1])
        return y, marked, figs

    def sample_grid(self) -> np.ndarray:
        y, marked, figs = self.validate()
        self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3),
                             **{k: round(v, 4) for k, v in figs.items()}})
        self.tb.scalars({f"val/{k[4:]}": v for k, v in figs.items()}, self.step)
        diff = ((marked - y) * 10).clamp(-1, 1)
        return make_grid_uint8(torch.cat([to_uint8(t).cpu() for t in (y, marked, diff)]), nrow=y.shape[0])

    def _extra_state(self) -> Dict[str, Any]:
        return {"wm_gen": self.wm_gen.get_state()}

    def _restore_extra(self, s: Dict[str, Any], full: bool) -> None:
        if full:
            self.wm_gen.set_state(s["wm_gen"])

    def _header(self) -> str:
        wm, t = self.cfg.watermark, self.cfg.train
        n = sum(p.numel() for p in self.E.parameters()) + sum(p.numel() for p in self.Dec.parameters())
        return (f"training a {wm.bits}-bit watermark at {wm.res}x{wm.res} (width {wm.width}, {n / 1e6:.2f}M parameters, "
                f"{wm.psnr:g} dB) on {self.data.name} {self.images.shape[0]} images {'x'.join(map(str, self.img_shape))}, "
                f"host sizes {wm.sizes}, attacks {'/'.join(wm.attacks)}; batch {t.batch_size}, device {self.device}, "
                f"{torch.get_num_threads()} threads; run folder {self.run_dir}")

    def _check_step(self, stats: Dict[str, float]) -> None:
        check_finite(stats, self.step, "try a lower g_optim.lr")

    def _postfix(self, rec: Dict[str, Any]) -> str:
        return f"bits {rec['bit_acc']:.3f} BCE {rec['msg']:.3f} {rec['img_per_s']:.0f} img/s"

    def _done_extra(self) -> str:
        last = next((r for r in reversed(self.metrics.records) if "val_psnr" in r), None)
        if last is None:
            return ""
        return (f"validation PSNR {last['val_psnr']:.2f} dB, bit accuracy {last['val_acc_none']:.3f} "
                f"(JPEG 50 {last['val_acc_jpeg50']:.3f}, resize 0.5 {last['val_acc_resize0.5']:.3f}); ")


# ------------------------------------------------------------------------------------------
# using a trained watermark


class WatermarkHandle(Handle):
    """A trained watermark: ``module`` is a :class:`WatermarkModel` (encoder and decoder); ``bits`` the
    message length; ``res`` the internal resolution. Images are uint8 ``[N, C, H, W]`` (C = 1 or 3)."""

    task = "watermark"

    def __init__(self, module: WatermarkModel, checkpoint: runs.Checkpoint, config):
        super().__init__(module, checkpoint, config)
        self.bits: int = module.n_bits
        self.res: int = module.res
        self.psnr: float = module.psnr
        self.crop_margin: float = float(config.watermark.crop_margin)  # see apps.watermark.best_reading

    @staticmethod
    def _check(images) -> torch.Tensor:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 images [N, C, H, W] with C 1 or 3, got {images.dtype} {tuple(images.shape)}")
        return images

    def _luma(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` -> luma in [-1, 1] ``[N, 1, H', W']``: at full size, or, for images of 8 res
        and more, box-averaged by a whole factor down to 4-8 res, a band of rows at a time (no full-size float copy)."""
        h, w = images.shape[2:]
        k = min(h, w) // (4 * self.res)
        if k < 2:
            x = images.to(self.device).float().div(127.5).sub(1.0)
        else:
            band = k * 16
            x = torch.cat([F.avg_pool2d(images[:, :, i : i + band].to(self.device).float(), k, ceil_mode=True)
                           for i in range(0, h, band)], 2).div(127.5).sub(1.0)  # [N, C, ~H/k, ~W/k]
        return A.to_luma(x)

    def _luma_small(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` -> luma at the internal resolution ``[N, 1, res, res]`` in [-1, 1]."""
        return A.resize_to(self._luma(images), (self.res, self.res))

    @torch.no_grad()
    def embed(self, images, bits, strength: float = 1.0) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` and bits ``[N, n_bits]`` (or ``[n_bits]`` for all) -> marked uint8 images.
        The residual, in grey levels and rounded, is added to every channel in 16-bit integers (the same
        result as adding in floats and rounding, with a fraction of the memory traffic for large images)."""
        images = self._check(images)
        h, w = images.shape[2:]
        b = torch.as_tensor(bits, dtype=torch.float32, device=self.device)
        b = b.expand(images.shape[0], -1) if b.dim() == 1 else b
        r = self.module(self._luma_small(images), b)  # [N, 1, res, res]
        r = normalise(A.resize_to(r, (h, w)), target_rms(self.psnr) * strength)  # [N, 1, H, W]
        levels = r.mul_(127.5).round_().to(torch.int16).cpu()
        return (images.to(torch.int16) + levels).clamp_(0, 255).to(torch.uint8)

    @torch.no_grad()
    def logits(self, images) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` -> bit logits ``[N, n_bits]`` (positive: 1)."""
        return self.module.decoder(self._luma_small(self._check(images))).float().cpu()

    @torch.no_grad()
    def logits_search(self, images, cuts=A.SEARCH_CUTS) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` -> bit logits ``[N, len(cuts), n_bits]``, one reading per hypothesis: the image
        as it is (cut 0), and the image as the centre of a larger one that lost ``cut`` of each side and was
        resized back (:func:`~ganforge.training.attacks.reframe`: shrunk to ``1 - cut`` of its size, the border
        filled with its edge pixels), so a centred crop that was resized back is read where the mark was put. The
        hypotheses are made on the image's own pixel grid (box-averaged for large images), where the crop was
        cut, and then resized to the internal resolution: sharper than reframing at the internal resolution."""
        y = self._luma(self._check(images))  # [N, 1, H', W']
        out = [self.module.decoder(A.resize_to(A.reframe(y, cut), (self.res, self.res))) for cut in cuts]
        return torch.stack(out, 1).float().cpu()  # [N, K, n_bits]

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        return (torch.zeros(batch, 1, self.res, self.res, device=self.device),
                torch.zeros(batch, self.bits, device=self.device))

    def export_networks(self) -> List[ExportNet]:
        """The encoder (with the decoder's reading of the host inside) and the decoder, at the internal
        resolution; ``info`` says what a deployer does around them (resizing, scaling, adding)."""
        y, bits = self.export_inputs(2)
        info = {"n_bits": self.bits, "res": self.res, "psnr": self.psnr, "target_rms": target_rms(self.psnr),
                "luma": "BT.601 (0.299 R + 0.587 G + 0.114 B) of the image in [-1, 1], resized (bilinear, antialiased) to res x res",
                "embed": "resize the residual (bilinear) to the image size, scale it to root mean square target_rms * strength, "
                         "add it to every channel, clamp to [-1, 1]",
                "code": "ganforge.apps.watermark.MessageCode (BCH from bchlib, XOR mask)"}
        return [
            ExportNet("encoder", self.module, (y, bits), ("luma", "message"), ("residual",),
                      values={"luma": f"float32 [N, 1, {self.res}, {self.res}] in [-1, 1]",
                              "message": "float32 bits, 0 or 1", "residual": "float32, unnormalised"}, info=info),
            ExportNet("decoder", self.module.decoder, (y,), ("luma",), ("logits",),
                      output_shapes={"logits": ["batch", self.bits]},
                      values={"luma": f"float32 [N, 1, {self.res}, {self.res}] in [-1, 1]",
                              "logits": "float32 logits per bit, > 0 means 1"}, info=info),
        ]

    def output_shape(self, batch: int = 1) -> Tuple[int, ...]:
        return (batch, 1, self.res, self.res)

    def __repr__(self) -> str:
        return f"WatermarkHandle({self.bits} bits at {self.res}x{self.res}, {self.psnr:g} dB, step {self.step}, {self.checkpoint_path})"


class WatermarkTask(Task):
    name = "watermark"
    summary = "invisible watermarks: an encoder, a decoder and a discriminator trained through attacks"
    sections = {**SHARED_SECTIONS, "watermark": WatermarkConfig}
    trainer = WatermarkTrainer
    tiny = ("watermark.width=4", "watermark.d_width=4", "watermark.res=16", "watermark.sizes=[16,24]",
            "watermark.bits=8", "watermark.clean_steps=1")

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> WatermarkHandle:
        cfg = self.stored_config(checkpoint)
        wm = cfg.watermark
        try:
            enc = WatermarkEncoder(wm.bits, wm.res, wm.width)
            dec = WatermarkDecoder(wm.bits, wm.res, wm.width)
        except (ValueError, TypeError) as e:
            raise RunError(f"checkpoint '{checkpoint.folder}': cannot rebuild the watermark networks: {e}") from None
        model = WatermarkModel(enc, dec, wm.psnr)
        self.load_state(model, checkpoint, "generator")
        return WatermarkHandle(model.to(device), checkpoint, cfg)


TASKS.register("watermark")(WatermarkTask())
