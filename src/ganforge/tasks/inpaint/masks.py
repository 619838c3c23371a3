"""Masks for image completion, made on the fly from a seeded ``torch.Generator``.

Every mask is float ``[N, 1, H, W]`` with **1 = missing** (the hole) and 0 = known. All randomness comes
from the ``generator`` argument, so a run that draws its masks from a checkpointed generator resumes
exactly. :func:`random_masks` draws boxes, DeepFill v2 free-form strokes or a mix of both, vectorised
(a few tensor ops per round, no loop over pixels or strokes); :func:`center_box_mask` and :func:`box_mask`
make fixed rectangles (e.g. the 14x14 centre hole of the MNIST completion benchmark).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

MASK_KINDS = ("box", "free", "mixed")

# free-form stroke parameters (fractions of the image size), after DeepFill v2's generator
_ROUNDS = 10  # rounds of candidate strokes (3 per image in the first, then 1)
_VERTICES = (3, 6)  # segments per stroke: uniform integer in [lo, hi]
_SEG_LEN = (0.12, 0.35)  # segment length as a fraction of the longer side
_BRUSH = (0.08, 0.2)  # brush width as a fraction of the shorter side (at least 3 pixels, odd)

DeviceLike = Union[str, torch.device, None]


def _check(n: int, h: int, w: int, hole_min: float, hole_max: float) -> None:
    if n < 0:
        raise ValueError(f"random_masks: n must be >= 0, got {n}")
    if h < 1 or w < 1:
        raise ValueError(f"random_masks: height and width must be >= 1, got {h}x{w}")
    if not 0.0 < hole_min <= hole_max < 1.0:
        raise ValueError(f"random_masks: expected 0 < hole_min <= hole_max < 1, got {hole_min}, {hole_max}")


def box_mask(h: int, w: int, x: int, y: int, bw: int, bh: int) -> torch.Tensor:
    """A rectangle of width ``bw`` and height ``bh`` with its top-left corner at column ``x``,
    row ``y`` (clipped to the image): float ``[1, 1, h, w]``, 1 inside."""
    if bw < 0 or bh < 0:
        raise ValueError(f"box_mask: width and height must be >= 0, got {bw}x{bh}")
    m = torch.zeros(1, 1, h, w)
    m[:, :, max(0, y) : max(0, y + bh), max(0, x) : max(0, x + bw)] = 1.0
    return m


def center_box_mask(h: int, w: int, box_h: int, box_w: int) -> torch.Tensor:
    """A ``box_h x box_w`` hole in the middle of an ``h x w`` image: float ``[1, 1, h, w]``.

    The top-left corner is at ``((h - box_h) // 2, (w - box_w) // 2)``; 28x28 with 14x14 is
    rows and columns 7..20.
    """
    if not (0 < box_h <= h and 0 < box_w <= w):
        raise ValueError(f"center_box_mask: a {box_h}x{box_w} box does not fit in {h}x{w}")
    return box_mask(h, w, (w - box_w) // 2, (h - box_h) // 2, box_w, box_h)


def _uniform(n: int, lo: float, hi: float, gen: Optional[torch.Generator]) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _boxes(n: int, h: int, w: int, frac: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
    """One random rectangle per image with area ``frac * h * w`` (rounded): [n, 1, h, w]."""
    area = frac * (h * w)  # [n] target area in pixels
    log_r = _uniform(n, math.log(0.5), math.log(2.0), gen)  # aspect = bh / bw, log-uniform in [1/2, 2]
    bh = (area * log_r.exp()).sqrt().round().clamp(1, h)  # [n]
    bw = (area / bh).round().clamp(1, w)  # keeps the area when bh hit the image border
    bh = (area / bw).round().clamp(1, h)  # ... and when bw did
    u = torch.rand(n, 2, generator=gen)
    y0 = (u[:, 0] * (h - bh + 1)).floor()  # [n] top row, uniform over valid positions
    x0 = (u[:, 1] * (w - bw + 1)).floor()  # [n] left column
    rows = torch.arange(h, dtype=torch.float32)
    cols = torch.arange(w, dtype=torch.float32)
    in_r = (rows[None] >= y0[:, None]) & (rows[None] < (y0 + bh)[:, None])  # [n, h]
    in_c = (cols[None] >= x0[:, None]) & (cols[None] < (x0 + bw)[:, None])  # [n, w]
    return (in_r[:, :, None] & in_c[:, None, :]).float()[:, None]  # [n, 1, h, w]


def _stroke_maps(n: int, s: int, h: int, w: int, gen: Optional[torch.Generator]) -> torch.Tensor:
    """``s`` candidate strokes for each of ``n`` images, one map per stroke: bool [n, s, h, w]."""
    v_lo, v_hi = _VERTICES
    nv = v_hi  # segments per stroke; strokes with fewer segments repeat their last vertex
    long_side, short_side = max(h, w), min(h, w)
    # random walk: start anywhere, then nv segments with random angle and length (DeepFill v2)
    start = torch.rand(n, s, 2, generator=gen) * torch.tensor([h - 1.0, w - 1.0])  # [n, s, 2] (y, x)
    ang0 = torch.rand(n, s, 1, generator=gen) * (2 * math.pi)  # mean direction of the stroke
    # zigzag around the mean direction: segments alternate between +- (72 +- 24) degrees (DeepFill v2)
    off = (2 * math.pi / 5) + (torch.rand(n, s, nv, generator=gen) - 0.5) * (4 * math.pi / 15)
    sign = 1.0 - 2.0 * (torch.arange(nv) % 2)  # +1, -1, +1, ...
    ang = ang0 + sign * off  # [n, s, nv]
    seg = _SEG_LEN[0] + (_SEG_LEN[1] - _SEG_LEN[0]) * torch.rand(n, s, nv, generator=gen)
    seg = seg * long_side  # [n, s, nv] lengths in pixels
    used = torch.randint(v_lo, v_hi + 1, (n, s, 1), generator=gen)  # [n, s, 1] segments actually drawn
    seg = seg * (torch.arange(nv) < used)  # unused segments have length 0
    step = torch.stack([ang.sin(), ang.cos()], -1) * seg[..., None]  # [n, s, nv, 2]
    verts = torch.cat([start[:, :, None], start[:, :, None] + step.cumsum(2)], 2)  # [n, s, nv+1, 2]
    verts = torch.minimum(verts.clamp(min=0), torch.tensor([h - 1.0, w - 1.0]))  # clip to the image
    # centre lines: points every half pixel along each segment
    k = int(math.ceil(_SEG_LEN[1] * long_side * 2)) + 1
    t = torch.linspace(0, 1, k)  # [k]
    a, b = verts[:, :, :-1], verts[:, :, 1:]  # [n, s, nv, 2] segment ends
    pts = a[..., None, :] + (b - a)[..., None, :] * t[:, None]  # [n, s, nv, k, 2]
    pts = pts.round().long()
    ids = torch.arange(n * s).view(n, s, 1, 1)  # which stroke map
    flat = (ids * h + pts[..., 0]) * w + pts[..., 1]  # [n, s, nv, k]
    lines = torch.zeros(n * s * h * w)
    lines[flat.reshape(-1)] = 1.0
    lines = lines.view(n * s, 1, h, w)  # [n*s, 1, h, w] one-pixel centre lines
    # brush: odd widths in [_BRUSH] * short side (at least 3 px), one per stroke
    lo = max(3.0, _BRUSH[0] * short_side)
    hi = max(lo, _BRUSH[1] * short_side)
    width = (lo + (hi - lo) * torch.rand(n * s, generator=gen)).round().long()
    width = width + (1 - width % 2)  # odd, so the dilation is centred
    return _dilate(lines, width // 2).view(n, s, h, w)


def _box_max(x: torch.Tensor, r: torch.Tensor, dim: int) -> torch.Tensor:
    """Whether any pixel within ``r[m]`` of each pixel along ``dim`` is set, for 0/1 maps [M, 1, H, W].

    A windowed sum from a cumulative sum, with each map's window picked by a gather: the cost does not
    grow with the radius (unlike a max-pool) and maps with different radii go in one pass.
    """
    R, n = int(r.max()), x.shape[dim]
    pad = [0, 0, 0, 0]
    pad[(3 - dim) * 2 : (3 - dim) * 2 + 2] = [R + 1, R]  # one extra zero in front: c[j] = sum of x[< j]
    c = F.pad(x, pad).cumsum(dim)  # [M, 1, H, W + 2R + 1] (dim 3) or [M, 1, H + 2R + 1, W] (dim 2)
    j = torch.arange(n)
    shape = [-1, 1, 1, 1]
    shape[dim] = n
    hi = (j[None] + R + r[:, None] + 1).view(shape)  # [M, 1, n, 1] or [M, 1, 1, n]: window end (exclusive)
    lo = (j[None] + R - r[:, None]).view(shape)  # window start
    size = list(x.shape)
    hi, lo = hi.expand(size), lo.expand(size)
    return (c.gather(dim, hi) - c.gather(dim, lo) > 0.5).to(x.dtype)


def _dilate(x: torch.Tensor, r: Union[int, torch.Tensor]) -> torch.Tensor:
    """Binary dilation of 0/1 maps [M, 1, H, W] by a (2r+1) x (2r+1) square (``r`` one radius, or one per map)."""
    r = torch.as_tensor(r, dtype=torch.long).expand(x.shape[0]) if not torch.is_tensor(r) or r.dim() == 0 else r
    return _box_max(_box_max(x, r, 3), r, 2) > 0.5


def _free(
    n: int, h: int, w: int, frac: torch.Tensor, hole_max: float, hole_min: float, gen: Optional[torch.Generator]
) -> torch.Tensor:
    """Free-form stroke masks whose hole fraction approaches ``frac`` (see :func:`random_masks`)."""
    hw = float(h * w)
    cur = torch.zeros(n, h, w, dtype=torch.bool)
    per_round = 3  # candidate strokes for each image still below its target: 3 at first, then 1 per round
    for _ in range(_ROUNDS):
        need = (cur.flatten(1).sum(1) / hw < frac).nonzero().squeeze(1)  # [k]
        if need.numel() == 0:
            break
        sub, goal = cur[need], frac[need]  # [k, h, w], [k]
        strokes = _stroke_maps(need.numel(), per_round, h, w, gen)  # [k, s, h, w] bool
        for i in range(per_round):  # accept one stroke at a time
            new = sub | strokes[:, i]
            take = (sub.flatten(1).sum(1) / hw < goal) & (new.flatten(1).sum(1) / hw <= hole_max)
            sub = torch.where(take[:, None, None], new, sub)
        cur[need] = sub
        per_round = 1
    m = cur[:, None].float()  # [n, 1, h, w]
    for _ in range(max(h, w)):  # grow the few masks still below hole_min
        low = m.flatten(1).mean(1) < hole_min
        if not bool(low.any()):
            break
        grown = _dilate(m[low], 1).float()
        if torch.equal(grown, m[low]):  # empty (or full) masks do not grow
            break
        m[low] = grown
    empty = m.flatten(1).mean(1) < hole_min
    if bool(empty.any()):
        m[empty] = torch.maximum(m[empty], _boxes(int(empty.sum()), h, w, frac[empty], gen))
    return m


def random_masks(
    n: int,
    h: int,
    w: int,
    kind: str = "box",
    hole_min: float = 0.1,
    hole_max: float = 0.5,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """``n`` random masks, float ``[n, 1, h, w]`` with 1 = missing.

    ``kind`` is ``box``, ``free`` (DeepFill v2 strokes) or ``mixed`` (each image one or the
    other with probability 1/2); the hole covers a fraction of the image in
    ``[hole_min, hole_max]`` (exactly up to rounding for boxes, approximately for strokes).
    The masks are made on the CPU from ``generator`` (a CPU ``torch.Generator``; the global
    generator when None) and moved to ``device``.

    ``box``: one rectangle per image, aspect ratio log-uniform in [1/2, 2]. ``free``: DeepFill v2 strokes
    (Yu et al. 2019, Algorithm 1), zigzag walks of 3-6 segments with a square brush 8-20% of the shorter
    side, added in at most 10 rounds while the image is below its target fraction ``t ~ U[hole_min,
    hole_max]`` and within ``hole_max``; then 3x3 dilations up to ``hole_min`` (a box when no stroke fits).
    Strokes average somewhat above the middle of the range (0.35 for [0.1, 0.5] at 28x28 and 64x64).
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"random_masks: kind {kind!r} is not allowed; choose one of: {', '.join(MASK_KINDS)}")
    _check(n, h, w, hole_min, hole_max)
    frac = _uniform(n, hole_min, hole_max, generator)  # [n] target hole fraction
    if kind == "box":
        out = _boxes(n, h, w, frac, generator)
    elif kind == "free":
        out = _free(n, h, w, frac, hole_max, hole_min, generator)
    else:
        is_box = torch.rand(n, generator=generator) < 0.5  # [n]
        out = torch.empty(n, 1, h, w)
        nb = int(is_box.sum())
        if nb:
            out[is_box] = _boxes(nb, h, w, frac[is_box], generator)
        if nb < n:
            out[~is_box] = _free(n - nb, h, w, frac[~is_box], hole_max, hole_min, generator)
    return out if device is None else out.to(device)
