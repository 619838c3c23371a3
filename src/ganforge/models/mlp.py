"""The fully connected GAN of the original papers (Goodfellow et al. 2014, as popularised
by Keras-GAN): Dense + BatchNorm + LeakyReLU(0.2) generator with a tanh output, and a
Dense + LeakyReLU discriminator returning one logit per image. Works for any image size.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn as nn

from ganforge.models import MODELS
from ganforge.models.layers import maybe_sn, norm1d


class MLPGenerator(nn.Module):
    def __init__(self, img_shape: Tuple[int, int, int], z_dim: int = 100, width: int = 256, norm: str = "batch"):
        super().__init__()
        self.z_dim, self.img_shape = z_dim, tuple(img_shape)
        dims = [z_dim, width, width * 2, width * 4]
        layers = []
        for i in range(3):  # [N, dims[i]] -> [N, dims[i+1]]; no norm on the first layer, as in the classic
            layers += [nn.Linear(dims[i], dims[i + 1])]
            if i > 0:
                layers += [norm1d(norm, dims[i + 1])]
            layers += [nn.LeakyReLU(0.2, True)]
        layers += [nn.Linear(dims[-1], math.prod(img_shape)), nn.Tanh()]  # -> [N, C*H*W]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.img_shape)  # [N, C, H, W] in [-1, 1]


class MLPDiscriminator(nn.Module):
    def __init__(self, img_shape: Tuple[int, int, int], width: int = 256, norm: str = "none"):
        super().__init__()
        self.img_shape = tuple(img_shape)
        n = math.prod(img_shape)
        self.net = nn.Sequential(  # [N, C*H*W] -> [N, 2w] -> [N, w] -> [N, 1]
            maybe_sn(nn.Linear(n, width * 2), norm),
            nn.LeakyReLU(0.2, True),
            maybe_sn(nn.Linear(width * 2, width), norm),
            norm1d(norm, width),
            nn.LeakyReLU(0.2, True),
            maybe_sn(nn.Linear(width, 1), norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)  # logits [N]


@MODELS.register("mlp")
def build_mlp(cfg, img_shape):
    g = MLPGenerator(img_shape, cfg.z_dim, cfg.g_width or 256, cfg.g_norm)
    d = MLPDiscriminator(img_shape, cfg.d_width or 256, cfg.d_norm)
    return g, d
