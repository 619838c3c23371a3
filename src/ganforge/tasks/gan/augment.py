"""DiffAugment (Zhao et al. 2020): differentiable augmentation for data-efficient GAN training.

The same random transform family is applied to every image D sees, real and fake, differentiably, so
G's gradients pass through it: ``color`` (brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x
U(0.5, 1.5), per image), ``translation``
(shift by up to ``translation * size`` pixels, zero fill) and ``cutout`` (zero a square of side
``cutout * size``), as in the paper's reference code. Randomness comes from ``generator`` (on ``x``'s
device), so training stays reproducible; every operation is vectorised over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from ganforge.config import Section, choice
from ganforge.errors import ConfigError

__all__ = ["AugmentConfig", "diff_augment", "POLICIES", "parse_policy"]


@dataclass
class AugmentConfig(Section):
    policy: str = ""  # DiffAugment (Zhao et al. 2020) applied to every D input: comma list of color,translation,cutout
    translation: float = 0.125  # max shift as a fraction of the image size
    cutout: float = 0.5  # cutout square side as a fraction of the image size

    def check(self, key: str = "augment") -> None:
        ops = [p.strip() for p in self.policy.split(",") if p.strip()]
        for op in ops:
            choice(f"{key}.policy", op, ["color", "translation", "cutout"])
        self.policy = ",".join(ops)
        if not 0 < self.translation < 1 or not 0 < self.cutout < 1:
            raise ConfigError(f"{key}.translation and {key}.cutout: expected fractions in (0, 1)")


def _rand(n: int, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """U(0, 1) per image, shaped to broadcast over [N, C, H, W] -> [N, 1, 1, 1]."""
    r = torch.rand(n, 1, 1, 1, device=x.device, generator=generator)
    return r.to(x.dtype)


def _randint(lo: int, hi: int, n: int, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Integers in [lo, hi) per image -> [N]."""
    return torch.randint(lo, hi, (n,), device=x.device, generator=generator)


def _brightness(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
    return x + (_rand(x.shape[0], x, g) - 0.5)  # [N, C, H, W]


def _saturation(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
    if x.shape[1] == 1:  # grey images have no saturation
        return x
    mean = x.mean(dim=1, keepdim=True)  # [N, 1, H, W]
    return (x - mean) * (_rand(x.shape[0], x, g) * 2) + mean


def _contrast(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # [N, 1, 1, 1]
    return (x - mean) * (_rand(x.shape[0], x, g) + 0.5) + mean


def _color(x: torch.Tensor, g: Optional[torch.Generator], translation: float, cutout: float) -> torch.Tensor:
    return _contrast(_saturation(_brightness(x, g), g), g)


def _translation(x: torch.Tensor, g: Optional[torch.Generator], translation: float, cutout: float) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * translation + 0.5), int(w * translation + 0.5)  # max shift in pixels
    ty = _randint(-sh, sh + 1, n, x, g)  # [N]
    tx = _randint(-sw, sw + 1, n, x, g)  # [N]
    pad = F.pad(x, [1, 1, 1, 1])  # [N, C, H+2, W+2], a zero border that out-of-range reads hit
    rows = (torch.arange(h, device=x.device)[None] + ty[:, None] + 1).clamp(0, h + 1)  # [N, H]
    cols = (torch.arange(w, device=x.device)[None] + tx[:, None] + 1).clamp(0, w + 1)  # [N, W]
    idx = torch.arange(n, device=x.device)[:, None, None]  # [N, 1, 1]
    out = pad[idx, :, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]: out[y, x] = in[y + ty, x + tx]
    return out.permute(0, 3, 1, 2).contiguous()  # [N, C, H, W]


def _cutout(x: torch.Tensor, g: Optional[torch.Generator], translation: float, cutout: float) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * cutout + 0.5), int(w * cutout + 0.5)  # square side in pixels
    cy = _randint(0, h + (1 - ch % 2), n, x, g)  # [N] centre row
    cx = _randint(0, w + (1 - cw % 2), n, x, g)  # [N] centre column
    top, left = cy - ch // 2, cx - cw // 2  # [N]
    r = torch.arange(h, device=x.device)[None]  # [1, H]
    c = torch.arange(w, device=x.device)[None]  # [1, W]
    in_r = (r >= top[:, None]) & (r < top[:, None] + ch)  # [N, H]
    in_c = (c >= left[:, None]) & (c < left[:, None] + cw)  # [N, W]
    keep = ~(in_r[:, :, None] & in_c[:, None, :])  # [N, H, W]
    return x * keep[:, None].to(x.dtype)  # [N, C, H, W]


POLICIES: Dict[str, Callable[..., torch.Tensor]] = {"color": _color, "translation": _translation, "cutout": _cutout}


def parse_policy(policy: str) -> List[str]:
    """``"color, translation"`` -> ``["color", "translation"]``; unknown names raise ``ValueError``."""
    ops = [p.strip() for p in (policy or "").split(",") if p.strip()]
    for op in ops:
        if op not in POLICIES:
            raise ValueError(f"DiffAugment policy {op!r} is not known; choose from: {', '.join(POLICIES)}")
    return ops


def diff_augment(
    x: torch.Tensor,
    policy: str,
    translation: float = 0.125,
    cutout: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020): apply the comma-separated ``policy`` ops in order to ``x [N, C, H, W]``.

    Differentiable w.r.t. ``x``; an empty policy returns ``x`` itself. ``translation`` is the
    largest shift and ``cutout`` the square's side, both as fractions of the image size.
    """
    ops = parse_policy(policy)
    if not ops:
        return x
    if x.dim() != 4:
        raise ValueError(f"diff_augment expects images [N, C, H, W], got shape {list(x.shape)}")
    for op in ops:
        x = POLICIES[op](x, generator, translation, cutout)
    return x
