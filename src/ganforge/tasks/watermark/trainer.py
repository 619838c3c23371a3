"""The watermark task: trainer."""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.imaging import make_grid_uint8, to_uint8
from ganforge.losses import d_logistic, g_nonsaturating
from ganforge.tasks.watermark import attacks as A
from ganforge.tasks.watermark.networks import (
    WatermarkDecoder,
    WatermarkDiscriminator,
    WatermarkEncoder,
    WatermarkModel,
    normalise,
    psnr_of,
    target_rms,
)
from ganforge.training.loop import TrainingLoop
from ganforge.training.parts import decay_lr

GRID_MAX = 8


class WatermarkTrainer(TrainingLoop):
    """Builds the encoder, decoder and discriminator from a ``task=watermark`` config and trains them."""

    task = "watermark"
    compiles = False

    progress = ("bits {bit_acc:.3f} BCE {msg:.3f}",)
    summary = (
        "validation PSNR {val_psnr:.2f} dB, bit accuracy {val_acc_none:.3f} (JPEG 50 {val_acc_jpeg50:.3f}, "
        "resize 0.5 {val_acc_resize0.5:.3f})",
    )
    diverged_advice = "try a lower g_optim.lr"

    def build(self) -> None:
        cfg = self.cfg
        wm, t = cfg.watermark, cfg.train
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
        self.wm_gen = self.rng("watermark", save_as="wm_gen")  # sizes, bits, attacks (on the CPU)
        # the fixed validation batch: seeded images at the largest training size, seeded messages
        n = self.images.shape[0]
        k = min(t.sample_count, GRID_MAX, n)
        g = self.rng("samples")
        idx = torch.randperm(n, generator=g)[:k]
        s = max(wm.sizes)
        self.val_x = A.resize_to(self.data.images[idx].float().div(127.5).sub(1.0), (s, s)).to(self.device)
        self.val_bits = torch.randint(0, 2, (k, wm.bits), generator=g).float().to(self.device)
        self.run_suffix = f"wm{wm.bits}"
        n_p = sum(p.numel() for p in self.E.parameters()) + sum(p.numel() for p in self.Dec.parameters())
        self.description = (
            f"a {wm.bits}-bit watermark at {wm.res}x{wm.res} (width {wm.width}, {n_p / 1e6:.2f}M "
            f"parameters, {wm.psnr:g} dB) on {self.data.name} {n} images "
            f"{'x'.join(map(str, self.img_shape))}, host sizes {wm.sizes}, "
            f"attacks {'/'.join(wm.attacks)}"
        )

    @property
    def psnr_now(self) -> float:
        """The PSNR the residual is scaled to at this step (the curriculum from ``psnr_start`` to ``psnr``)."""
        wm = self.cfg.watermark
        if wm.psnr_steps <= 0 or self.step >= wm.psnr_steps:
            return wm.psnr
        return wm.psnr_start + (wm.psnr - wm.psnr_start) * self.step / wm.psnr_steps

    def train_step(self) -> Dict[str, float]:
        wm, B = self.cfg.watermark, self.cfg.train.batch_size
        decay_lr(
            self.optims,
            {"g": self.cfg.g_optim.lr, "d": self.cfg.d_optim.lr},
            self.step,
            wm.lr_decay_start,
            wm.lr_decay_steps,
        )
        x, _ = self.real_batch()  # [B, C, H, W] in [-1, 1]
        g = self.wm_gen
        s = int(wm.sizes[int(torch.randint(0, len(wm.sizes), (1,), generator=g))])
        y = A.resize_to(A.to_luma(x), (s, s))  # [B, 1, s, s]: the host images
        bits = torch.randint(0, 2, (B, wm.bits), generator=g).float().to(self.device)  # [B, bits]
        y_in = A.resize_to(y, (wm.res, wm.res))  # [B, 1, res, res]
        clean_logits = self.model.logits(A.quantise(y))  # [B, bits]: what the decoder reads in the unmarked hosts
        r = normalise(
            A.resize_to(self.E(y_in, bits, clean_logits.detach()), (s, s)), target_rms(self.psnr_now)
        )  # [B, 1, s, s]
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
        for name, f in (
            ("none", lambda v: v),
            ("jpeg50", lambda v: A.jpeg(v, 50)),
            ("resize0.5", lambda v: A.resize(v, 0.5)),
        ):
            acc = ((self.model.logits(f(marked)) > 0).float() == self.val_bits).float().mean()
            figs[f"val_acc_{name}"] = float(acc)
        self.E.train(was[0]), self.Dec.train(was[1])
        return y, marked, figs

    def sample_grid(self) -> np.ndarray:
        y, marked, figs = self.validate()
        self.metrics.append(
            {"step": self.step, "kimg": round(self.images_seen / 1000, 3), **{k: round(v, 4) for k, v in figs.items()}}
        )
        self.tb.scalars({f"val/{k[4:]}": v for k, v in figs.items()}, self.step)
        diff = ((marked - y) * 10).clamp(-1, 1)
        return make_grid_uint8(torch.cat([to_uint8(t).cpu() for t in (y, marked, diff)]), nrow=y.shape[0])
