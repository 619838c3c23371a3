"""The inpaint task: trainer."""

from __future__ import annotations

import copy
from typing import Dict

import numpy as np
import torch
import torch.nn as nn

from ganforge.errors import ConfigError, ModelBuildError
from ganforge.imaging import completion_grid, to_uint8
from ganforge.losses import d_hinge, g_hinge
from ganforge.tasks.inpaint.masks import random_masks
from ganforge.tasks.inpaint.networks import build_inpainter
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import Panel
from ganforge.training.parts import eval_mode

OVERSHOOT_WEIGHT = 0.1  # weight of the penalty on the raw output leaving [-1, 1] (see train_step)


GRID_MAX = 32  # images in the validation grid (at most)


GRID_COLS = 8


class InpaintTrainer(TrainingLoop):
    """Builds the completion network and PatchGAN from a ``task=inpaint`` config and trains them."""

    task = "inpaint"
    compiles = False

    progress = ("L1 hole {l1_hole:.4f} valid {l1_valid:.4f}", "D {loss_d:.3f} G adv {adv_g:.3f}")
    summary = ("validation L1 in the hole {val_l1_hole:.4f}",)
    curves = (
        Panel(
            "reconstruction ([-1, 1] units)",
            (
                ("l1_hole", "L1 in the hole"),
                ("l1_valid", "L1 on known pixels"),
                ("val_l1_hole", "validation L1 in the hole", "k.--"),
            ),
            xlabel="kimg (thousands of images shown)",
            log=True,
        ),
        Panel(
            "PatchGAN (hinge)",
            (("loss_d", "D hinge loss"), ("adv_g", "G adversarial loss")),
            empty="no adversarial loss (inpaint.adv_weight=0)",
        ),
    )
    diverged_advice = "try lower learning rates (g_optim.lr, d_optim.lr) or a smaller inpaint.adv_weight"

    def build(self) -> None:
        cfg = self.cfg
        t, ip = cfg.train, cfg.inpaint
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

        self.mask_gen = self.rng("masks", save_as="mask_gen")  # training masks (made on the CPU)
        # the fixed validation batch of the sample grids: seeded images and masks
        k = min(t.sample_count, GRID_MAX, n)
        k = k - k % min(GRID_COLS, k)
        idx = torch.randperm(n, generator=self.rng("samples"))[:k]
        self.val_x = self.data.images[idx].float().div(127.5).sub(1.0).to(self.device)  # [k, C, H, W]
        _, h, w = self.img_shape
        self.val_m = random_masks(
            k, h, w, ip.masks, ip.hole_min, ip.hole_max, generator=self.rng("sample_masks"), device=self.device
        )
        self.run_suffix = f"inpaint-{ip.arch}"
        n_g = sum(p.numel() for p in self.G.parameters())
        self.description = (
            f"completion network {ip.arch} (width {ip.width}, {self.G.levels} levels, {n_g / 1e6:.2f}M "
            f"parameters) on {self.data.name} {n} images {'x'.join(map(str, self.img_shape))}, "
            f"{ip.masks} masks {ip.hole_min:g}-{ip.hole_max:g}"
        )

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
        x, m = self.val_x, self.val_m
        with eval_mode(self.G_eval) as net:
            out = net(x * (1 - m), m).float()
        comp = torch.where(m > 0.5, out, x)
        l1_hole, _ = self.l1_parts(out, x, m)
        return (to_uint8(x * (1 - m)).cpu(), to_uint8(comp).cpu(), to_uint8(x).cpu()), l1_hole.item()

    def sample_grid(self) -> np.ndarray:
        (masked, comp, orig), l1 = self.validate()
        self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3), "val_l1_hole": round(l1, 5)})
        self.tb.scalars({"val/l1_hole": l1}, self.step)
        return completion_grid(masked, comp, orig, ncol=GRID_COLS)
