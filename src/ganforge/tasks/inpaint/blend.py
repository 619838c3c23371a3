"""Blend a generated fill into the known pixels of an image: Poisson, feathered, or none.

Functions take float ``[B, C, H, W]`` images and a hole mask ``[B, 1, H, W]`` (1 = missing) and return an
image equal to the input on the known pixels. **Poisson** (Pérez et al. 2003, for inpainting Yeh et al.
2017): the fill keeps its gradients and meets the surrounding pixels without a seam (:func:`solve_poisson`);
**feathered**: the fill mixed near the border with the smooth interpolation of the known pixels
(:func:`feather_blend`); **none**: pasted as it is. Work is limited to the hole's bounding box, so a small
hole in a large photograph costs little.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ganforge.tasks.inpaint.options import BLENDS

Tensor = torch.Tensor


def _neighbour_sum(x: Tensor) -> Tensor:
    """Sum of the 4-neighbours of every pixel, zero outside the image: [B, C, H, W] -> same."""
    p = F.pad(x, (1, 1, 1, 1))
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def _hole_box(hole: Tensor) -> Optional[Tuple[int, int, int, int]]:
    """(top, bottom, left, right) of all holes in the batch, grown by one pixel and clipped."""
    any_rows = hole.flatten(0, 1).any(0)  # [H, W]
    ys = torch.nonzero(any_rows.any(1)).flatten()
    xs = torch.nonzero(any_rows.any(0)).flatten()
    if ys.numel() == 0:
        return None
    h, w = any_rows.shape
    return max(int(ys[0]) - 1, 0), min(int(ys[-1]) + 2, h), max(int(xs[0]) - 1, 0), min(int(xs[-1]) + 2, w)


def solve_poisson(guide: Tensor, known: Tensor, hole: Tensor, max_iter: int = 2000, tol: float = 1e-5) -> Tensor:
    """Solve the discrete Poisson equation inside ``hole`` by conjugate gradients.

    For every hole pixel p with 4-neighbours N(p) inside the image::

        |N(p)| x_p - sum_{q in N(p), q in hole} x_q
            = sum_{q in N(p)} (guide_p - guide_q) + sum_{q in N(p), q known} known_q

    i.e. Laplacian(x) = Laplacian(guide) in the hole with x = known outside it. ``guide = 0``
    gives the membrane (harmonic) interpolation of the known pixels. Shapes: guide and known
    [B, C, H, W] float, hole [B, 1, H, W] (bool or 0/1). Returns [B, C, H, W]: the solution in
    the hole and ``known`` elsewhere. ``tol`` is the relative residual at which to stop. The system is
    symmetric positive definite (every hole region touches a known pixel); image borders are Neumann.
    """
    m = hole.to(guide.dtype).expand_as(guide)  # 1 in the hole
    k = 1.0 - m
    ones = torch.ones_like(guide[:, :1])
    n = _neighbour_sum(ones).expand_as(guide)  # number of neighbours inside the image
    b = (n * guide - _neighbour_sum(guide) + _neighbour_sum(known * k)) * m

    def apply_a(u: Tensor) -> Tensor:  # u is zero outside the hole
        return (n * u - _neighbour_sum(u)) * m

    x = guide * m  # start from the guide itself: the answer when it already meets the known pixels
    r = b - apply_a(x)
    p = r.clone()
    rs = (r * r).sum(dim=(2, 3), keepdim=True)  # one CG system per image and channel
    b_norm = (b * b).sum(dim=(2, 3), keepdim=True).clamp_min(1e-30)
    for _ in range(max_iter):
        if bool((rs <= (tol * tol) * b_norm).all()):
            break
        ap = apply_a(p)
        alpha = rs / (p * ap).sum(dim=(2, 3), keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum(dim=(2, 3), keepdim=True)
        p = r + (rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    return x * m + known * k


def _distance_into_hole(hole: Tensor, limit: int) -> Tensor:
    """Chessboard distance (in pixels, 1 at the border) from the known region, capped at ``limit``.

    Found by eroding the hole ``limit`` times with a 3x3 min-filter: [B, 1, H, W] -> float.
    """
    cur = hole.to(torch.float32)
    dist = cur.clone()
    for _ in range(max(limit - 1, 0)):
        # erosion = -maxpool(-x); outside the image counts as hole (the border is not a boundary)
        cur = -F.max_pool2d(-F.pad(cur, (1, 1, 1, 1), value=1.0), 3, stride=1)
        if not bool(cur.any()):
            break
        dist = dist + cur
    return dist


def feather_blend(fill: Tensor, known: Tensor, hole: Tensor, band: Optional[int] = None) -> Tensor:
    """Fill mixed with the membrane interpolation of the known pixels near the hole's border.

    weight of the fill = min(1, d / band), d = distance into the hole (1 at its border); the
    rest comes from the harmonic interpolation of the known pixels, which continues them
    smoothly. ``band`` defaults to a fifth of the hole's smaller bounding-box side (at least 1).
    """
    hole_b = hole.bool()
    if band is None:
        box = _hole_box(hole_b)
        side = min(box[1] - box[0], box[3] - box[2]) if box else 1
        band = max(1, round(side / 5))
    membrane = solve_poisson(torch.zeros_like(fill), known, hole_b)
    w = (_distance_into_hole(hole_b, band) / band).clamp(0, 1)
    mixed = w * fill + (1 - w) * membrane
    return torch.where(hole_b.expand_as(fill), mixed, known)


def blend(fill: Tensor, known: Tensor, hole: Tensor, method: str = "poisson") -> Tensor:
    """Combine ``fill`` (inside the hole) with ``known`` (outside it) by ``method``.

    fill, known: float [B, C, H, W]; hole: [B, 1, H, W], 1 = missing. Pixels outside the hole
    are returned exactly as in ``known``. Work is limited to the hole's bounding box.
    """
    if method not in BLENDS:
        raise ValueError(f"blend {method!r}: choose one of {', '.join(BLENDS)}")
    hole_b = hole.bool()
    out = torch.where(hole_b.expand_as(known), fill, known)
    if method == "none":
        return out
    box = _hole_box(hole_b)
    if box is None:
        return out
    t, bt, left, r = box
    sl = (Ellipsis, slice(t, bt), slice(left, r))
    f, kn, ho = fill[sl].float(), known[sl].float(), hole_b[sl]
    if method == "poisson":
        part = solve_poisson(f, kn, ho)
    else:
        part = feather_blend(f, kn, ho)
    out = out.clone()
    out[sl] = torch.where(ho.expand_as(kn), part.to(out.dtype), known[sl])
    return out
