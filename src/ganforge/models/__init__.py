"""Generator/discriminator families, one per file, registered by name.

Every family registers a builder ``build(cfg: ModelConfig, img_shape) -> (G, D)``.
Generators take ``z [N, z_dim]`` (and labels ``y [N]`` when class-conditional) and return
images in [-1, 1]; discriminators take ``(x, y=None)`` and return raw logits ``[N]`` (no
sigmoid: losses work on logits); AC-GAN discriminators add ``forward_aux(x) -> (logits, class_logits)``.
"""
from __future__ import annotations

from typing import Tuple

import torch.nn as nn

from ganforge.registry import Registry

MODELS: Registry = Registry("model")

from ganforge.models import dcgan as _dcgan  # noqa: E402,F401  (registers "dcgan")
from ganforge.models import mlp as _mlp  # noqa: E402,F401  (registers "mlp")
from ganforge.models import resnet as _resnet  # noqa: E402,F401  (registers "resnet")


def build_models(cfg, img_shape: Tuple[int, int, int]) -> Tuple[nn.Module, nn.Module]:
    """Build (generator, discriminator) for ``cfg.model`` and images of shape (C, H, W)."""
    return MODELS.get(cfg.arch)(cfg, tuple(img_shape))
