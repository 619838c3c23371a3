"""Write the colour training set of the ``photo-sr`` preset: patches of real photographs that ship with
scikit-image and scikit-learn, none of them the benchmark's test photographs.

    python scripts/make_sr_photos.py data/sr_photos            # then: ganforge train photo-sr data.root=data/sr_photos

The photographs are ``PHOTO_TRAIN_LARGE`` of ``benchmarks/inpaint_quality.py`` (rocket, hubble_deep_field,
immunohistochemistry, stereo_motorcycle, retina from scikit-image; china and flower from scikit-learn);
``astronaut``, ``coffee`` and ``chelsea`` are kept out, so ``benchmarks/superres_quality.py`` scores
the model on photographs it never saw. Each photograph is cut into ``--size`` x ``--size`` patches at
``--stride``, at full size and at 0.7 and 0.5 of it (PIL bilinear), at most ``--cap`` patches per
photograph (a seeded choice), written as PNG files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from inpaint_quality import PHOTO_TEST, PHOTO_TRAIN_LARGE, photo_patches, write_patches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to write the patches to (made if missing)")
    ap.add_argument("--size", type=int, default=64, help="patch side in pixels (default 64)")
    ap.add_argument("--stride", type=int, default=24, help="step between patches (default 24)")
    ap.add_argument("--cap", type=int, default=1500, help="at most this many patches per photograph (default 1500)")
    args = ap.parse_args()
    assert not set(PHOTO_TRAIN_LARGE) & set(PHOTO_TEST)
    patches = photo_patches(PHOTO_TRAIN_LARGE, size=args.size, stride=args.stride, scales=(1.0, 0.7, 0.5), cap=args.cap)
    write_patches(patches, Path(args.out))
    print(
        f"{len(patches)} patches {args.size}x{args.size} of {', '.join(PHOTO_TRAIN_LARGE)} in {args.out} "
        f"(test photographs {', '.join(PHOTO_TEST)} left out)"
    )


if __name__ == "__main__":
    main()
