"""Write synthetic "dead leaves" images: an endless supply of varied, natural-looking hosts for training
a watermark (or any model that must not learn the content of a handful of photographs).

    python scripts/make_dead_leaves.py DIR --count 1500 --size 128

The dead-leaves model (Matheron 1968; Lee, Mumford & Huang 2001) drops opaque discs one over the other,
with radii drawn from a power law (density r^-3 between ``--rmin`` and a third of the side), so the images
are scale invariant, have occlusion edges and the 1/f spectrum of photographs. Here each disc is also
filled with a texture (a random grating, smooth or fine noise, or a flat colour), and each image gets a
random blur, contrast and brightness: rough surfaces such as grass, gravel and fabric are what a small
photo set lacks (Baradad et al. 2021, "Learning to see by looking at noise"; Achddou et al. 2021 use the
same model as a prior for restoration networks). Written as colour PNG files named ``leaves_NNNNN.png``;
seeded (``--seed``), so the same command writes the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A zero-mean luminance texture on the grid ``yy``, ``xx`` (one disc's box) of one of four kinds:
    a grating, fine noise, smooth noise or none, amplitude in [0, 0.35]."""
    kind = rng.integers(0, 4)
    amp = rng.uniform(0.0, 0.35)
    h, w = yy.shape
    if kind == 0:  # grating: random period and orientation
        th, period = rng.uniform(0, np.pi), rng.uniform(2.0, 40.0)
        return amp * np.sin(2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / period + rng.uniform(0, 2 * np.pi))
    if kind == 1:  # fine noise (gravel, sand)
        return amp * rng.standard_normal((h, w)) * 0.5
    if kind == 2:  # smooth noise: coarse noise upsampled
        k = int(rng.integers(2, 8))
        small = rng.standard_normal((k, k)).astype(np.float32)
        return amp * np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC)) * 0.5
    return np.zeros((h, w))


def dead_leaves(rng: np.random.Generator, size: int, rmin: float = 3.0) -> np.ndarray:
    """One image, uint8 [size, size, 3]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((size, size, 3))
    covered = np.zeros((size, size), bool)
    rmax = size / 3
    # discs are drawn front to back: a pixel keeps the first disc that covers it
    for _ in range(3000):
        u = rng.uniform()
        r = 1.0 / np.sqrt(1.0 / rmin**2 - u * (1.0 / rmin**2 - 1.0 / rmax**2))  # density ~ r^-3
        cy, cx = rng.uniform(-r, size + r, 2)
        y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 2)
        x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        sy, sx = slice(y0, y1), slice(x0, x1)
        disc = ((yy[sy, sx] - cy) ** 2 + (xx[sy, sx] - cx) ** 2 <= r * r) & ~covered[sy, sx]
        if disc.any():
            grey = rng.uniform(0, 1)
            colour = grey + rng.uniform(-0.25, 0.25, 3) * rng.uniform(0, 1)  # mostly muted colours
            tex = _texture(rng, yy[sy, sx], xx[sy, sx])
            img[sy, sx][disc] = colour[None, :] + tex[disc][:, None]
            covered[sy, sx] |= disc
            if covered.all():
                break
    img = np.clip(img, 0, 1)
    sigma = rng.choice([0.0, 0.0, 0.7, 1.5])  # some images soft, as photographs out of focus are
    out = Image.fromarray((img * 255).round().astype(np.uint8))
    if sigma > 0:
        from PIL import ImageFilter

        out = out.filter(ImageFilter.GaussianBlur(float(sigma)))
    a = np.asarray(out).astype(np.float64)
    a = (a - a.mean()) * rng.uniform(0.6, 1.2) + a.mean() * rng.uniform(0.6, 1.3)
    return np.clip(a, 0, 255).round().astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to write the images to (made if missing)")
    ap.add_argument("--count", type=int, default=1500, help="number of images (default 1500)")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    ap.add_argument("--rmin", type=float, default=3.0, help="smallest disc radius in pixels (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = ap.parse_args()
    if args.count < 1 or args.size < 16:
        ap.error("expected --count >= 1 and --size >= 16")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for i in range(args.count):
        Image.fromarray(dead_leaves(rng, args.size, args.rmin)).save(out / f"leaves_{i:05d}.png")
    print(f"{args.count} dead-leaves images {args.size}x{args.size} in {out}")


if __name__ == "__main__":
    main()
