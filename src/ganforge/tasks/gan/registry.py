"""``MODELS``: the generator/discriminator families by name (``model.arch``), and :func:`build_models`.

Each family module (dcgan.py, mlp.py, resnet.py) registers a builder
``build(cfg, img_shape) -> (G, D)``; ``cfg`` is the ``model`` config section (any object with its fields).
"""

from __future__ import annotations

from typing import Tuple

import torch.nn as nn

from ganforge.registry import Registry

MODELS: Registry = Registry("model")


def build_models(cfg, img_shape: Tuple[int, int, int]) -> Tuple[nn.Module, nn.Module]:
    """Build (generator, discriminator) for the ``model`` section ``cfg`` and images of shape (C, H, W)."""
    return MODELS.get(cfg.arch)(cfg, tuple(img_shape))
