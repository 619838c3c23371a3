"""The superres task: trainer."""

from __future__ import annotations

import copy
import math
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.errors import ConfigError, ModelBuildError
from ganforge.imaging import make_grid_uint8, to_uint8
from ganforge.losses import d_logistic, g_nonsaturating
from ganforge.tasks.superres.data import degrade
from ganforge.tasks.superres.losses import MnistFeatures, VGGFeatures, feature_distance
from ganforge.tasks.superres.networks import build_superres
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import Panel
from ganforge.training.parts import eval_mode

GRID_MAX = 8  # validation images in the sample grid


PIXEL_CHECKPOINT = "pixel"  # the named checkpoint of the pixel-loss model


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 image batches (over all pixels and channels)."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


class SuperResTrainer(TrainingLoop):
    """Builds the super-resolution generator and U-Net discriminator from a ``task=superres`` config and trains them."""

    task = "superres"
    compiles = False

    progress = ("L1 {l1:.4f}", "D {loss_d:.3f} G adv {adv_g:.3f}")
    summary = ("validation PSNR {val_psnr:.2f} dB (bicubic {val_psnr_bicubic:.2f})",)
    curves = (
        Panel("pixel loss ([-1, 1] units)", (("l1", "L1 (train)"),), log=True),
        Panel("validation PSNR (dB)", (("val_psnr", "network", "k.-"), ("val_psnr_bicubic", "bicubic", "--"))),
        Panel(
            "adversarial stage",
            (("loss_d", "D loss"), ("adv_g", "G adversarial"), ("feat", "feature loss")),
            empty="pixel stage (no adversarial loss yet)",
        ),
    )
    diverged_advice = "try lower learning rates (g_optim.lr, d_optim.lr) or a smaller superres.adv_weight"

    def build(self) -> None:
        cfg = self.cfg
        t, sr = cfg.train, cfg.superres
        c, h, w = self.img_shape
        if sr.crop:
            if sr.crop > min(h, w):
                raise ConfigError(
                    f"superres.crop={sr.crop} is larger than the images ({h}x{w}); use at most "
                    f"{min(h, w) - min(h, w) % sr.scale} or a larger data.size"
                )
            self.hr_shape = (sr.crop, sr.crop)
        else:
            if h % sr.scale or w % sr.scale:
                raise ConfigError(
                    f"superres.scale={sr.scale}: the {h}x{w} images are not a multiple of the scale; "
                    f"set superres.crop (a multiple of {sr.scale}) or data.size"
                )
            self.hr_shape = (h, w)
        try:
            self.G, self.D = build_superres(
                sr.arch, c, sr.scale, sr.width, sr.blocks, sr.growth, sr.d_width, self.hr_shape, sr.upsampler
            )
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
        self.crop_gen = self.rng("crops", save_as="crop_gen")  # crop offsets (made on the CPU)
        self.degrade_gen = self.rng("degrade", save_as="degrade_gen")  # the practical pipeline's draws
        # the fixed validation batch: seeded images, centre crops, degraded with a fixed seed
        n = self.images.shape[0]
        k = min(t.sample_count, GRID_MAX, n)
        idx = torch.randperm(n, generator=self.rng("samples"))[:k]
        x = self.data.images[idx].float().div(127.5).sub(1.0)  # [k, C, H, W]
        ch, cw = self.hr_shape
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        self.val_hr = x[:, :, y0 : y0 + ch, x0 : x0 + cw].contiguous().to(self.device)  # [k, C, ch, cw]
        self.val_lr = degrade(self.val_hr, sr.scale, sr.degrade, self.rng("sample_degrade"))
        self.run_suffix = f"sr{sr.scale}x-{sr.arch}"
        self.model_info = {"hr_shape": list(self.hr_shape)}  # the training crops: what export_inputs feeds the network
        n_g = sum(p.numel() for p in self.G.parameters())
        stages = (
            f"{sr.pixel_steps} pixel-loss steps, then adversarial (adv {sr.adv_weight:g}, feature "
            f"{sr.feature_net} {sr.feature_weight:g}, L1 {sr.pixel_weight:g})"
            if self.adversarial
            else "pixel loss (L1) only"
        )
        self.description = (
            f"super-resolution x{sr.scale} {sr.arch} (width {sr.width}, {sr.blocks} blocks, "
            f"{n_g / 1e6:.2f}M parameters) on {self.data.name} {n} images "
            f"{'x'.join(map(str, self.img_shape))}, crops {ch}x{cw} -> "
            f"{ch // sr.scale}x{cw // sr.scale} ({sr.degrade}); {stages}"
        )

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
            fake_logits, fake_feats = (
                (out[0].float(), [t.float() for t in out[1]]) if want_feats else (out.float(), None)
            )
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

    def evaluate(self) -> None:
        """At the end of the pixel stage: the L1 model kept as checkpoint ``pixel``."""
        if self.adversarial and self.step == self.cfg.superres.pixel_steps > 0:
            folder = self.save(PIXEL_CHECKPOINT)
            self.log(
                f"pixel stage done at step {self.step}: the L1 model is saved as {folder}; "
                "adversarial fine-tuning starts from it"
            )

    # ---- outputs --------------------------------------------------------------------------
    @property
    def G_eval(self) -> nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def validate(self):
        """uint8 (input nearest-upscaled, bicubic, network, original) of the validation batch, and the PSNRs."""
        s = self.cfg.superres.scale
        with eval_mode(self.G_eval) as net:
            out = net(self.val_lr).float()
        bic = F.interpolate(self.val_lr, scale_factor=s, mode="bicubic", align_corners=False)
        near = F.interpolate(self.val_lr, scale_factor=s, mode="nearest")
        rows = [to_uint8(t).cpu() for t in (near, bic, out, self.val_hr)]
        return rows, psnr_uint8(rows[2], rows[3]), psnr_uint8(rows[1], rows[3])

    def sample_grid(self) -> np.ndarray:
        rows, p, pb = self.validate()
        self.metrics.append(
            {
                "step": self.step,
                "kimg": round(self.images_seen / 1000, 3),
                "val_psnr": round(p, 4),
                "val_psnr_bicubic": round(pb, 4),
            }
        )
        self.tb.scalars({"val/psnr": p, "val/psnr_bicubic": pb}, self.step)
        k = rows[0].shape[0]
        return make_grid_uint8(torch.cat(rows), nrow=k)
