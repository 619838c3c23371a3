"""Generator/discriminator families, one per file, registered by name in ``MODELS``.

Every family registers a builder ``build(cfg, img_shape) -> (G, D)`` (``cfg``: the ``model`` section).
Generators take ``z [N, z_dim]`` (and labels ``y [N]`` when class-conditional) and return
images in [-1, 1]; discriminators take ``(x, y=None)`` and return raw logits ``[N]`` (no
sigmoid: losses work on logits); AC-GAN discriminators add ``forward_aux(x) -> (logits, class_logits)``.
The completion networks of the inpaint task are in :mod:`ganforge.tasks.inpaint.networks`.
"""

from __future__ import annotations

import torch

from ganforge.tasks.gan import dcgan as _dcgan  # noqa: F401  (registers "dcgan")
from ganforge.tasks.gan import mlp as _mlp  # noqa: F401  (registers "mlp")
from ganforge.tasks.gan import resnet as _resnet  # noqa: F401  (registers "resnet")
from ganforge.tasks.gan.registry import MODELS, build_models

__all__ = ["MODELS", "build_models", "draw_z", "Z_DISTRIBUTIONS"]


def _normal(n: int, dim: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randn(n, dim, generator=generator, device=device)


def _uniform(n: int, dim: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, dim, generator=generator, device=device).mul_(2.0).sub_(1.0)  # U[0, 1) -> [-1, 1)


Z_DISTRIBUTIONS = {"normal": _normal, "uniform": _uniform}  # model.z_dist -> draw(n, z_dim, generator, device)


def draw_z(n: int, z_dim: int, dist: str, generator: torch.Generator, device=None) -> torch.Tensor:
    """``n`` latent vectors [n, z_dim] from ``model.z_dist`` (``normal`` or ``uniform`` in [-1, 1]), drawn from
    ``generator`` (on its device unless ``device`` is given)."""
    return Z_DISTRIBUTIONS[dist](n, z_dim, generator, device if device is not None else generator.device)
