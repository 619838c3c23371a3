"""``ganforge interpolate RUN_DIR``: walks through the latent space of a trained generator, as a .png
grid (one path per row) or a .gif animation (:mod:`ganforge.tasks.gan.app`); prints the output path."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.cli._common import add_device, add_threads, check_device, use_threads

VERB = "interpolate"  # the command: ganforge interpolate ...
ORDER = 30  # place in `ganforge --help`
HELP = "latent-space interpolation grid (.png) or animation (.gif)"
DEFAULT_MODEL = "digits"  # the built-in GAN used without RUN
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        nargs="?",
        default=DEFAULT_MODEL,
        metavar="RUN",
        help=f"a GAN run folder, a checkpoint folder or a built-in model's name (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--out", help="output .png or .gif (default RUN/interpolation.png; interpolation.png for a built-in model)"
    )
    parser.add_argument("--rows", type=int, default=8, help="number of paths (default 8)")
    parser.add_argument("--steps", type=int, default=10, help="images per path (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--linear", action="store_true", help="linear instead of spherical interpolation")
    parser.add_argument("--checkpoint", default="last")
    parser.add_argument("--class", dest="cls", metavar="C", help="conditional runs: keep every path in this class")
    add_device(parser)
    add_threads(parser)


def run(args: argparse.Namespace) -> int:
    from ganforge.api import load_generator
    from ganforge.errors import UsageError
    from ganforge.imaging import check_writable
    from ganforge.tasks.gan.app import INTERPOLATION_SUFFIXES, interpolation, write_interpolation

    if args.steps < 2 or args.rows < 1:
        raise UsageError("--steps must be >= 2 and --rows >= 1")
    from ganforge.runs import is_run_dir, resolve

    default_dir = resolve(args.run_dir) if is_run_dir(resolve(args.run_dir)) else Path(".")
    out = Path(args.out) if args.out else default_dir / "interpolation.png"
    if out.suffix.lower() not in INTERPOLATION_SUFFIXES:
        raise UsageError(f"--out {out}: expected a .png (grid) or .gif (animation) path")
    device = check_device(args.device)
    use_threads(args.threads)
    g = load_generator(args.run_dir, checkpoint=args.checkpoint, device=device)
    check_writable(out, "--out")  # after loading: the default --out is inside the run folder
    if args.cls is not None and not g.num_classes:
        raise UsageError("--class: this run trained an unconditional model; it has no classes")
    imgs = interpolation(g, args.rows, args.steps, seed=args.seed, linear=args.linear, cls=args.cls)
    write_interpolation(imgs, args.rows, args.steps, out)
    print(out)
    return 0
