"""The fully connected GAN of the original papers (Goodfellow et al. 2014, as popularised
by Keras-GAN): Dense + BatchNorm + LeakyReLU(0.2) generator with a tanh output, and a
Dense + LeakyReLU discriminator returning one logit per image. Works for any image size.

Class-conditional variants (``num_classes > 0``, Mirza & Osindero 2014): G sees the label through
conditional BatchNorm (``g_cond="cbn"``) or a label embedding joined to z (``g_cond="embed"``);
D through a projection head (Miyato & Koyama 2018) or an AC-GAN classifier (Odena et al. 2017).
``mbstd=True`` appends the minibatch std (Karras et al. 2018) as one extra feature to D's last
hidden layer. Unconditional parameter names are unchanged.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ganforge.nn.layers import (
    CondSequential,
    LabelledDiscriminator,
    LabelledGenerator,
    MinibatchStd,
    cond_norm,
    label_head,
    maybe_sn,
    norm1d,
    sequential_blocks,
)
from ganforge.tasks.gan.registry import MODELS


class MLPGenerator(LabelledGenerator):
    who = "mlp generator"

    def __init__(
        self,
        img_shape: Tuple[int, int, int],
        z_dim: int = 100,
        width: int = 256,
        norm: str = "batch",
        num_classes: int = 0,
        cond: str = "cbn",
    ):
        super().__init__()
        self.z_dim, self.img_shape = z_dim, tuple(img_shape)
        cbn_classes, z_in = self._setup_labels(z_dim, num_classes, cond)
        dims = [z_in, width, width * 2, width * 4]
        layers: List[nn.Module] = []
        for i in range(3):  # [N, dims[i]] -> [N, dims[i+1]]; no norm on the first layer, as in the classic
            layers += [nn.Linear(dims[i], dims[i + 1])]
            if i > 0:
                layers += [cond_norm(norm, dims[i + 1], cbn_classes, dim=1)]
            layers += [nn.LeakyReLU(0.2, True)]
        layers += [nn.Linear(dims[-1], math.prod(img_shape)), nn.Tanh()]  # -> [N, C*H*W]
        self.net = CondSequential(*layers)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        z = self._latent(z, y)  # [N, z_dim], or [N, 2 * z_dim] with g_cond=embed
        return self.net(z, y).view(z.shape[0], *self.img_shape)  # [N, C, H, W] in [-1, 1]


class MLPDiscriminator(LabelledDiscriminator):
    who = "mlp discriminator"

    def __init__(
        self,
        img_shape: Tuple[int, int, int],
        width: int = 256,
        norm: str = "none",
        num_classes: int = 0,
        cond: str = "projection",
        mbstd: bool = False,
    ):
        super().__init__()
        self.img_shape, self.num_classes = tuple(img_shape), num_classes
        self.aux = num_classes > 0 and cond == "acgan"
        n = math.prod(img_shape)
        feat = width + int(mbstd)  # last hidden layer, plus the minibatch std feature
        self.net = nn.Sequential(  # [N, C*H*W] -> [N, 2w] -> [N, w] (-> [N, w + 1] with mbstd) -> [N, 1]
            maybe_sn(nn.Linear(n, width * 2), norm),
            nn.LeakyReLU(0.2, True),
            maybe_sn(nn.Linear(width * 2, width), norm),
            norm1d(norm, width),
            nn.LeakyReLU(0.2, True),
            maybe_sn(nn.Linear(feat, 1), norm),  # the head: net[-1]
        )
        self.mbstd = MinibatchStd() if mbstd else None
        self.label_head = label_head(feat, num_classes, cond, norm)  # projection [N] | class logits [N, K]

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """The trunk's blocks for ``freeze_d``, image side first (its last layer, the logit, is never frozen)."""
        return sequential_blocks(self.net, "net", drop_last=True)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net[:-1](x.flatten(1))  # [N, w]
        if self.mbstd is not None:
            h = self.mbstd(h)  # [N, w + 1]
        return h

    def _logit(self, h: torch.Tensor) -> torch.Tensor:
        return self.net[-1](h).squeeze(1)  # the head is the last layer of net: [N]


@MODELS.register("mlp")
def build_mlp(cfg, img_shape: Tuple[int, int, int]) -> Tuple[MLPGenerator, MLPDiscriminator]:
    k = cfg.num_classes if cfg.conditional else 0
    g = MLPGenerator(img_shape, cfg.z_dim, cfg.g_width or 256, cfg.g_norm, k, cfg.g_cond)
    d = MLPDiscriminator(img_shape, cfg.d_width or 256, cfg.d_norm, k, cfg.d_cond, cfg.mbstd)
    return g, d
