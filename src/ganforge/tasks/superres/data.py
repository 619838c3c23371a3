"""Degradations: how the super-resolution task makes low-resolution inputs from high-resolution images.

Batches of float ``[N, C, H, W]`` in [-1, 1] on any device; all randomness comes from a ``torch.Generator``
the caller owns (and checkpoints), so a resumed run sees the same pairs. ``bicubic``: antialiased bicubic
downsampling (as MATLAB's ``imresize``), the classic benchmark setting; ``area``: the mean of each s x s
block, how MNIST's 7x7 test inputs are made; ``practical``: a Real-ESRGAN-style pipeline (Wang et al. 2021)
of blur, downsampling, noise and JPEG, each with a probability, in a random order per batch
(:class:`Practical`). :func:`degrade` is the one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

DEGRADATIONS = ("bicubic", "area", "practical")


def downsample(x: torch.Tensor, scale: int, mode: str = "bicubic") -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, C, H/s, W/s]`` (H and W multiples of ``scale``) with ``mode``:
    ``bicubic`` / ``bilinear`` (antialiased) or ``area`` (block means)."""
    n, c, h, w = x.shape
    if h % scale or w % scale:
        raise ValueError(f"downsample: {h}x{w} is not a multiple of the scale {scale}")
    if mode == "area":
        return F.avg_pool2d(x, scale)
    if mode not in ("bicubic", "bilinear"):
        raise ValueError(f"downsample: mode {mode!r}: choose bicubic, bilinear or area")
    return F.interpolate(x, size=(h // scale, w // scale), mode=mode, align_corners=False, antialias=True)


@dataclass(frozen=True)
class Practical:
    """Parameters of the practical pipeline (ranges are drawn uniformly per image)."""

    blur_prob: float = 0.7
    blur_sigma: Tuple[float, float] = (0.2, 2.0)  # in high-resolution pixels; halved after the downsampling
    aniso_prob: float = 0.3  # share of blurs that are anisotropic (two sigmas, a random angle)
    noise_prob: float = 0.6
    noise_sigma: Tuple[float, float] = (1.0, 15.0)  # in 0..255 units
    grey_noise_prob: float = 0.4  # the same noise in every channel
    jpeg_prob: float = 0.6
    jpeg_quality: Tuple[int, int] = (40, 95)
    kernel: int = 13  # blur kernel side (odd)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def gaussian_kernels(
    n: int, size: int, sigma_range: Tuple[float, float], aniso_prob: float, gen: torch.Generator
) -> torch.Tensor:
    """``n`` normalised Gaussian kernels ``[n, size, size]``: isotropic, or with two sigmas and a rotation."""
    s1 = _uniform(n, *sigma_range, gen)
    s2 = torch.where(torch.rand(n, generator=gen) < aniso_prob, _uniform(n, *sigma_range, gen), s1)
    theta = _uniform(n, 0.0, math.pi, gen)
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")  # [size, size]
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    u = cos * xx + sin * yy  # [n, size, size], rotated coordinates
    v = -sin * xx + cos * yy
    k = torch.exp(-0.5 * ((u / s1[:, None, None]) ** 2 + (v / s2[:, None, None]) ** 2))
    return k / k.sum((1, 2), keepdim=True)


def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each image ``[N, C, H, W]`` convolved with its own kernel ``[N, k, k]`` (reflect padding)."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    weight = kernels.to(x)[:, None].repeat_interleave(c, 0)  # [N*C, 1, k, k]
    pad = k // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    xp = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode=mode)
    return F.conv2d(xp, weight, groups=n * c).reshape(n, c, h, w)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-compress each image at its quality (PIL's libjpeg, on the CPU); [-1, 1] in and out."""
    import io

    import numpy as np
    from PIL import Image

    u8 = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()  # [N, C, H, W]
    out = torch.empty_like(u8)
    for i in range(u8.shape[0]):
        a = u8[i].permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(buf, format="JPEG", quality=int(quality[i]))
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        out[i] = torch.from_numpy(dec.reshape(a.shape).copy()).permute(2, 0, 1)
    return out.to(x.device, torch.float32).div(127.5).sub(1.0)


def practical(x: torch.Tensor, scale: int, gen: torch.Generator, p: Practical = Practical()) -> torch.Tensor:
    """The practical pipeline: blur, downsample, noise and JPEG in a random order (see the module doc)."""
    n, c, h, w = x.shape
    order = torch.randperm(4, generator=gen).tolist()  # 0 blur, 1 downsample, 2 noise, 3 jpeg
    # draw every parameter up front, in a fixed order, so the random stream does not depend on the order
    do_blur = torch.rand(n, generator=gen) < p.blur_prob
    kernels = gaussian_kernels(n, p.kernel, p.blur_sigma, p.aniso_prob, gen)  # for a blur before the downsampling
    kernels_lr = gaussian_kernels(
        n, p.kernel, (p.blur_sigma[0] / 2, p.blur_sigma[1] / 2), p.aniso_prob, gen
    )  # after it
    mode = ("area", "bilinear", "bicubic")[int(torch.randint(0, 3, (1,), generator=gen))]
    do_noise = torch.rand(n, generator=gen) < p.noise_prob
    sigma = _uniform(n, *p.noise_sigma, gen) / 127.5  # [-1, 1] units
    grey = torch.rand(n, generator=gen) < p.grey_noise_prob
    noise = torch.randn(n, c, h // scale, w // scale, generator=gen)  # drawn at the low resolution
    do_jpeg = torch.rand(n, generator=gen) < p.jpeg_prob
    quality = torch.randint(p.jpeg_quality[0], p.jpeg_quality[1] + 1, (n,), generator=gen)
    down = False
    for op in order:
        if op == 0:
            k = kernels_lr if down else kernels  # a blur after the downsampling is a smaller one (sigma halved)
            x = torch.where(do_blur[:, None, None, None].to(x.device), blur(x, k), x)
        elif op == 1:
            x, down = downsample(x, scale, mode), True
        elif op == 2:
            nz = noise.to(x.device)
            if not down:  # noise on the high-resolution image: the same values, nearest-upsampled
                nz = F.interpolate(nz, scale_factor=scale, mode="nearest")
            nz = torch.where(grey[:, None, None, None].to(x.device), nz[:, :1].expand_as(nz), nz)
            x = x + do_noise.to(x)[:, None, None, None] * sigma.to(x)[:, None, None, None] * nz
        else:
            x = torch.where(do_jpeg[:, None, None, None].to(x.device), jpeg(x, quality), x.clamp(-1, 1))
    return x.clamp(-1, 1)


def degrade(x: torch.Tensor, scale: int, kind: str = "bicubic", gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """High-resolution ``[N, C, H, W]`` in [-1, 1] -> low-resolution ``[N, C, H/s, W/s]`` by ``kind``
    (:data:`DEGRADATIONS`); ``gen`` is needed for ``practical``."""
    if kind == "bicubic":
        return downsample(x, scale, "bicubic").clamp(-1, 1)
    if kind == "area":
        return downsample(x, scale, "area")
    if kind == "practical":
        if gen is None:
            raise ValueError("degrade: the practical pipeline needs a torch.Generator")
        return practical(x, scale, gen)
    raise ValueError(f"degrade: kind {kind!r}: choose one of {', '.join(DEGRADATIONS)}")
