"""The ``superres`` task: train a super-resolution generator (``ganforge train task=superres``).

Config section: ``superres`` (:class:`SuperResConfig`), plus the shared ones (``data``, ``train``,
``g_optim`` for the generator, ``d_optim`` for the discriminator).

Training pairs are made on the fly (:class:`SuperResTrainer`): each step takes a batch of the
dataset's images, cuts a random ``superres.crop`` x ``crop`` high-resolution crop of each (the whole
image when ``crop`` is 0) and degrades it to ``crop / scale`` (:mod:`ganforge.data.degrade`:
``bicubic``, ``area`` or the ``practical`` blur/resize/noise/JPEG pipeline in random order). Training
has the two stages of SRGAN and ESRGAN, in one run:

1. for the first ``superres.pixel_steps`` steps the generator learns the L1 loss alone (the PSNR-
   oriented model). When they are done the weights are saved as the named checkpoint
   ``checkpoints/pixel`` (load it with ``ganforge upscale --checkpoint RUN/checkpoints/pixel``);
2. from there on, starting from those weights, it is fine-tuned with
   ``pixel_weight * L1 + feature_weight * feature loss + adv_weight * adversarial loss`` against the
   U-Net discriminator (per-pixel logits, non-saturating logistic loss as in Real-ESRGAN).

``superres.adv_weight=0`` trains the pixel-loss model only (no discriminator is built). The second
stage can also be a run of its own: ``ganforge train ... superres.pixel_steps=0 --init-from PIXEL_RUN``
copies the generator (and its EMA) of a pixel-loss run through the shared weight-transfer seam.

The **feature loss** (``superres.feature_net``) compares the output and the original in a feature
space. No ImageNet VGG weights can be downloaded here, so the default is ``d``: the discriminator's
own decoder features (feature matching, pix2pixHD), which need nothing but the run; the real images'
targets are taken from the discriminator's pass of its own update, so each step runs D three times
over B images rather than four. ``mnist`` uses
the convolutional layers of the MNIST classifier that ships with ganforge (digits only; note that the
benchmark's digit FID and accuracy are measured with the same classifier, so the ``d`` default keeps
them independent of training). ``vgg`` is the classic ESRGAN loss (VGG19 conv5_4 before its ReLU, L1)
with weights the user has: ``superres.perceptual_weights=PATH`` (torchvision's ``vgg19`` state dict,
``.pth`` loaded with ``weights_only=True``, or ``.safetensors``). ``none`` turns it off.

The sample grids show a fixed validation batch (seeded crops, degraded with a fixed seed), rows
input (nearest-upscaled) | bicubic | network | original, and log their PSNR as ``val_psnr`` (with
``val_psnr_bicubic`` for reference). Randomness (batches, flips, crops, degradations) comes from
seeded generators whose states are checkpointed, so on CPU a resumed run ends bit for bit where an
uninterrupted one does. Networks in a checkpoint: ``generator``, ``generator_ema`` and (with an
adversarial stage) ``discriminator``. Loading a run gives an :class:`UpscalerHandle`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge import runs
from ganforge.config import SHARED_SECTIONS, Section, choice, nonneg, positive
from ganforge.data.degrade import DEGRADATIONS, degrade
from ganforge.errors import ConfigError, ModelBuildError
from ganforge.imaging import make_grid_uint8, to_uint8
from ganforge.losses import d_logistic, g_nonsaturating
from ganforge.models.srresnet import SCALES, SR_MODELS, build_superres, tiled_upscale
from ganforge.tasks.base import TASKS, ExportNet, Handle, Task
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import save_figure
from ganforge.training.parts import check_finite

GRID_MAX = 8  # validation images in the sample grid
FEATURE_NETS = ("d", "mnist", "vgg", "none")
PIXEL_CHECKPOINT = "pixel"  # the named checkpoint of the pixel-loss model
VGG_LAYERS = 35  # torchvision vgg19().features[:35]: up to conv5_4, before its ReLU (ESRGAN)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class SuperResConfig(Section):
    arch: str = "srresnet"  # generator: srresnet (EDSR-style residual blocks) | rrdb (ESRGAN's RRDB blocks)
    scale: int = 4  # upscaling factor: 2 | 4 | 8
    width: int = 64  # generator feature channels
    blocks: int = 16  # residual blocks (srresnet) or RRDBs (rrdb)
    growth: int = 32  # rrdb: growth channels of the dense blocks
    d_width: int = 64  # U-Net discriminator base channels
    crop: int = 0  # side of the high-resolution training crops (a multiple of scale); 0 = whole images
    degrade: str = "bicubic"  # how inputs are made: bicubic | area (block means) | practical (blur, resize, noise, JPEG)
    pixel_steps: int = 1000  # stage 1: steps of L1 alone (saved as checkpoints/pixel), then the adversarial stage
    pixel_weight: float = 1.0  # stage 2: weight of the L1 loss
    feature_net: str = "d"  # stage 2 feature loss: d (discriminator features) | mnist (shipped classifier) | vgg | none
    feature_weight: float = 1.0  # stage 2: weight of the feature loss
    adv_weight: float = 0.01  # stage 2: weight of the adversarial loss; 0 = a pixel-loss model only (no discriminator)
    perceptual_weights: Optional[str] = None  # feature_net=vgg: a VGG19 weights file (torchvision state dict .pth or .safetensors)

    def check(self, key: str = "superres") -> None:
        choice(f"{key}.arch", self.arch, SR_MODELS.names())
        choice(f"{key}.scale", self.scale, list(SCALES))
        choice(f"{key}.degrade", self.degrade, list(DEGRADATIONS))
        choice(f"{key}.feature_net", self.feature_net, list(FEATURE_NETS))
        for k in ("width", "blocks", "growth", "d_width"):
            positive(f"{key}.{k}", getattr(self, k))
        for k in ("crop", "pixel_steps", "pixel_weight", "feature_weight", "adv_weight"):
            nonneg(f"{key}.{k}", getattr(self, k))
        if self.crop and self.crop % self.scale:
            lo = max(self.scale, self.crop - self.crop % self.scale)
            raise ConfigError(f"{key}.crop={self.crop}: crops must be a multiple of {key}.scale={self.scale} "
                              f"(e.g. {lo} or {lo + self.scale})")
        if self.feature_net == "vgg" and not self.perceptual_weights:
            raise ConfigError(f"{key}.feature_net=vgg needs VGG19 weights: {key}.perceptual_weights=PATH "
                              "(torchvision's vgg19 state dict); without them use feature_net=d")
        if self.perceptual_weights and self.feature_net != "vgg":
            raise ConfigError(f"{key}.perceptual_weights is used by {key}.feature_net=vgg only "
                              f"(got feature_net={self.feature_net})")


# ------------------------------------------------------------------------------------------
# feature networks for the feature (perceptual) loss


class MnistFeatures(nn.Module):
    """The shipped MNIST classifier's three convolutional stages (BatchNorm folded), frozen: [-1, 1] images
    (grey, or colour taken to luma) -> three feature maps. Fully convolutional: any size."""

    def __init__(self):
        super().__init__()
        from ganforge.metrics.mnist_classifier import MEAN, STD, load_classifier

        net, _ = load_classifier(fused=True)
        self.convs = nn.ModuleList(copy.deepcopy(c) for c in (net.conv1, net.conv2, net.conv3))
        self.mean, self.std = MEAN, STD
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if x.shape[1] >= 3:
            x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]  # [N, 1, H, W]
        h = ((x + 1) / 2 - self.mean) / self.std
        feats = []
        for conv in self.convs:
            h = F.relu(conv(h))  # [N, w * 2^i, H / 2^i, W / 2^i] (before pooling)
            feats.append(h)
            h = F.max_pool2d(h, 2)
        return feats


def load_vgg_weights(path: str) -> Dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a VGG19 weights file (never unpickles code), keyed ``N.weight``."""
    p = Path(path).expanduser()
    key = "superres.perceptual_weights"
    if not p.is_file():
        raise ConfigError(f"{key}: file '{p}' does not exist (expected torchvision's vgg19 weights)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a file that is not weights, or a pickle that would run code
        raise ConfigError(f"{key}: cannot read '{p}' as weights ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{key}: '{p}' holds a {type(state).__name__}, expected a state dict of tensors")
    out = {}
    for k, v in state.items():
        k2 = k[len("features."):] if k.startswith("features.") else k
        head = k2.split(".")[0]
        if head.isdigit() and int(head) < VGG_LAYERS and torch.is_tensor(v):
            out[k2] = v
    return out


VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


def vgg19_features() -> nn.Sequential:
    """VGG19's convolutional trunk up to conv5_4 (before its ReLU), laid out as torchvision's
    ``vgg19().features[:35]`` so its state-dict keys (``0.weight`` ... ``34.bias``) match (built here so
    that training does not import torchvision)."""
    layers: List[nn.Module] = []
    cin = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers[:VGG_LAYERS])


class VGGFeatures(nn.Module):
    """VGG19 conv5_4 before its ReLU (ESRGAN's perceptual loss) with user-supplied weights."""

    def __init__(self, path: str):
        super().__init__()
        state = load_vgg_weights(path)
        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            self.features = vgg19_features()
        try:
            self.features.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            first = lines[1] if len(lines) > 1 else lines[0]
            raise ConfigError(f"superres.perceptual_weights: '{path}' does not fit torchvision's vgg19: {first[:240]}") from None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return [self.features(((x[:, :3] + 1) / 2 - self.mean) / self.std)]  # [N, 512, H/16, W/16]


def feature_distance(a: List[torch.Tensor], b: List[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the L1 distance between feature maps (``b`` is the target, not differentiated)."""
    return sum(F.l1_loss(x, y.detach()) for x, y in zip(a, b)) / len(a)


# ------------------------------------------------------------------------------------------
# training


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 image batches (over all pixels and channels)."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def plot_superres_curves(records: List[Dict[str, Any]], path: Path) -> None:
    """L1 (train), validation PSNR and the adversarial losses against kimg, as PNG."""
    rows = [r for r in records if "l1" in r]
    vals = [r for r in records if "val_psnr" in r]
    if not rows and not vals:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    if rows:
        axes[0].plot([r["kimg"] for r in rows], [r["l1"] for r in rows], label="L1 (train)")
        axes[0].set_yscale("log")
        axes[0].legend()
    axes[0].set_xlabel("kimg")
    axes[0].set_title("pixel loss ([-1, 1] units)")
    if vals:
        axes[1].plot([r["kimg"] for r in vals], [r["val_psnr"] for r in vals], "k.-", label="network")
        axes[1].plot([r["kimg"] for r in vals], [r["val_psnr_bicubic"] for r in vals], "--", label="bicubic")
        axes[1].legend()
    axes[1].set_xlabel("kimg")
    axes[1].set_title("validation PSNR (dB)")
    adv = [r for r in rows if "loss_d" in r]
    if adv:
        xa = [r["kimg"] for r in adv]
        axes[2].plot(xa, [r["loss_d"] for r in adv], label="D loss")
        axes[2].plot(xa, [r["adv_g"] for r in adv], label="G adversarial")
        if "feat" in adv[0]:
            axes[2].plot(xa, [r["feat"] for r in adv], label="feature loss")
        axes[2].legend()
    else:
        axes[2].text(0.5, 0.5, "pixel stage (no adversarial loss yet)", ha="center", va="center")
    axes[2].set_xlabel("kimg")
    axes[2].set_title("adversarial stage")
    save_figure(fig, path)


class SuperResTrainer(TrainingLoop):
    """Builds the super-resolution generator and U-Net discriminator from a ``task=superres`` config and trains them."""

    def build(self) -> None:
        cfg = self.cfg
        if cfg.task != "superres":
            raise ConfigError(f"task: SuperResTrainer trains super-resolution networks and needs task=superres, got task={cfg.task}")
        t, sr = cfg.train, cfg.superres
        if t.compile:
            self.log("train.compile is not used when training a super-resolution network: running eagerly")
        c, h, w = self.img_shape
        if sr.crop:
            if sr.crop > min(h, w):
                raise ConfigError(f"superres.crop={sr.crop} is larger than the images ({h}x{w}); use at most "
                                  f"{min(h, w) - min(h, w) % sr.scale} or a larger data.size")
            self.hr_shape = (sr.crop, sr.crop)
        else:
            if h % sr.scale or w % sr.scale:
                raise ConfigError(f"superres.scale={sr.scale}: the {h}x{w} images are not a multiple of the scale; "
                                  f"set superres.crop (a multiple of {sr.scale}) or data.size")
            self.hr_shape = (h, w)
        try:
            self.G, self.D = build_superres(sr.arch, c, sr.scale, sr.width, sr.blocks, sr.growth, sr.d_width, self.hr_shape)
        except ModelBuildError as e:
            raise ConfigError(f"superres.arch={sr.arch}: {e}") from None
        self.G.to(self.device)
        self.nets["generator"] = self.G
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if t.ema_decay > 0 else None
        if self.G_ema is not None:
            self.nets["generator_ema"] = self.G_ema
        self.opt_g = self.optimizer(self.G, cfg.g_optim)
        self.optims["g"] = self.opt_g
        self.adversarial = sr.adv_weight > 0
        if self.adversarial:
            self.D.to(self.device)
            self.nets["discriminator"] = self.D
            self.opt_d = self.optimizer(self.D, cfg.d_optim)
            self.optims["d"] = self.opt_d
        else:
            self.D = None
        self.features: Optional[nn.Module] = None  # a frozen feature network (not saved: it is not trained)
        if sr.feature_weight > 0 and sr.feature_net == "mnist":
            self.features = MnistFeatures().to(self.device)
        elif sr.feature_weight > 0 and sr.feature_net == "vgg":
            self.features = VGGFeatures(sr.perceptual_weights).to(self.device)
        self.crop_gen = torch.Generator().manual_seed(t.seed + 5)  # crop offsets (made on the CPU)
        self.degrade_gen = torch.Generator().manual_seed(t.seed + 6)  # the practical pipeline's draws
        # the fixed validation batch: seeded images, centre crops, degraded with a fixed seed
        n = self.images.shape[0]
        k = min(t.sample_count, GRID_MAX, n)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(t.seed + 3))[:k]
        x = self.data.images[idx].float().div(127.5).sub(1.0)  # [k, C, H, W]
        ch, cw = self.hr_shape
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        self.val_hr = x[:, :, y0 : y0 + ch, x0 : x0 + cw].contiguous().to(self.device)  # [k, C, ch, cw]
        self.val_lr = degrade(self.val_hr, sr.scale, sr.degrade, torch.Generator().manual_seed(t.seed + 7))

    def run_suffix(self) -> str:
        return f"sr{self.cfg.superres.scale}x-{self.cfg.superres.arch}"

    def model_config(self) -> Dict[str, Any]:
        d = super().model_config()
        d["hr_shape"] = list(self.hr_shape)  # the training crops: what export_inputs feeds the network
        return d

    # ---- one step ---------------------------------------------------------------------------
    def _crops(self, x: torch.Tensor) -> torch.Tensor:
        """A random ``hr_shape`` crop of each image of ``x`` [B, C, H, W] (offsets from ``crop_gen``)."""
        ch, cw = self.hr_shape
        _, _, h, w = x.shape
        if (ch, cw) == (h, w):
            return x
        ys = torch.randint(0, h - ch + 1, (x.shape[0],), generator=self.crop_gen).tolist()
        xs = torch.randint(0, w - cw + 1, (x.shape[0],), generator=self.crop_gen).tolist()
        return torch.stack([x[i, :, y : y + ch, q : q + cw] for i, (y, q) in enumerate(zip(ys, xs))])

    @property
    def stage(self) -> str:
        """``pixel`` (L1 alone) or ``gan`` (the adversarial fine-tuning) for the next step."""
        return "gan" if self.adversarial and self.step >= self.cfg.superres.pixel_steps else "pixel"

    def _feature_loss(self, sr: torch.Tensor, hr: torch.Tensor, fake_feats, real_feats) -> torch.Tensor:
        if self.cfg.superres.feature_net == "d":
            return feature_distance(fake_feats, real_feats)
        with torch.no_grad():
            target = self.features(hr)
        return feature_distance(self.features(sr), target)

    def train_step(self) -> Dict[str, float]:
        sr_cfg, B = self.cfg.superres, self.cfg.train.batch_size
        x, _ = self.real_batch()  # [B, C, H, W] in [-1, 1]
        hr = self._crops(x)  # [B, C, ch, cw]
        with torch.no_grad():
            lr = degrade(hr, sr_cfg.scale, sr_cfg.degrade, self.degrade_gen)  # [B, C, ch/s, cw/s]
        stats: Dict[str, float] = {}
        with self.autocast():
            sr = self.G(lr).float()  # [B, C, ch, cw]
        l1 = F.l1_loss(sr, hr)
        if self.stage == "pixel":
            loss_g = l1
        else:
            want_feats = sr_cfg.feature_net == "d" and sr_cfg.feature_weight > 0
            with self.autocast():  # real and fake in one pass (no normalisation layers in D)
                out = self.D(torch.cat([hr, sr.detach()]), features=want_feats)
            logits, real_feats = (out[0], [t[:B].detach().float() for t in out[1]]) if want_feats else (out, None)
            r, f = logits.float().split(B)  # [B, 1, ch, cw] per-pixel logits each
            loss_d = d_logistic(r, f)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            self.D.requires_grad_(False)
            with self.autocast():  # the real images' features (the targets) come from the pass above
                out = self.D(sr, features=want_feats)
            fake_logits, fake_feats = (out[0].float(), [t.float() for t in out[1]]) if want_feats else (out.float(), None)
            adv = g_nonsaturating(fake_logits)
            loss_g = sr_cfg.pixel_weight * l1 + sr_cfg.adv_weight * adv
            if sr_cfg.feature_weight > 0 and sr_cfg.feature_net != "none":
                feat = self._feature_loss(sr, hr, fake_feats, real_feats)
                loss_g = loss_g + sr_cfg.feature_weight * feat
                stats["feat"] = feat.item()
            stats.update(loss_d=loss_d.item(), adv_g=adv.item())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.D is not None:
            self.D.requires_grad_(True)
        self.step += 1
        if self.G_ema is not None:
            self.update_ema(self.G_ema, self.G)
        self.images_seen += B
        stats.update(l1=l1.item(), loss_g=loss_g.item())
        return stats

    def _periodic(self) -> None:
        super()._periodic()
        if self.adversarial and self.step == self.cfg.superres.pixel_steps > 0:
            folder = self.save(PIXEL_CHECKPOINT)
            self.log(f"pixel stage done at step {self.step}: the L1 model is saved as {folder}; "
                     "adversarial fine-tuning starts from it")

    # ---- outputs --------------------------------------------------------------------------
    @property
    def G_eval(self) -> nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def validate(self):
        """uint8 (input nearest-upscaled, bicubic, network, original) of the validation batch, and the PSNRs."""
        net = self.G_eval
        was_training = net.training
        net.eval()
        s = self.cfg.superres.scale
        out = net(self.val_lr).float()
        net.train(was_training)
        bic = F.interpolate(self.val_lr, scale_factor=s, mode="bicubic", align_corners=False)
        near = F.interpolate(self.val_lr, scale_factor=s, mode="nearest")
        rows = [to_uint8(t).cpu() for t in (near, bic, out, self.val_hr)]
        return rows, psnr_uint8(rows[2], rows[3]), psnr_uint8(rows[1], rows[3])

    def sample_grid(self) -> np.ndarray:
        rows, p, pb = self.validate()
        self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3),
                             "val_psnr": round(p, 4), "val_psnr_bicubic": round(pb, 4)})
        self.tb.scalars({"val/psnr": p, "val/psnr_bicubic": pb}, self.step)
        k = rows[0].shape[0]
        return make_grid_uint8(torch.cat(rows), nrow=k)

    def _extra_state(self) -> Dict[str, Any]:
        return {"crop_gen": self.crop_gen.get_state(), "degrade_gen": self.degrade_gen.get_state()}

    def _restore_extra(self, s: Dict[str, Any], full: bool) -> None:
        if full:
            self.crop_gen.set_state(s["crop_gen"])
            self.degrade_gen.set_state(s["degrade_gen"])

    # ---- hooks of the shared loop ------------------------------------------------------------
    def _header(self) -> str:
        t, sr = self.cfg.train, self.cfg.superres
        n_g = sum(p.numel() for p in self.G.parameters())
        stages = (f"{sr.pixel_steps} pixel-loss steps, then adversarial (adv {sr.adv_weight:g}, feature "
                  f"{sr.feature_net} {sr.feature_weight:g}, L1 {sr.pixel_weight:g})" if self.adversarial
                  else "pixel loss (L1) only")
        ch, cw = self.hr_shape
        return (f"training super-resolution x{sr.scale} {sr.arch} (width {sr.width}, {sr.blocks} blocks, "
                f"{n_g / 1e6:.2f}M parameters) on {self.data.name} {self.images.shape[0]} images "
                f"{'x'.join(map(str, self.img_shape))}, crops {ch}x{cw} -> {ch // sr.scale}x{cw // sr.scale} "
                f"({sr.degrade}); {stages}; batch {t.batch_size}, device {self.device}, "
                f"{torch.get_num_threads()} threads; run folder {self.run_dir}")

    def _check_step(self, stats: Dict[str, float]) -> None:
        check_finite(stats, self.step, "try lower learning rates (g_optim.lr, d_optim.lr) or a smaller superres.adv_weight")

    def _plot(self) -> None:
        plot_superres_curves(self.metrics.records, self.run_dir / "loss_curve.png")

    def _postfix(self, rec: Dict[str, Any]) -> str:
        adv = f" D {rec['loss_d']:.3f} G adv {rec['adv_g']:.3f}" if "loss_d" in rec else ""
        return f"L1 {rec['l1']:.4f}{adv} {rec['img_per_s']:.0f} img/s"

    def _done_extra(self) -> str:
        last = next((r for r in reversed(self.metrics.records) if "val_psnr" in r), None)
        return (f"validation PSNR {last['val_psnr']:.2f} dB (bicubic {last['val_psnr_bicubic']:.2f}); "
                if last is not None else "")


# ------------------------------------------------------------------------------------------
# using a trained network


class UpscalerHandle(Handle):
    """A trained super-resolution generator with what is needed to use it on uint8 images of any size."""

    task = "superres"

    def __init__(self, module: nn.Module, checkpoint: runs.Checkpoint, config):
        super().__init__(module, checkpoint, config)
        self.scale: int = int(config.superres.scale)
        self.channels: int = int(self.img_shape[0])
        hr = checkpoint.config.get("hr_shape") or list(self.img_shape[1:])
        self.hr_shape: Tuple[int, int] = (int(hr[0]), int(hr[1]))

    @property
    def receptive_radius(self) -> int:
        """How far (in input pixels) an output pixel looks: the overlap that makes tiling exact."""
        return int(self.module.receptive_radius)

    @torch.no_grad()
    def upscale_float(self, x: torch.Tensor, tile: Optional[int] = None, overlap: Optional[int] = None) -> torch.Tensor:
        """float ``[N, C, h, w]`` in [-1, 1] -> ``[N, C, s*h, s*w]`` (unclamped), tiled when ``tile`` is set
        (``overlap`` defaults to :attr:`receptive_radius`, which makes the tiled result equal the untiled one)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"upscale: expected images [N, {self.channels}, h, w], got {tuple(x.shape)}")
        ov = self.receptive_radius if overlap is None else int(overlap)
        return tiled_upscale(self.module, x.to(self.device), self.scale, tile, ov)

    @torch.no_grad()
    def upscale(self, images: Union[torch.Tensor, np.ndarray], tile: Optional[int] = None,
                overlap: Optional[int] = None, batch_size: int = 16) -> torch.Tensor:
        """uint8 ``[N, C, h, w]`` -> uint8 ``[N, C, s*h, s*w]``; ``tile``/``overlap`` as in :meth:`upscale_float`."""
        images = torch.as_tensor(images)
        c = self.channels
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != c:
            raise ValueError(f"upscale: expected uint8 images [N, {c}, h, w], got {images.dtype} {tuple(images.shape)}")
        n, _, h, w = images.shape
        out = torch.empty(n, c, h * self.scale, w * self.scale, dtype=torch.uint8)
        for i in range(0, n, batch_size):
            x = images[i : i + batch_size].to(self.device).float().div(127.5).sub(1.0)  # [B, C, h, w]
            out[i : i + batch_size] = to_uint8(self.upscale_float(x, tile, overlap)).cpu()
        return out

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        h, w = self.hr_shape
        return (torch.zeros(batch, self.channels, h // self.scale, w // self.scale, device=self.device),)

    def output_shape(self, batch: int = 1) -> Tuple[int, ...]:
        return (batch, self.channels, *self.hr_shape)

    def export_networks(self) -> List[ExportNet]:
        """The upscaler, ``low_res [N, C, h, w] -> high_res [N, C, s*h, s*w]``; dynamic batch, height and width."""
        s = self.scale
        values = {"low_res": "float32 in [-1, 1]", "high_res": "float32, about [-1, 1] (clamp before converting to uint8)"}
        return [ExportNet("upscaler", self.module, self.export_inputs(2), ("low_res",), ("high_res",), spatial=("low_res",),
                          output_shapes={"high_res": ["batch", self.channels, f"{s}*height", f"{s}*width"]},
                          values=values, info={"scale": s})]

    def __repr__(self) -> str:
        sr = self.config.superres
        return (f"UpscalerHandle(x{self.scale} {sr.arch}, {self.channels} channels, step {self.step}, "
                f"{self.checkpoint_path})")


class SuperResTask(Task):
    name = "superres"
    summary = "upscale images: an SRResNet/RRDB generator trained with L1, then against a U-Net discriminator"
    sections = {**SHARED_SECTIONS, "superres": SuperResConfig}
    trainer = SuperResTrainer
    tiny = ("superres.width=4", "superres.blocks=1", "superres.d_width=4", "superres.pixel_steps=1")

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> UpscalerHandle:
        def build_net(cfg, c):
            sr = cfg.superres
            return SR_MODELS.get(sr.arch)(int(c["img_shape"][0]), sr.scale, sr.width, sr.blocks, sr.growth)

        return self.load_generator(checkpoint, UpscalerHandle, build_net, "super-resolution network", ema, device,
                                   ema_optional=True)


TASKS.register("superres")(SuperResTask())
