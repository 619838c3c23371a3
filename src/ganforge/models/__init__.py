"""Generator/discriminator families, one per file, registered by name in ``MODELS``.

Every family registers a builder ``build(cfg, img_shape) -> (G, D)`` (``cfg``: the ``model`` section).
Generators take ``z [N, z_dim]`` (and labels ``y [N]`` when class-conditional) and return
images in [-1, 1]; discriminators take ``(x, y=None)`` and return raw logits ``[N]`` (no
sigmoid: losses work on logits); AC-GAN discriminators add ``forward_aux(x) -> (logits, class_logits)``.
The completion networks of the inpaint task are in :mod:`ganforge.models.inpaint`.
"""
from __future__ import annotations

from ganforge.models import dcgan as _dcgan  # noqa: F401  (registers "dcgan")
from ganforge.models import mlp as _mlp  # noqa: F401  (registers "mlp")
from ganforge.models import resnet as _resnet  # noqa: F401  (registers "resnet")
from ganforge.models.registry import MODELS, build_models

__all__ = ["MODELS", "build_models"]
