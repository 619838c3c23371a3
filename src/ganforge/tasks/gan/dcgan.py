"""DCGAN (Radford et al. 2015), built for any image size H x W = b * 2^k with 3 <= b <= 16.

Generator: z -> linear -> [b_h, b_w] map -> k x (transposed conv 4/2/1 + BN + ReLU, channels halving)
-> tanh; the discriminator mirrors it (strided convs + LeakyReLU 0.2) and returns one logit per image.
E.g. 28x28 -> base 7x7, k=2; 32x32 -> base 4x4, k=3. ``pad > 0`` runs both at (H + 2 pad) x (W + 2 pad)
behind an H x W interface (a 28x28 digit in the classic 32x32 frame: a third 2x stage at about 2.5x the
compute). Class-conditional (``num_classes > 0``): G by conditional BatchNorm (``g_cond="cbn"``) or a
label embedding (``"embed"``), D by a projection head (``d_cond="projection"``) or an AC-GAN classifier
(``"acgan"``); ``mbstd=True`` adds a minibatch-stddev map before D's head.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.nn.layers import (
    CondSequential,
    LabelledDiscriminator,
    LabelledGenerator,
    MinibatchStd,
    ModelBuildError,
    ModelSizeError,
    cond_norm,
    init_dcgan_weights,
    label_head,
    level_widths,
    maybe_sn,
    norm2d,
    sequential_blocks,
)
from ganforge.nn.layers import plan_stages as _plan_stages
from ganforge.tasks.gan.registry import MODELS

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "ModelSizeError", "ModelBuildError", "plan_stages", "build_dcgan"]


def plan_stages(h: int, w: int) -> Tuple[int, int, int]:
    """Return (k, base_h, base_w): the most 2x stages with an integer base of at least 3."""
    return _plan_stages(h, w, "dcgan")


class DCGANGenerator(LabelledGenerator):
    who = "dcgan generator"

    def __init__(
        self,
        img_shape: Tuple[int, int, int],
        z_dim: int = 100,
        width: int = 64,
        norm: str = "batch",
        num_classes: int = 0,
        cond: str = "cbn",
        pad: int = 0,
    ):
        super().__init__()
        c, h, w = img_shape
        self.pad = pad
        k, self.bh, self.bw = plan_stages(h + 2 * pad, w + 2 * pad)
        chans = level_widths(width, k)
        self.z_dim, self.img_shape = z_dim, tuple(img_shape)
        self.c0 = chans[0]
        cbn_classes, z_in = self._setup_labels(z_dim, num_classes, cond)
        # z [N, z_in] -> [N, c0 * bh * bw]; bias is redundant before BN
        self.project = nn.Linear(z_in, chans[0] * self.bh * self.bw, bias=norm != "batch")
        self.project_act = CondSequential(cond_norm(norm, chans[0], cbn_classes), nn.ReLU(True))
        blocks: List[nn.Module] = []
        for i in range(k - 1):  # [N, chans[i], r, r] -> [N, chans[i+1], 2r, 2r]
            blocks += [
                nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1, bias=norm != "batch"),
                cond_norm(norm, chans[i + 1], cbn_classes),
                nn.ReLU(True),
            ]
        blocks += [nn.ConvTranspose2d(chans[-1], c, 4, 2, 1), nn.Tanh()]  # -> [N, C, H, W]
        self.blocks = CondSequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        z = self._latent(z, y)  # [N, z_dim], or [N, 2 * z_dim] with g_cond=embed
        x = self.project(z).view(z.shape[0], self.c0, self.bh, self.bw)  # [N, c0, bh, bw]
        x = self.blocks(self.project_act(x, y), y)  # [N, C, H + 2 pad, W + 2 pad] in [-1, 1]
        if self.pad:
            p = self.pad
            x = x[:, :, p:-p, p:-p]  # [N, C, H, W]
        return x


class DCGANDiscriminator(LabelledDiscriminator):
    who = "dcgan discriminator"

    def __init__(
        self,
        img_shape: Tuple[int, int, int],
        width: int = 64,
        norm: str = "batch",
        num_classes: int = 0,
        cond: str = "projection",
        mbstd: bool = False,
        pad: int = 0,
    ):
        super().__init__()
        c, h, w = img_shape
        self.pad = pad
        k, bh, bw = plan_stages(h + 2 * pad, w + 2 * pad)
        chans = list(reversed(level_widths(width, k)))  # finest first: width, 2*width, ...
        self.img_shape, self.num_classes = tuple(img_shape), num_classes
        self.aux = num_classes > 0 and cond == "acgan"
        layers: List[nn.Module] = [maybe_sn(nn.Conv2d(c, chans[0], 4, 2, 1), norm), nn.LeakyReLU(0.2, True)]
        for i in range(k - 1):  # [N, chans[i], r, r] -> [N, chans[i+1], r/2, r/2]
            layers += [
                maybe_sn(nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1, bias=norm != "batch"), norm),
                norm2d(norm, chans[i + 1]),
                nn.LeakyReLU(0.2, True),
            ]
        self.features = nn.Sequential(*layers)  # -> [N, chans[-1], bh, bw]
        self.mbstd = MinibatchStd() if mbstd else None  # -> [N, chans[-1] + 1, bh, bw]
        feat = (chans[-1] + int(mbstd)) * bh * bw
        self.head = maybe_sn(nn.Linear(feat, 1), norm)  # [N, feat] -> [N, 1]
        self.label_head = label_head(feat, num_classes, cond, norm)  # projection [N] | class logits [N, K]
        init_dcgan_weights(self)

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """The trunk's blocks for ``freeze_d``, image side first (the logit layer is not in the trunk)."""
        return sequential_blocks(self.features, "features")

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:  # [N, C, H, W] -> [N, C, H + 2 pad, W + 2 pad], framed in black
            x = F.pad(x, (self.pad,) * 4, value=-1.0)
        h = self.features(x)  # [N, chans[-1], bh, bw]
        if self.mbstd is not None:
            h = self.mbstd(h)  # [N, chans[-1] + 1, bh, bw]
        return h.flatten(1)  # [N, feat]


@MODELS.register("dcgan")
def build_dcgan(cfg, img_shape: Tuple[int, int, int]) -> Tuple[DCGANGenerator, DCGANDiscriminator]:
    k = cfg.num_classes if cfg.conditional else 0
    pad = getattr(cfg, "pad", 0)
    g = DCGANGenerator(img_shape, cfg.z_dim, cfg.g_width or 64, cfg.g_norm, k, cfg.g_cond, pad)
    d = DCGANDiscriminator(img_shape, cfg.d_width or 64, cfg.d_norm, k, cfg.d_cond, cfg.mbstd, pad)
    return g, d
