"""The pictures of the README's "Ready to use" section: each built-in model run by its README command.

    python scripts/builtin_pictures.py [--out docs/builtin]

Inputs are made here from pictures no model trained on: crops of scikit-image's astronaut, coffee and chelsea
(the test photographs; needs the ``[bench]`` extra), digits drawn by the built-in ``digits`` model, and
scikit-learn's held-out small digits placed in 28x28 as ``scripts/make_translation_sets.py`` does. Every
picture is what the command printed beside it writes (``--compare`` panels, sample grids), so the README shows
exactly what a user gets. Prints each command and its wall time.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def ganforge(cmd: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(["ganforge", *shlex.split(cmd)], cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"ganforge {cmd} failed:\n{proc.stderr}")
    print(f"{dt:6.1f} s  ganforge {cmd}")
    return dt


def photo(name: str, box=None) -> Image.Image:
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return img.crop(box) if box else img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "builtin")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        # inputs: a small photo to upscale (the astronaut's face, shrunk 4x), a photo to mark and to paint
        face = photo("astronaut", (150, 40, 310, 200))  # 160x160
        face.resize((40, 40), Image.BICUBIC).save(w / "small.png")
        face.save(w / "face.png")
        photo("coffee").resize((300, 200), Image.LANCZOS).save(w / "coffee.png")
        photo("chelsea").resize((300, 200), Image.LANCZOS).save(w / "cat.png")
        ganforge(f"sample digits --class all --n 8 --out {out / 'digits.png'}", w)
        ganforge("sample digits --class 3 --n 1 --seed 5 --out digit.png", w)
        ganforge(f"upscale small.png --original face.png --out big.png --compare {out / 'photo-x4.png'}", w)
        ganforge("watermark embed coffee.png --message hi --out marked.png", w)
        ganforge("watermark extract marked.png", w)
        marked = np.asarray(Image.open(w / "marked.png").convert("RGB")).astype(np.int16)
        orig = np.asarray(Image.open(w / "coffee.png").convert("RGB")).astype(np.int16)
        diff = np.clip(np.abs(marked - orig) * 20, 0, 255).astype(np.uint8)
        panel = Image.new("RGB", (900, 200), "white")
        for i, a in enumerate((orig.astype(np.uint8), marked.astype(np.uint8), diff)):
            panel.paste(Image.fromarray(a), (300 * i, 0))
        panel.save(out / "photo-watermark.png")
        ganforge(f"inpaint digit.png --box 8,8,12,12 --out filled.png --compare {out / 'digits-inpaint.png'}", w)
        ganforge(f"translate cat.png --out painting.png --compare {out / 'photo2painting.png'}", w)
        _sklearn_digit(w / "small_digit.png")
        ganforge(
            f"translate small_digit.png --model digits2mnist --out mnist.png --compare {out / 'digits2mnist.png'}", w
        )
        ganforge(f"sample moving-digits --n 8 --nrow 8 --out {out / 'moving-digits.gif'}", w)
    for p in sorted(out.iterdir()):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size / 1e3:.0f} kB")


def _sklearn_digit(path: Path) -> None:
    """A held-out scikit-learn digit placed in 28x28 as the digits2mnist training set places them."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_translation_sets import digits_split

    test = digits_split()[1]  # [500, 28, 28] held out of the translation model's training
    Image.fromarray(test[0]).save(path)


if __name__ == "__main__":
    main()
