"""Small blocks shared by the model families."""
from __future__ import annotations

import torch.nn as nn


def maybe_sn(module: nn.Module, norm: str) -> nn.Module:
    """Wrap a conv/linear layer in spectral normalisation when ``norm == "spectral"``."""
    if norm == "spectral":
        return nn.utils.parametrizations.spectral_norm(module)
    return module


def norm2d(norm: str, channels: int) -> nn.Module:
    """BatchNorm for ``batch``; identity otherwise (spectral norm lives on the weights)."""
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


def norm1d(norm: str, features: int) -> nn.Module:
    return nn.BatchNorm1d(features) if norm == "batch" else nn.Identity()


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2015): N(0, 0.02) weights, BN gamma N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(w, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
