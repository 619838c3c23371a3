"""Make the data sets of the translation presets and benchmark (``task=translate``).

    python scripts/make_translation_sets.py                      # both sets, under translation-data/
    python scripts/make_translation_sets.py --only digits --out DIR

``digits2mnist`` (unpaired, grey, 28x28): domain A is scikit-learn's ``load_digits`` (1,797 real 8x8
digits written by other people) placed as MNIST digits are: the 8x8 image scaled to 20x20 (bicubic)
and centred by its centre of mass in a 28x28 canvas. 500 of them (a seeded choice) are held out in
``test/`` with their labels (``test/labels.csv``); the other 1,297 are ``A/``. Domain B is the 8,000
training digits of the embedded MNIST (``data.heldout=2000 data.part=train``: the split the shipped
classifier was trained on); the benchmark scores against the 2,000 held-out ones.

``photo2style`` (colour): photographs that ship with scikit-image / scikit-learn / matplotlib, and the
same photographs passed through OpenCV's ``cv2.stylization`` (an edge-aware, painting-like filter;
default sigma_s=60, sigma_r=0.45), applied to each whole photograph before it is cut into patches. The
test photographs of the benchmark (astronaut, coffee, chelsea) are never used.

- ``paired/A`` and ``paired/B``: the same 160x160 patches (stride 40) of the photo and of its stylised
  version, for ``PAIRED_PHOTOS`` (rocket, china, flower, immunohistochemistry, stereo_motorcycle,
  matplotlib's grace_hopper, hubble_deep_field, retina), at most 150 per photograph (a seeded choice),
  matched by file name: 897 pairs. (The first set, 64x64 patches of five photographs with almost half
  from the mostly black Hubble image, went with a darker, greyer pix2pix output; see the README.)
- ``unpaired/A``: photo patches of ``rocket``, ``china``, ``hubble_deep_field``; ``unpaired/B``:
  stylised patches of the disjoint set ``flower``, ``immunohistochemistry``, ``stereo_motorcycle``
  (at most 450 per photograph): no photograph appears on both sides. (With the mostly black Hubble
  image uncapped on the stylised side, a CycleGAN learnt "stylised = dark" and lost the content.)
- ``halves/A`` and ``halves/B``: unpaired collections from the same eight ``PAIRED_PHOTOS``, cut in two
  down the middle: A holds the photo patches of one half of each photograph (the left half of the 1st,
  3rd, ... photograph, the right half of the others), B the stylised patches of the other half (at most
  250 per half, 1,653 on each side). No region appears on both sides, and the two collections show the
  same kinds of things and colours: on ``unpaired/`` a CycleGAN's discriminators told the domains apart
  by what the photographs show (a freer generator copied the stylised collection's colours).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from inpaint_quality import PHOTO_TEST, _photo  # noqa: E402  (the photo helpers of the completion benchmark)

DIGITS_TEST = 500
PATCH, STRIDE = 64, 24  # the unpaired collections
PAIRED_PATCH, PAIRED_STRIDE, PAIRED_CAP = 160, 40, 150  # the pairs: larger patches (the filter's support is large)
PAIRED_PHOTOS = (
    "rocket",
    "china",
    "flower",
    "immunohistochemistry",
    "stereo_motorcycle",
    "grace_hopper",
    "hubble_deep_field",
    "retina",
)
UNPAIRED_CAP = 450  # most patches per photograph in the unpaired collections
UNPAIRED_A = ("rocket", "china", "hubble_deep_field")
UNPAIRED_B = ("flower", "immunohistochemistry", "stereo_motorcycle")
HALVES_CAP = 250  # most patches per half photograph in halves/
assert not set(UNPAIRED_A) & set(UNPAIRED_B) and not set(UNPAIRED_A + UNPAIRED_B + PAIRED_PHOTOS) & set(PHOTO_TEST)


# ---- digits ------------------------------------------------------------------------------------


def digits_canvas(images8: np.ndarray) -> np.ndarray:
    """scikit-learn digits (float 0..16, [N, 8, 8]) -> uint8 [N, 28, 28] placed as MNIST digits are: scaled to
    20x20 and centred by the centre of mass in a 28x28 canvas (white digit on black)."""
    out = np.zeros((len(images8), 28, 28), dtype=np.uint8)
    for i, d in enumerate(images8):
        small = Image.fromarray(np.clip(d * (255.0 / 16.0), 0, 255).astype(np.uint8))
        big = np.asarray(small.resize((20, 20), Image.BICUBIC), dtype=np.float64)
        total = big.sum()
        ys, xs = np.mgrid[0:20, 0:20]
        cy, cx = ((ys * big).sum() / total, (xs * big).sum() / total) if total > 0 else (9.5, 9.5)
        oy = int(np.clip(round(14 - cy - 0.5), 0, 8))
        ox = int(np.clip(round(14 - cx - 0.5), 0, 8))
        out[i, oy : oy + 20, ox : ox + 20] = np.clip(np.round(big), 0, 255).astype(np.uint8)
    return out


def digits_split(seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train canvases [1297, 28, 28], test canvases [500, 28, 28], their labels): a seeded split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    canv = digits_canvas(d.images)
    perm = np.random.default_rng(seed).permutation(len(canv))
    test, train = np.sort(perm[:DIGITS_TEST]), np.sort(perm[DIGITS_TEST:])
    return canv[train], canv[test], d.target[train], d.target[test]


def mnist_part(part: str) -> np.ndarray:
    """uint8 [N, 28, 28]: the embedded MNIST's classifier-training part (8,000) or held-out part (2,000)."""
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset

    data = load_dataset(DataConfig(dataset="mnist-embedded", heldout=2000, part=part))
    return data.images[:, 0].numpy()


def write_grey(images: np.ndarray, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:05d}.png")


def make_digits(out: Path) -> None:
    train, test, _, y_test = digits_split()
    write_grey(train, out / "A")
    write_grey(test, out / "test")
    with open(out / "test" / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file", "label")] + [(f"{i:05d}.png", int(y)) for i, y in enumerate(y_test)])
    write_grey(mnist_part("train"), out / "B")
    print(
        f"digits2mnist: {len(train)} sklearn digits in {out / 'A'}, {len(test)} held out in {out / 'test'}, "
        f"8000 MNIST digits in {out / 'B'}",
        flush=True,
    )


# ---- photographs -------------------------------------------------------------------------------


def stylise(rgb: np.ndarray) -> np.ndarray:
    """``cv2.stylization`` of an RGB uint8 image (OpenCV works in BGR), default parameters."""
    import cv2

    return np.ascontiguousarray(cv2.stylization(np.ascontiguousarray(rgb[..., ::-1]))[..., ::-1])


def patches(a: np.ndarray, size: int = PATCH, stride: int = STRIDE):
    for y in range(0, a.shape[0] - size + 1, stride):
        for x in range(0, a.shape[1] - size + 1, stride):
            yield a[y : y + size, x : x + size]


def photo(name: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] of a scikit-image / scikit-learn sample photograph, or matplotlib's ``grace_hopper``."""
    if name == "grace_hopper":
        import matplotlib.cbook

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
            return np.asarray(im.convert("RGB"))
    return np.asarray(Image.fromarray(_photo(name)).convert("RGB"))


def save_patches(a: np.ndarray, folder: Path, name: str, cap: int = 0, size: int = PATCH, stride: int = STRIDE) -> int:
    """Write the ``size`` patches of ``a`` at ``stride`` to ``folder/NAME-IIIII.png``, at most ``cap`` of them (a
    seeded choice, the same for every image with as many patches); returns how many."""
    ps = list(patches(a, size, stride))
    keep = range(len(ps))
    if cap and len(ps) > cap:
        keep = sorted(np.random.default_rng(0).choice(len(ps), cap, replace=False))
    for i in keep:
        Image.fromarray(ps[i]).save(folder / f"{name}-{i:05d}.png")
    return len(keep)


def write_patches(
    names: Sequence[str], folder: Path, styled: bool, cap: int = 0, size: int = PATCH, stride: int = STRIDE
) -> int:
    """Write the patches of each photograph (stylised first when ``styled``), at most ``cap`` per photograph
    (a seeded choice, the same for the photo and its stylised version); returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for name in names:
        a = photo(name)
        n += save_patches(stylise(a) if styled else a, folder, name, cap, size, stride)
    return n


def write_halves(out: Path, cap: int = HALVES_CAP) -> Tuple[int, int]:
    """``out/A``: photo patches of one half of each of ``PAIRED_PHOTOS`` (left for even positions, right for
    odd); ``out/B``: stylised patches (the whole photograph stylised, then cut) of the other half; at most
    ``cap`` per half (a seeded choice). Returns the two counts."""
    counts = {"A": 0, "B": 0}
    for side in counts:
        (out / side).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(PAIRED_PHOTOS):
        p = photo(name)
        s = stylise(p)
        w = p.shape[1] // 2
        halves = {"A": p[:, :w] if k % 2 == 0 else p[:, w:], "B": s[:, w:] if k % 2 == 0 else s[:, :w]}
        for side, img in halves.items():
            counts[side] += save_patches(img, out / side, name, cap)
    return counts["A"], counts["B"]


def make_photos(out: Path) -> None:
    import shutil

    for part in ("paired", "unpaired", "halves"):  # a rerun must not keep images of an older set
        shutil.rmtree(out / part, ignore_errors=True)
    grid = dict(cap=PAIRED_CAP, size=PAIRED_PATCH, stride=PAIRED_STRIDE)
    n = write_patches(PAIRED_PHOTOS, out / "paired" / "A", styled=False, **grid)
    write_patches(PAIRED_PHOTOS, out / "paired" / "B", styled=True, **grid)
    na = write_patches(UNPAIRED_A, out / "unpaired" / "A", styled=False, cap=UNPAIRED_CAP)
    nb = write_patches(UNPAIRED_B, out / "unpaired" / "B", styled=True, cap=UNPAIRED_CAP)
    ha, hb = write_halves(out / "halves")
    print(
        f"photo2style: {n} pairs of {PAIRED_PATCH}x{PAIRED_PATCH} patches ({', '.join(PAIRED_PHOTOS)}) in "
        f"{out / 'paired'}; unpaired {na} photo patches "
        f"({', '.join(UNPAIRED_A)}) and {nb} stylised patches ({', '.join(UNPAIRED_B)}) in {out / 'unpaired'}; "
        f"{ha} photo and {hb} stylised patches of opposite halves of the paired set's photographs in {out / 'halves'}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="translation-data", help="where to write (default translation-data/)")
    ap.add_argument("--only", choices=["digits", "photos"], help="make one of the two sets")
    args = ap.parse_args()
    out = Path(args.out)
    if args.only in (None, "digits"):
        make_digits(out / "digits2mnist")
    if args.only in (None, "photos"):
        make_photos(out / "photo2style")


if __name__ == "__main__":
    main()
