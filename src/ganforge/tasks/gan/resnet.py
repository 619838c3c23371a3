"""ResNet GAN of SNGAN (Miyato et al. 2018, appendix B), for any image size H x W = b * 2^k with
3 <= b <= 16 (the same plan as :mod:`ganforge.tasks.gan.dcgan`).

Generator: z -> linear -> [c0, b_h, b_w] -> k up-sampling residual blocks -> BN-ReLU-conv3x3 -> tanh.
Discriminator: k down-sampling residual blocks (the first SNGAN's "optimized" block) -> one block at the
base resolution -> ReLU -> global sum pooling -> linear, spectral norm on every weight by default.
Widths halve with resolution (width * 2^j, capped at 8x). Conditioning and ``mbstd`` as in dcgan.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.nn.layers import (
    LabelledDiscriminator,
    LabelledGenerator,
    MinibatchStd,
    apply_norm,
    cond_norm,
    label_head,
    level_widths,
    maybe_sn,
    norm2d,
    plan_stages,
    sequential_blocks,
)
from ganforge.tasks.gan.registry import MODELS

__all__ = ["ResNetGenerator", "ResNetDiscriminator", "GBlock", "DBlock", "build_resnet"]

GAIN = math.sqrt(2.0)  # xavier gain of the residual-path convs (SNGAN's reference code)


def _layer(m: nn.Module, gain: float, norm: str = "none") -> nn.Module:
    """Xavier-uniform initialise ``m`` (zero bias), then wrap it in spectral norm when ``norm == "spectral"``."""
    nn.init.xavier_uniform_(m.weight, gain)
    if getattr(m, "bias", None) is not None:
        nn.init.zeros_(m.bias)
    return maybe_sn(m, norm)


class GBlock(nn.Module):
    """Up-sampling residual block: [N, cin, r, r] -> [N, cout, 2r, 2r]; BN-ReLU-up2-conv3x3-BN-ReLU-conv3x3,
    shortcut conv1x1-up2."""

    def __init__(self, cin: int, cout: int, norm: str = "batch", num_classes: int = 0):
        super().__init__()
        self.bn1 = cond_norm(norm, cin, num_classes)
        self.conv1 = _layer(nn.Conv2d(cin, cout, 3, 1, 1, bias=norm != "batch"), GAIN)
        self.bn2 = cond_norm(norm, cout, num_classes)
        self.conv2 = _layer(nn.Conv2d(cout, cout, 3, 1, 1), GAIN)
        self.shortcut = _layer(nn.Conv2d(cin, cout, 1), 1.0)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = F.relu(apply_norm(self.bn1, x, y))  # [N, cin, r, r]
        h = F.interpolate(h, scale_factor=2, mode="nearest")  # [N, cin, 2r, 2r]
        h = self.conv1(h)  # [N, cout, 2r, 2r]
        h = self.conv2(F.relu(apply_norm(self.bn2, h, y)))  # [N, cout, 2r, 2r]
        # 1x1 conv commutes with nearest up-sampling: run it at the low resolution
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")  # [N, cout, 2r, 2r]


class DBlock(nn.Module):
    """Residual block of D: [N, cin, r, r] -> [N, cout, r/2, r/2] (``down``) or [N, cout, r, r].

    ``first=True`` is SNGAN's optimized first block: no activation before the first conv (it sees the image).
    """

    def __init__(self, cin: int, cout: int, norm: str = "spectral", down: bool = True, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.bn1 = nn.Identity() if first else norm2d(norm, cin)
        self.conv1 = _layer(nn.Conv2d(cin, cout, 3, 1, 1, bias=norm != "batch"), GAIN, norm)
        self.bn2 = norm2d(norm, cout)
        self.conv2 = _layer(nn.Conv2d(cout, cout, 3, 1, 1), GAIN, norm)
        learnable = cin != cout or down
        self.shortcut = _layer(nn.Conv2d(cin, cout, 1), 1.0, norm) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(self.bn1(x))  # [N, cin, r, r]
        h = self.conv1(h)  # [N, cout, r, r]
        h = self.conv2(F.relu(self.bn2(h)))  # [N, cout, r, r]
        s = x
        if self.down:
            h = F.avg_pool2d(h, 2)  # [N, cout, r/2, r/2]
            s = F.avg_pool2d(s, 2)  # pooling commutes with the 1x1 conv: pool first, 4x cheaper
        if self.shortcut is not None:
            s = self.shortcut(s)  # [N, cout, ...]
        return h + s


class ResNetGenerator(LabelledGenerator):
    """SNGAN ResNet generator (Miyato et al. 2018)."""

    who = "resnet generator"

    def __init__(
        self,
        img_shape: Tuple[int, int, int],
        z_dim: int = 128,
        width: int = 64,
        norm: str = "batch",
        num_classes: int = 0,
        cond: str = "cbn",
    ):
        super().__init__()
        c, h, w = img_shape
        k, self.bh, self.bw = plan_stages(h, w, "resnet")
        chans = level_widths(width, k) + [width]  # coarsest first, k + 1 levels: [c0@base, ..., width@H]
        self.z_dim, self.img_shape, self.c0 = z_dim, tuple(img_shape), chans[0]
        cbn_classes, z_in = self._setup_labels(z_dim, num_classes, cond)
        self.project = _layer(nn.Linear(z_in, chans[0] * self.bh * self.bw), 1.0)  # -> [N, c0 * bh * bw]
        self.blocks = nn.ModuleList(  # [N, chans[i], r, r] -> [N, chans[i+1], 2r, 2r]
            GBlock(chans[i], chans[i + 1], norm, cbn_classes) for i in range(k)
        )
        self.out_norm = norm2d(norm, chans[-1])  # unconditional, as in SNGAN/BigGAN
        self.out_conv = _layer(nn.Conv2d(chans[-1], c, 3, 1, 1), 1.0)  # -> [N, C, H, W]

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        z = self._latent(z, y)  # [N, z_dim], or [N, 2 * z_dim] with g_cond=embed
        x = self.project(z).view(z.shape[0], self.c0, self.bh, self.bw)  # [N, c0, bh, bw]
        for block in self.blocks:
            x = block(x, y)  # [N, c_i+1, 2r, 2r]
        x = F.relu(self.out_norm(x))  # [N, width, H, W]
        return torch.tanh(self.out_conv(x))  # [N, C, H, W] in [-1, 1]


class ResNetDiscriminator(LabelledDiscriminator):
    """SNGAN ResNet discriminator (Miyato et al. 2018); ``norm`` spectral (default) | batch | none."""

    who = "resnet discriminator"

    def __init__(
        self,
        img_shape: Tuple[int, int, int],
        width: int = 64,
        norm: str = "spectral",
        num_classes: int = 0,
        cond: str = "projection",
        mbstd: bool = False,
    ):
        super().__init__()
        c, h, w = img_shape
        k, _, _ = plan_stages(h, w, "resnet")
        chans = list(reversed(level_widths(width, k)))  # finest first: width, 2*width, ... (after each down block)
        self.img_shape, self.num_classes = tuple(img_shape), num_classes
        self.aux = num_classes > 0 and cond == "acgan"
        blocks: List[nn.Module] = [DBlock(c, chans[0], norm, down=True, first=True)]  # -> [N, width, H/2, W/2]
        for i in range(k - 1):  # [N, chans[i], r, r] -> [N, chans[i+1], r/2, r/2]
            blocks.append(DBlock(chans[i], chans[i + 1], norm, down=True))
        if mbstd:
            blocks.append(MinibatchStd())  # [N, c, bh, bw] -> [N, c + 1, bh, bw]
        blocks.append(DBlock(chans[-1] + int(mbstd), chans[-1], norm, down=False))  # -> [N, c, bh, bw]
        self.blocks = nn.Sequential(*blocks)
        self.out_norm = norm2d(norm, chans[-1])  # BatchNorm only with norm=batch
        self.head = _layer(nn.Linear(chans[-1], 1), 1.0, norm)  # [N, c] -> [N, 1]
        self.label_head = label_head(chans[-1], num_classes, cond, norm)  # projection [N] | class logits [N, K]

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """The residual blocks for ``freeze_d``, image side first."""
        return sequential_blocks(self.blocks, "blocks", (nn.Conv2d, nn.Linear, DBlock))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x)  # [N, c, bh, bw]
        return F.relu(self.out_norm(h)).sum(dim=(2, 3))  # global sum pooling -> [N, c]


@MODELS.register("resnet")
def build_resnet(cfg, img_shape: Tuple[int, int, int]) -> Tuple[ResNetGenerator, ResNetDiscriminator]:
    k = cfg.num_classes if cfg.conditional else 0
    g = ResNetGenerator(img_shape, cfg.z_dim, cfg.g_width or 64, cfg.g_norm, k, cfg.g_cond)
    d = ResNetDiscriminator(img_shape, cfg.d_width or 64, cfg.d_norm, k, cfg.d_cond, cfg.mbstd)
    return g, d
