"""DCGAN (Radford et al. 2015), built for any image size H x W = b * 2^k with 3 <= b <= 16.

Generator: z -> linear -> [b_h, b_w] feature map -> k x (transposed conv 4/2/1 + BN + ReLU,
channels halving) -> tanh. Discriminator mirrors it with strided convs + LeakyReLU(0.2) and
ends in a linear layer that returns one logit per image.

Examples (ngf = 64):   28x28 -> base 7x7,  k=2: [128,7,7] -> [64,14,14] -> [C,28,28]
                       32x32 -> base 4x4,  k=3: [256,4,4] -> [128,8,8] -> [64,16,16] -> [C,32,32]
                       48x64 -> base 3x4,  k=4: [512,3,4] -> ... -> [C,48,64]
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn

from ganforge.models import MODELS
from ganforge.models.layers import init_dcgan_weights, maybe_sn, norm2d

MAX_MULT = 8  # widest layer = width * 8 (as in the DCGAN paper)


class ModelSizeError(ValueError):
    """The architecture cannot be built for the requested image size."""


def plan_stages(h: int, w: int) -> Tuple[int, int, int]:
    """Return (k, base_h, base_w): the most 2x stages with an integer base of at least 3."""
    k = 0
    while h % 2 ** (k + 1) == 0 and w % 2 ** (k + 1) == 0 and min(h, w) // 2 ** (k + 1) >= 3:
        k += 1
    bh, bw = h // 2**k, w // 2**k
    if k < 2 or max(bh, bw) > 16:
        raise ModelSizeError(
            f"dcgan cannot be built for {h}x{w}: height and width must both be b * 2^k with k >= 2 "
            f"and 3 <= b <= 16 (e.g. 28, 32, 48, 64, 96, 128, or 48x64); "
            f"set data.size to a nearby size such as {_nearest(h)}x{_nearest(w)}"
        )
    return k, bh, bw


def _nearest(n: int) -> int:
    best = None
    for k in range(2, 10):
        for b in range(3, 17):
            s = b * 2**k
            if best is None or abs(s - n) < abs(best - n):
                best = s
    return best


def _widths(width: int, k: int) -> List[int]:
    """Channels at each resolution level, coarsest first: width*2^(k-1), ..., width."""
    return [width * min(2 ** (k - 1 - i), MAX_MULT) for i in range(k)]


class DCGANGenerator(nn.Module):
    def __init__(self, img_shape: Tuple[int, int, int], z_dim: int = 100, width: int = 64, norm: str = "batch"):
        super().__init__()
        c, h, w = img_shape
        k, self.bh, self.bw = plan_stages(h, w)
        chans = _widths(width, k)
        self.z_dim, self.img_shape = z_dim, tuple(img_shape)
        self.c0 = chans[0]
        # z [N, z_dim] -> [N, c0 * bh * bw]; bias is redundant before BN
        self.project = nn.Linear(z_dim, chans[0] * self.bh * self.bw, bias=norm != "batch")
        self.project_act = nn.Sequential(norm2d(norm, chans[0]), nn.ReLU(True))
        blocks = []
        for i in range(k - 1):  # [N, chans[i], r, r] -> [N, chans[i+1], 2r, 2r]
            blocks += [
                nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1, bias=norm != "batch"),
                norm2d(norm, chans[i + 1]),
                nn.ReLU(True),
            ]
        blocks += [nn.ConvTranspose2d(chans[-1], c, 4, 2, 1), nn.Tanh()]  # -> [N, C, H, W]
        self.blocks = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], self.c0, self.bh, self.bw)  # [N, c0, bh, bw]
        return self.blocks(self.project_act(x))  # [N, C, H, W] in [-1, 1]


class DCGANDiscriminator(nn.Module):
    def __init__(self, img_shape: Tuple[int, int, int], width: int = 64, norm: str = "batch"):
        super().__init__()
        c, h, w = img_shape
        k, bh, bw = plan_stages(h, w)
        chans = list(reversed(_widths(width, k)))  # finest first: width, 2*width, ...
        self.img_shape = tuple(img_shape)
        layers: List[nn.Module] = [maybe_sn(nn.Conv2d(c, chans[0], 4, 2, 1), norm), nn.LeakyReLU(0.2, True)]
        for i in range(k - 1):  # [N, chans[i], r, r] -> [N, chans[i+1], r/2, r/2]
            layers += [
                maybe_sn(nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1, bias=norm != "batch"), norm),
                norm2d(norm, chans[i + 1]),
                nn.LeakyReLU(0.2, True),
            ]
        self.features = nn.Sequential(*layers)  # -> [N, chans[-1], bh, bw]
        self.head = maybe_sn(nn.Linear(chans[-1] * bh * bw, 1), norm)  # -> [N, 1]
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)).squeeze(1)  # logits [N]


@MODELS.register("dcgan")
def build_dcgan(cfg, img_shape):
    g = DCGANGenerator(img_shape, cfg.z_dim, cfg.g_width or 64, cfg.g_norm)
    d = DCGANDiscriminator(img_shape, cfg.d_width or 64, cfg.d_norm)
    return g, d
