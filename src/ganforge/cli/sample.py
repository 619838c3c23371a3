"""``ganforge sample RUN_DIR --out PATH``: images from a trained run, as a .png grid, a .npz file or a
folder of PNGs (:func:`ganforge.apps.generate.write_samples`); prints the output path."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganforge.cli._common import add_device, add_threads, check_device, use_threads

ORDER = 20  # place in `ganforge --help`
HELP = "generate images from a trained run"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="a .png grid, a .npz (uint8 arr_0 [N,H,W,C]) or a folder of PNGs")
    parser.add_argument("--nrow", type=int, default=None, help="images per row in a .png grid")
    parser.add_argument("--checkpoint", default="last", help="last | best | STEP | checkpoint folder")
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator weights instead of the EMA copy")
    parser.add_argument("--class", dest="cls", metavar="C",
                        help="conditional runs: a class index or name, or 'all' (--n per class; a .png gets one "
                             "labelled row per class)")
    add_device(parser)
    add_threads(parser)


def run(args: argparse.Namespace) -> int:
    from ganforge.api import load_generator
    from ganforge.apps.generate import sample_output_kind, write_samples
    from ganforge.errors import UsageError
    from ganforge.imaging import check_writable

    out = Path(args.out)
    kind = sample_output_kind(out)
    if kind is None:
        raise UsageError(f"--out {out}: expected a .png file (grid), a .npz file, or a folder")
    if args.n < 1:
        raise UsageError("--n must be at least 1")
    device = check_device(args.device)
    check_writable(out, "--out", folder=kind == "folder")
    use_threads(args.threads)
    g = load_generator(args.run_dir, checkpoint=args.checkpoint, ema=not args.no_ema, device=device)
    if args.cls is not None and not g.num_classes:
        raise UsageError(f"--class: the run '{args.run_dir}' trained an unconditional model; it has no classes "
                         "(train with model.conditional=true)")
    n = write_samples(g, out, args.n, seed=args.seed, cls=args.cls, nrow=args.nrow)
    print(f"wrote {n} samples from {g.checkpoint_path} (step {g.step}) to {out}", file=sys.stderr)
    print(out)
    return 0
