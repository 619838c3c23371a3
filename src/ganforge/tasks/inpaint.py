"""The ``inpaint`` task: train a completion network (``ganforge train task=inpaint``).

Config section: ``inpaint`` (:class:`InpaintConfig`), plus the shared ones (``data``, ``train``,
``g_optim`` for the completion network, ``d_optim`` for the PatchGAN).

Each step (:class:`InpaintTrainer`) draws a batch of real images and a batch of random masks (boxes
and/or free-form strokes, :mod:`ganforge.training.masks`), lets the completion network fill the
holes, then

- updates the PatchGAN on real images against composites (prediction in the hole, real pixels
  elsewhere) with the hinge loss (SN-PatchGAN, Yu et al. 2019), and
- updates the completion network with
  ``l1_hole * L1(hole) + l1_valid * L1(known) + adv_weight * hinge_G + 0.1 * overshoot``:
  the hole/valid split of Liu et al. 2018, each L1 the mean absolute error over that region's
  pixels in [-1, 1] units, taken on the output clamped to [-1, 1] with a straight-through
  gradient; ``overshoot`` is the mean amount by which the unbounded output leaves [-1, 1]
  (see :class:`ganforge.models.inpaint.Inpainter` for why). With ``inpaint.adv_weight=0`` the
  discriminator is skipped.
- keeps an exponential moving average of the completion network's weights (``train.ema_decay``,
  with ``train.ema_warmup``; 0 = off), which the sample grids, the validation L1 and
  :func:`load_inpainter` use: on MNIST it lowered the centre-hole L1 by ~2% at the same training time.

The sample grids show a fixed validation batch (seeded images of the training data) with fixed masks
(rows: masked input | completion | original) and log its hole L1 as ``val_l1_hole``. All randomness
(batches, flips, masks) comes from seeded generators whose states are checkpointed, so on CPU a
resumed run ends bit for bit where an uninterrupted one does. Networks in a checkpoint:
``generator`` (the completion network), ``generator_ema`` and ``discriminator`` (the PatchGAN).
Loading a run gives an :class:`InpainterHandle`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ganforge import runs
from ganforge.config import SHARED_SECTIONS, Section, choice, nonneg, positive
from ganforge.errors import ConfigError, ModelBuildError, RunError
from ganforge.imaging import completion_grid, to_uint8
from ganforge.losses import d_hinge, g_hinge
from ganforge.models.inpaint import INPAINT_MODELS, InpaintSizeError, build_inpainter
from ganforge.tasks.base import TASKS, ExportNet, Handle, Task
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import save_figure
from ganforge.training.masks import random_masks
from ganforge.training.parts import check_finite

OVERSHOOT_WEIGHT = 0.1  # weight of the penalty on the raw output leaving [-1, 1] (see train_step)
GRID_MAX = 32  # images in the validation grid (at most)
GRID_COLS = 8


@dataclass
class InpaintConfig(Section):
    arch: str = "gated"  # completion network: gated (gated convolutions, Yu et al. 2019) | partial (Liu et al. 2018)
    width: int = 32  # U-Net base channels
    d_width: int = 32  # PatchGAN discriminator base channels
    masks: str = "mixed"  # random training masks made on the fly: box | free (strokes) | mixed
    hole_min: float = 0.1  # smallest missing fraction of the image
    hole_max: float = 0.5  # largest missing fraction of the image
    l1_hole: float = 6.0  # L1 weight inside the hole (Liu et al. 2018)
    l1_valid: float = 1.0  # L1 weight on the known pixels
    adv_weight: float = 0.1  # adversarial (PatchGAN, hinge) weight

    def check(self, key: str = "inpaint") -> None:
        choice(f"{key}.arch", self.arch, INPAINT_MODELS.names())
        choice(f"{key}.masks", self.masks, ["box", "free", "mixed"])
        positive(f"{key}.width", self.width)
        positive(f"{key}.d_width", self.d_width)
        if not 0 < self.hole_min <= self.hole_max < 1:
            raise ConfigError(f"{key}.hole_min/hole_max: expected 0 < min <= max < 1, got {self.hole_min}, {self.hole_max}")
        for k in ("l1_hole", "l1_valid", "adv_weight"):
            nonneg(f"{key}.{k}", getattr(self, k))


def plot_inpaint_curves(records: List[Dict[str, Any]], path: Path) -> None:
    """Reconstruction losses (train and validation hole L1) and adversarial losses against kimg, as PNG."""
    rows = [r for r in records if "l1_hole" in r]
    vals = [r for r in records if "val_l1_hole" in r]
    if not rows and not vals:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    x = [r["kimg"] for r in rows]
    if rows:
        axes[0].plot(x, [r["l1_hole"] for r in rows], label="L1 in the hole")
        axes[0].plot(x, [r["l1_valid"] for r in rows], label="L1 on known pixels")
    if vals:
        axes[0].plot([r["kimg"] for r in vals], [r["val_l1_hole"] for r in vals], "k.--", label="validation L1 in the hole")
    axes[0].set_xlabel("kimg (thousands of images shown)")
    axes[0].set_title("reconstruction ([-1, 1] units)")
    axes[0].set_yscale("log")
    axes[0].legend()
    adv = [r for r in rows if "loss_d" in r]
    if adv:
        xa = [r["kimg"] for r in adv]
        axes[1].plot(xa, [r["loss_d"] for r in adv], label="D hinge loss")
        axes[1].plot(xa, [r["adv_g"] for r in adv], label="G adversarial loss")
        axes[1].legend()
    else:
        axes[1].text(0.5, 0.5, "no adversarial loss (inpaint.adv_weight=0)", ha="center", va="center")
    axes[1].set_xlabel("kimg")
    axes[1].set_title("PatchGAN (hinge)")
    save_figure(fig, path)


class InpaintTrainer(TrainingLoop):
    """Builds the completion network and PatchGAN from a ``task=inpaint`` config and trains them."""

    def build(self) -> None:
        cfg = self.cfg
        if cfg.task != "inpaint":
            raise ConfigError(f"task: InpaintTrainer trains completion networks and needs task=inpaint, got task={cfg.task}")
        t, ip = cfg.train, cfg.inpaint
        if t.compile:
            self.log("train.compile is not used when training a completion network: running eagerly")
        n = self.images.shape[0]
        try:
            self.G, self.D = build_inpainter(ip.arch, self.img_shape, ip.width, ip.d_width)
        except ModelBuildError as e:
            raise ConfigError(f"inpaint.arch={ip.arch}: {e}") from None
        # channels-last convolutions: ~10% faster on CPU (measured: GatedUNet width 16, 28x28, batch 64)
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.G.to(self.device, memory_format=self.memory_format)
        self.D.to(self.device, memory_format=self.memory_format)
        self.nets.update(generator=self.G, discriminator=self.D)
        # exponential moving average of the completion network's weights (train.ema_decay; 0 = off): what
        # the sample grids, the validation L1 and load_inpainter use
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if t.ema_decay > 0 else None
        if self.G_ema is not None:
            self.nets["generator_ema"] = self.G_ema
        self.opt_g = self.optimizer(self.G, cfg.g_optim)
        self.opt_d = self.optimizer(self.D, cfg.d_optim)
        self.optims.update(g=self.opt_g, d=self.opt_d)

        self.mask_gen = torch.Generator().manual_seed(t.seed + 5)  # training masks (made on the CPU)
        # the fixed validation batch of the sample grids: seeded images and masks
        k = min(t.sample_count, GRID_MAX, n)
        k = k - k % min(GRID_COLS, k)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(t.seed + 3))[:k]
        self.val_x = self.data.images[idx].float().div(127.5).sub(1.0).to(self.device)  # [k, C, H, W]
        _, h, w = self.img_shape
        self.val_m = random_masks(k, h, w, ip.masks, ip.hole_min, ip.hole_max,
                                  generator=torch.Generator().manual_seed(t.seed + 4), device=self.device)

    def run_suffix(self) -> str:
        return f"inpaint-{self.cfg.inpaint.arch}"

    # ---- one step ---------------------------------------------------------------------------
    def _masks(self, n: int) -> torch.Tensor:
        ip = self.cfg.inpaint
        _, h, w = self.img_shape
        m = random_masks(n, h, w, ip.masks, ip.hole_min, ip.hole_max, generator=self.mask_gen, device=self.device)
        return m.contiguous(memory_format=self.memory_format)

    @staticmethod
    def l1_parts(out: torch.Tensor, x: torch.Tensor, m: torch.Tensor):
        """(mean |out - x| over the hole pixels, the same over the known pixels), all channels counted."""
        diff = (out - x).abs()  # [B, C, H, W]
        c = x.shape[1]
        hole = (diff * m).sum() / (m.sum() * c).clamp(min=1.0)
        valid = (diff * (1 - m)).sum() / ((1 - m).sum() * c).clamp(min=1.0)
        return hole, valid

    def train_step(self) -> Dict[str, float]:
        ip, B = self.cfg.inpaint, self.cfg.train.batch_size
        x, _ = self.real_batch(self.memory_format)  # [B, C, H, W]
        m = self._masks(B)  # [B, 1, H, W], 1 = missing
        with self.autocast():
            raw = self.G.raw(x * (1 - m), m).float()  # [B, C, H, W] unbounded prediction
        out = raw + (raw.clamp(-1.0, 1.0) - raw).detach()  # clamped forward, identity backward
        overshoot = (raw.abs() - 1.0).relu().mean()  # keeps the unbounded output from drifting
        comp = out * m + x * (1 - m)  # the completed image: prediction in the hole only
        stats: Dict[str, float] = {}
        adv = ip.adv_weight > 0
        if adv:
            with self.autocast():  # real and composite in one pass (no normalisation layers in D)
                logits = self.D(torch.cat([x, comp.detach()]), torch.cat([m, m])).float()  # [2B, 1, h', w']
            r, f = logits.split(B)
            loss_d = d_hinge(r, f)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            stats["loss_d"] = loss_d.item()
        l1_hole, l1_valid = self.l1_parts(out, x, m)
        loss_g = ip.l1_hole * l1_hole + ip.l1_valid * l1_valid + OVERSHOOT_WEIGHT * overshoot
        if adv:
            self.D.requires_grad_(False)
            with self.autocast():
                adv_g = g_hinge(self.D(comp, m).float())
            loss_g = loss_g + ip.adv_weight * adv_g
            stats["adv_g"] = adv_g.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if adv:
            self.D.requires_grad_(True)
        self.step += 1
        if self.G_ema is not None:
            self.update_ema(self.G_ema, self.G)
        self.images_seen += B
        stats.update(l1_hole=l1_hole.item(), l1_valid=l1_valid.item(), loss_g=loss_g.item())
        return stats

    # ---- outputs --------------------------------------------------------------------------
    @property
    def G_eval(self) -> nn.Module:
        """The network that samples and validation use: the EMA weights when kept, else the trained ones."""
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def validate(self):
        """(masked, completed, original) uint8 of the fixed validation batch, and its hole L1."""
        net = self.G_eval
        was_training = net.training
        net.eval()
        x, m = self.val_x, self.val_m
        out = net(x * (1 - m), m).float()
        net.train(was_training)
        comp = torch.where(m > 0.5, out, x)
        l1_hole, _ = self.l1_parts(out, x, m)
        return (to_uint8(x * (1 - m)).cpu(), to_uint8(comp).cpu(), to_uint8(x).cpu()), l1_hole.item()

    def sample_grid(self) -> np.ndarray:
        (masked, comp, orig), l1 = self.validate()
        self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3), "val_l1_hole": round(l1, 5)})
        self.tb.scalars({"val/l1_hole": l1}, self.step)
        return completion_grid(masked, comp, orig, ncol=GRID_COLS)

    def _extra_state(self) -> Dict[str, Any]:
        return {"mask_gen": self.mask_gen.get_state()}

    def _restore_extra(self, s: Dict[str, Any], full: bool) -> None:
        if full:
            self.mask_gen.set_state(s["mask_gen"])

    # ---- hooks of the shared loop ------------------------------------------------------------
    def _header(self) -> str:
        t, ip = self.cfg.train, self.cfg.inpaint
        n_g = sum(p.numel() for p in self.G.parameters())
        return (f"training completion network {ip.arch} (width {ip.width}, {self.G.levels} levels, {n_g / 1e6:.2f}M "
                f"parameters) on {self.data.name} {self.images.shape[0]} images {'x'.join(map(str, self.img_shape))}, "
                f"{ip.masks} masks {ip.hole_min:g}-{ip.hole_max:g}, batch {t.batch_size}, device {self.device}, "
                f"{torch.get_num_threads()} threads; run folder {self.run_dir}")

    def _check_step(self, stats: Dict[str, float]) -> None:
        check_finite(stats, self.step, "try lower learning rates (g_optim.lr, d_optim.lr) or a smaller inpaint.adv_weight")

    def _plot(self) -> None:
        plot_inpaint_curves(self.metrics.records, self.run_dir / "loss_curve.png")

    def _postfix(self, rec: Dict[str, Any]) -> str:
        adv = f" D {rec['loss_d']:.3f} G adv {rec['adv_g']:.3f}" if "loss_d" in rec else ""
        return f"L1 hole {rec['l1_hole']:.4f} valid {rec['l1_valid']:.4f}{adv} {rec['img_per_s']:.0f} img/s"

    def _done_extra(self) -> str:
        last = next((r["val_l1_hole"] for r in reversed(self.metrics.records) if "val_l1_hole" in r), None)
        return f"validation L1 in the hole {last:.4f}; " if last is not None else ""


# ------------------------------------------------------------------------------------------
# using a trained completion network


class InpainterHandle(Handle):
    """A trained completion network with what is needed to use it on uint8 images."""

    task = "inpaint"

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this (``2 ** levels``)."""
        return 2**self.module.levels

    @torch.no_grad()
    def complete(self, image: Union[torch.Tensor, np.ndarray], mask: Union[torch.Tensor, np.ndarray],
                 batch_size: int = 256) -> torch.Tensor:
        """Fill the holes: ``image`` uint8 ``[N, C, H, W]``, ``mask`` ``[N, 1, H, W]`` (or ``[1, 1, H, W]`` for all
        images; bool or float, > 0.5 = missing) -> uint8 ``[N, C, H, W]`` with the known pixels unchanged."""
        image = torch.as_tensor(image)
        mask = torch.as_tensor(mask)
        c = self.img_shape[0]
        if image.dtype != torch.uint8 or image.dim() != 4 or image.shape[1] != c:
            raise ValueError(f"complete: expected uint8 images [N, {c}, H, W], got {image.dtype} {tuple(image.shape)}")
        n, _, h, w = image.shape
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2:] != image.shape[2:] or mask.shape[0] not in (1, n):
            raise ValueError(f"complete: expected a mask [N, 1, H, W] or [1, 1, H, W] for images {tuple(image.shape)}, "
                             f"got {tuple(mask.shape)}")
        k = self.multiple
        if h % k or w % k:
            raise InpaintSizeError(f"complete: this network needs height and width that are multiples of {k}; got {h}x{w}")
        hole = (mask.float() > 0.5).expand(n, 1, h, w)  # [N, 1, H, W] bool
        out = torch.empty_like(image)
        for i in range(0, n, batch_size):
            img = image[i : i + batch_size]
            hb = hole[i : i + batch_size]
            x = img.to(self.device).float().div(127.5).sub(1.0)  # [B, C, H, W] in [-1, 1]
            m = hb.to(self.device).float()
            pred = to_uint8(self.module(x * (1 - m), m)).cpu()  # [B, C, H, W] uint8
            out[i : i + batch_size] = torch.where(hb, pred, img)  # known pixels copied, bit for bit
        return out

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        c, h, w = self.img_shape
        mask = torch.zeros(batch, 1, h, w, device=self.device)
        mask[..., h // 4 : h // 2, w // 4 : w // 2] = 1.0
        return (torch.zeros(batch, c, h, w, device=self.device), mask)

    def export_networks(self) -> List[ExportNet]:
        """The completion network, ``(image * (1 - mask), mask) -> image``; dynamic batch, height and width
        (multiples of :attr:`multiple`)."""
        values = {"masked_image": "float32 in [-1, 1], the image with its holes set to 0 (image * (1 - mask))",
                  "mask": "float32, 1 = missing, 0 = known",
                  "completed": "float32 in [-1, 1]; keep the known pixels of the input and take the holes from here"}
        return [ExportNet("inpainter", self.module, self.export_inputs(2), ("masked_image", "mask"), ("completed",),
                          spatial=("masked_image", "mask"), multiple=self.multiple, values=values)]

    def __repr__(self) -> str:
        return (f"InpainterHandle({self.config.inpaint.arch}, {'x'.join(map(str, self.img_shape))}, step {self.step}, "
                f"{self.checkpoint_path})")


class InpaintTask(Task):
    name = "inpaint"
    summary = "complete missing regions of images: a completion network trained against a PatchGAN"
    sections = {**SHARED_SECTIONS, "inpaint": InpaintConfig}
    trainer = InpaintTrainer
    tiny = ("inpaint.width=4", "inpaint.d_width=4")

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> InpainterHandle:
        def build_net(cfg, c):
            return INPAINT_MODELS.get(cfg.inpaint.arch)(tuple(int(s) for s in c["img_shape"]), cfg.inpaint.width)

        return self.load_generator(checkpoint, InpainterHandle, build_net, "completion network", ema, device, ema_optional=True)


TASKS.register("inpaint")(InpaintTask())


def load_inpainter(run_dir: Union[str, Path], checkpoint: str = "last",
                   device: Union[str, torch.device] = "cpu", ema: bool = True) -> InpainterHandle:
    """Rebuild the completion network of an inpainting run (``ganforge train task=inpaint``) from its folder.

    ``checkpoint``: ``last``, a step number, or a checkpoint folder path. ``ema``: the exponential
    moving average of the weights (what the run's sample grids show; used when the run kept one,
    ``train.ema_decay > 0``) or the raw trained weights. Raises :class:`~ganforge.errors.RunError`
    when the folder is not a run, has no checkpoint, or trained something else than a completion network.
    """
    ck = runs.open_checkpoint(run_dir, checkpoint)
    if ck.task != "inpaint":
        where = ck.run_dir if ck.run_dir is not None else ck.folder
        raise RunError(f"run '{where}' trained a GAN (task={ck.task}), not a completion network; "
                       "use --method latent (or train one with 'ganforge train task=inpaint')")
    return TASKS.get("inpaint").load(ck, ema=ema, device=device)
