"""Image attacks for training and evaluating watermarks, and :class:`AttackLayer`, which draws one (or a
combination) per batch from a seeded generator.

Each attack is a function of a batch ``[N, C, H, W]`` in [-1, 1] that gradients flow through: ``jpeg`` (the
real codec forward, the identity backward: a straight-through estimator), ``jpeg_diff`` (a differentiable
approximation, Shin & Song 2017), ``resize``, ``crop``, ``blur``, ``noise``, ``brightness``, ``contrast``,
``rotate``, ``quantise``. Random draws come from a ``torch.Generator``, so training resumes exactly;
``benchmarks/watermark_robustness.py`` applies the same functions to uint8 images.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

# the JPEG standard's luminance quantisation table (Annex K)
JPEG_LUMA = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``[n, n]`` (row k: frequency k)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.float()


DCT8 = _dct_matrix(8)


def quality_table(quality: float) -> torch.Tensor:
    """The luminance quantisation table of libjpeg at ``quality`` (1-100), unclamped to integers."""
    q = float(min(max(quality, 1), 100))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return torch.clamp(torch.floor((JPEG_LUMA * scale + 50) / 100), min=1)


def to_luma(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, 1, H, W]``: BT.601 luma of colour images, grey images unchanged."""
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def jpeg_diff(x: torch.Tensor, quality: float) -> torch.Tensor:
    """Differentiable JPEG approximation of each channel (as luminance) at ``quality``: 8x8 DCT, the
    standard quantisation tables scaled for the quality, rounding replaced by ``r + (x - r)^3`` (Shin & Song 2017)."""
    n, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    v = (
        F.pad(x * 127.5, (0, pw, 0, ph), mode="replicate") if ph or pw else x * 127.5
    )  # [N, C, H', W'] in [-127.5, 127.5]
    H, W = v.shape[2:]
    blocks = v.reshape(n, c, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)  # [N, C, H/8, W/8, 8, 8]
    d = DCT8.to(x.device)
    coef = d @ blocks @ d.T
    q = quality_table(quality).to(x.device)
    z = coef / q
    r = torch.round(z)
    z = r + (z - r) ** 3
    rec = d.T @ (z * q) @ d
    out = rec.permute(0, 1, 2, 4, 3, 5).reshape(n, c, H, W)[:, :, :h, :w] / 127.5
    return out


def _to_uint8_np(x: torch.Tensor) -> np.ndarray:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def jpeg_uint8(images: np.ndarray, quality: int) -> np.ndarray:
    """Real JPEG (libjpeg's standard tables at ``quality``, 4:2:0 chroma for colour) of uint8 ``[N, H, W, C]``
    (C = 1 or 3, RGB): through OpenCV when it is installed (several times faster), else Pillow."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    out = np.empty_like(images)
    for i, im in enumerate(images):
        if cv2 is not None:
            src = im[..., ::-1] if im.shape[2] == 3 else im[..., 0]
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(src), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            dec = cv2.imdecode(buf, cv2.IMREAD_COLOR if im.shape[2] == 3 else cv2.IMREAD_GRAYSCALE)
            dec = dec[..., ::-1] if im.shape[2] == 3 else dec
        else:
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(im[..., 0] if im.shape[2] == 1 else im).save(buf, format="JPEG", quality=int(quality))
            buf.seek(0)
            dec = np.asarray(Image.open(buf))
        out[i] = dec[..., None] if dec.ndim == 2 else dec
    return out


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (y.to(x) - x).detach()


def jpeg(x: torch.Tensor, quality: float) -> torch.Tensor:
    """The real JPEG codec at ``quality`` in the forward pass, identity in the backward pass."""
    y = torch.from_numpy(jpeg_uint8(_to_uint8_np(x), int(round(quality)))).permute(0, 3, 1, 2).float() / 127.5 - 1
    return straight_through(x, y)


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Rounding to 8-bit levels (straight-through), after clamping to [-1, 1]."""
    x = x.clamp(-1, 1)
    return straight_through(x, torch.round((x + 1) * 127.5) / 127.5 - 1)


def resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Bilinear (antialiased) resize by ``scale`` (the side lengths, rounded, at least 8)."""
    h, w = x.shape[2:]
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)


def resize_to(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size`` (H, W), antialiased when shrinking."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[2] or size[1] < x.shape[3]
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)


def crop(x: torch.Tensor, cut: float, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """Cut ``cut`` of each side's length away: a window of ``(1 - cut)`` of the height and width, at a
    random place (from ``gen``; the centre without one)."""
    h, w = x.shape[2:]
    ch, cw = max(4, round(h * (1 - cut))), max(4, round(w * (1 - cut)))
    if gen is None:
        y0, x0 = (h - ch) // 2, (w - cw) // 2
    else:
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    return x[:, :, y0 : y0 + ch, x0 : x0 + cw]


SEARCH_CUTS = (0.0, 0.1, 0.175, 0.25)  # the centred crops a watermark reader tries (the share of each side cut)


def reframe(x: torch.Tensor, cut: float) -> torch.Tensor:
    """The reader's hypothesis that ``x`` [N, C, H, W] is the centre of a larger image that lost ``cut`` of
    each side and was resized back: ``x`` shrunk to ``1 - cut`` of its size in the middle of a canvas of its
    own size, the border filled by repeating the edge pixels, which puts a centred crop's content back where
    it was marked (the window is placed as :func:`crop` cuts a centred one, so on the image's own pixel grid
    it lands on the same pixels)."""
    if cut <= 0:
        return x
    h, w = x.shape[2:]
    ih, iw = max(4, round(h * (1 - cut))), max(4, round(w * (1 - cut)))
    a, b = (h - ih) // 2, (w - iw) // 2
    return F.pad(resize_to(x, (ih, iw)), (b, w - iw - b, a, h - ih - a), mode="replicate")


def crop_search(x: torch.Tensor, gen: torch.Generator, jitter: float = 0.025) -> torch.Tensor:
    """A centred crop resized back, as a watermark reader reads it: one of the reader's hypotheses ``c`` of
    :data:`SEARCH_CUTS` (not 0), a crop cutting ``c`` +/- ``jitter`` of each side, resized back to the image's
    size, then :func:`reframe` by ``c`` (trains the reading that ``logits_search`` makes of a cropped image)."""
    c = SEARCH_CUTS[1 + int(torch.randint(0, len(SEARCH_CUTS) - 1, (1,), generator=gen))]
    cut = c + _u(gen, -jitter, jitter)
    return reframe(resize_to(crop(x, cut), tuple(x.shape[2:])), c)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (separable, reflected borders)."""
    if sigma <= 0:
        return x
    k = gaussian_kernel(sigma).to(x)
    r = (k.numel() - 1) // 2
    c = x.shape[1]
    h = x.shape[2]
    mode = "reflect" if min(x.shape[2:]) > r else "replicate"
    y = F.pad(x, (r, r, 0, 0), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode=mode)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    assert y.shape[2] == h
    return y


def noise(x: torch.Tensor, std: float, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``std`` ([-1, 1] units: 0.04 is about 5 grey levels)."""
    return x + std * torch.randn(x.shape, generator=gen, device=x.device if gen is None else gen.device).to(x)


def brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply the intensities (in [0, 1]) by ``factor`` (1.2 = 20% brighter), clamped."""
    return (((x + 1) / 2) * factor).clamp(0, 1) * 2 - 1


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale the deviation from each image's mean by ``factor``, clamped."""
    m = x.mean((1, 2, 3), keepdim=True)
    return ((x - m) * factor + m).clamp(-1, 1)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre by ``degrees`` (bilinear; corners filled with black)."""
    a = math.radians(degrees)
    n = x.shape[0]
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype, device=x.device
    )
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


# ---- drawing attacks for training ------------------------------------------------------------------


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


# name -> x, gen -> attacked x (each draws its own strength)
ATTACKS: Dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "identity": lambda x, g: x,
    "jpeg": lambda x, g: jpeg(x, _u(g, 40, 95)),
    "jpeg_diff": lambda x, g: jpeg_diff(x, _u(g, 40, 95)),
    "resize": lambda x, g: resize(x, _u(g, 0.35, 0.9)),
    "crop": lambda x, g: crop(x, _u(g, 0.0, 0.3), g),
    "crop_search": crop_search,
    "blur": lambda x, g: blur(x, _u(g, 0.3, 2.0)),
    "noise": lambda x, g: noise(x, _u(g, 0.0, 0.05), g),
    "brightness": lambda x, g: brightness(x, _u(g, 0.7, 1.3)),
    "contrast": lambda x, g: contrast(x, _u(g, 0.7, 1.3)),
    "rotate": lambda x, g: rotate(x, _u(g, -3.0, 3.0)),
}


class AttackLayer:
    """Draws, per batch, one attack of ``names`` (uniformly), or with probability ``combine`` two
    different ones in a row; the result is rounded to 8 bits at the end (as a saved image is)."""

    def __init__(self, names: Sequence[str], combine: float = 0.0):
        unknown = [n for n in names if n not in ATTACKS]
        if unknown:
            raise ValueError(f"unknown attack(s) {unknown}; choose from {', '.join(ATTACKS)}")
        self.names: List[str] = list(names)
        self.combine = float(combine)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> Tuple[torch.Tensor, str]:
        """(the attacked batch, the attack's name: ``a+b`` for a combination)."""
        x = quantise(x)
        k = 2 if len(self.names) > 1 and float(torch.rand((), generator=gen)) < self.combine else 1
        picks = torch.randperm(len(self.names), generator=gen)[:k].tolist()
        used = []
        for i in picks:
            name = self.names[i]
            x = ATTACKS[name](x, gen)
            used.append(name)
        return quantise(x), "+".join(used)
