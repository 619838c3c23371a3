"""Folder-mode latent inpainting: one image at a time against batches, same digits, same run.

    python benchmarks/inpaint_folder_speed.py [--gan RUN] [--n 300] [--batch-size 16] [--steps 500]

Writes ``--n`` digits of the embedded MNIST (28x28) with a random box mask each (6 to 16 pixels a
side, seeded) to a temporary folder, then completes the folder with ``inpaint_folder`` (what
``ganforge inpaint --image DIR --mask DIR`` runs) twice on ``--threads`` CPU threads: one image per
latent search (``--batch-size 1``, the old code path) and ``--batch-size`` images per search. With
``--old-threads N`` it also times the old command as users ran it: one image at a time on torch's
default thread count (N = 0) or N threads, on the first ``--old-n`` digits (it can be very slow on a
busy machine). Prints the seconds, images per second, the ratio, and checks that the two results
agree: known pixels bit for bit, the fills up to floating-point rounding. Without ``--gan`` a GAN is
trained first (``ganforge train train.steps=300``, about a minute; the speed does not depend on the
quality).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from PIL import Image

VISIBLE = 16  # grey levels: a fill this far from the other is a different fill, not rounding


def write_digits(folder: Path, n: int, seed: int) -> None:
    """``folder/images/NNNN.png`` (n embedded-MNIST digits) and ``folder/masks/NNNN.png`` (a random box each)."""
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset

    digits = load_dataset(DataConfig(limit=n)).images[:, 0].numpy()  # uint8 [n, 28, 28]
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i, d in enumerate(digits):
        w, h = rng.integers(6, 17, size=2)
        x, y = rng.integers(0, 28 - w + 1), rng.integers(0, 28 - h + 1)
        m = np.zeros((28, 28), np.uint8)
        m[y : y + h, x : x + w] = 255
        Image.fromarray(d, "L").save(folder / "images" / f"{i:04d}.png")
        Image.fromarray(m, "L").save(folder / "masks" / f"{i:04d}.png")


def timed(
    label: str, gan: Path, src: Path, out: Path, batch_size: int, threads: int, opts: dict
) -> Tuple[float, float]:
    """Seconds to complete the folder, and the mean final contextual loss of the search."""
    from ganforge.tasks.inpaint.app import inpaint_folder

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = inpaint_folder(gan, src / "images", src / "masks", out, batch_size=batch_size, **opts)
    dt = time.perf_counter() - t0
    loss = float(np.mean([r.details["context_loss"][0] for r in res]))
    print(
        f"{label:<44} {len(res):4d} digits  {dt:8.1f} s  {len(res) / dt:6.2f} digits/s  "
        f"(mean contextual loss {loss:.3f})",
        flush=True,
    )
    return dt, loss


def agreement(src: Path, a: Path, b: Path) -> str:
    """Known pixels identical to the input in both; how far apart the two fills are."""
    diffs, equal, total = [], 0, 0
    for p in sorted((src / "images").iterdir()):
        img = np.asarray(Image.open(p))
        hole = np.asarray(Image.open(src / "masks" / p.name)) > 127
        if not (b / p.name).exists():
            continue
        x, y = np.asarray(Image.open(a / p.name)), np.asarray(Image.open(b / p.name))
        assert np.array_equal(x[~hole], img[~hole]) and np.array_equal(y[~hole], img[~hole]), (
            f"{p.name}: known pixels changed"
        )
        d = np.abs(x[hole].astype(int) - y[hole].astype(int))
        diffs.append(d.max())
        equal += int((d == 0).sum())
        total += d.size
    apart = sum(d > VISIBLE for d in diffs)
    return (
        f"known pixels bit-identical to the inputs in both; hole pixels equal in {100 * equal / total:.1f}%; "
        f"{len(diffs) - apart} of {len(diffs)} digits filled alike (no hole pixel more than {VISIBLE} of 255 apart), "
        f"{apart} differently (largest difference {max(diffs)})"
    )


def main() -> None:
    from ganforge.tasks.inpaint.options import DEFAULT_BATCH, DEFAULT_RESTARTS, DEFAULT_STEPS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gan", type=Path, help="a GAN run folder (default: train one with train.steps=300)")
    ap.add_argument("--n", type=int, default=300, help="digits (default 300)")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"images per batch (default {DEFAULT_BATCH})")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"latent search steps (default {DEFAULT_STEPS})")
    ap.add_argument("--restarts", type=int, default=DEFAULT_RESTARTS, help=f"restarts (default {DEFAULT_RESTARTS})")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of both timed runs (default 1)")
    ap.add_argument(
        "--old-threads",
        type=int,
        default=None,
        metavar="N",
        help="also time one image at a time on N threads (0: torch's default), the old command",
    )
    ap.add_argument("--old-n", type=int, default=30, help="digits for --old-threads (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the masks")
    args = ap.parse_args()

    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gan = args.gan
        if gan is None:
            import ganforge

            torch.set_num_threads(1)
            gan = ganforge.train(
                overrides=["train.steps=300", "train.progress=false", "train.tensorboard=false"], runs_dir=tmp / "runs"
            )
        write_digits(tmp / "digits", args.n, args.seed)
        opts = dict(steps=args.steps, restarts=args.restarts)
        print(
            f"{args.n} digits 28x28, random boxes 6-16 px; "
            f"latent search {args.steps} steps x {args.restarts} restarts; "
            f"{args.threads} thread(s); GAN {gan}",
            flush=True,
        )
        write_digits(tmp / "warm-up", 2, args.seed)  # first calls pay for setting up kernels: not timed
        timed(
            "warm-up (not counted)",
            gan,
            tmp / "warm-up",
            tmp / "warm-up-out",
            2,
            args.threads,
            dict(steps=2, restarts=2),
        )
        batched, _ = timed(
            f"batched ({args.batch_size} per batch)",
            gan,
            tmp / "digits",
            tmp / "batched",
            args.batch_size,
            args.threads,
            opts,
        )
        single, _ = timed("one at a time (--batch-size 1)", gan, tmp / "digits", tmp / "single", 1, args.threads, opts)
        print(f"batched is {single / batched:.1f}x faster than one at a time ({args.threads} thread(s) each)")
        print(agreement(tmp / "digits", tmp / "single", tmp / "batched"))
        if args.old_threads is not None:
            threads = args.old_threads or default_threads
            old_src = tmp / "old-digits"
            write_digits(old_src, args.old_n, args.seed)
            old, _ = timed(
                f"one at a time, {threads} thread(s) (the old command)", gan, old_src, tmp / "old", 1, threads, opts
            )
            per_old, per_new = old / args.old_n, batched / args.n
            print(
                f"per digit: old command {per_old:.2f} s, batched on {args.threads} thread(s) {per_new:.2f} s: "
                f"{per_old / per_new:.1f}x faster"
            )


if __name__ == "__main__":
    main()
