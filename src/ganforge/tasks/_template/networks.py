"""The template task's networks: plain nn.Modules that know nothing of training."""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn as nn


class Generator(nn.Module):
    """z [N, z_dim] -> images [N, C, H, W] in [-1, 1]."""

    def __init__(self, z_dim: int, width: int, img_shape: Tuple[int, int, int]):
        super().__init__()
        self.img_shape = tuple(img_shape)
        self.net = nn.Sequential(nn.Linear(z_dim, width), nn.ReLU(), nn.Linear(width, math.prod(img_shape)), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.img_shape)  # [N, C, H, W]


class Discriminator(nn.Module):
    """images [N, C, H, W] -> logits [N] (no sigmoid: the losses work on logits)."""

    def __init__(self, width: int, img_shape: Tuple[int, int, int]):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(img_shape), width), nn.LeakyReLU(0.2), nn.Linear(width, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # [N]
