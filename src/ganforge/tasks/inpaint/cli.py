"""``ganforge inpaint``: fill the missing region of an image (or a folder of images) with a trained
model (:mod:`ganforge.tasks.inpaint.app`); prints the output path.

    ganforge inpaint --model RUN_DIR --image in.png --mask mask.png --out out.png
    ganforge inpaint --model RUN_DIR --image in.png --box 7,7,14,14 --out out.png --compare cmp.png
    ganforge inpaint --model RUN_DIR --image photos/ --mask masks/ --out filled/ [--compare cmp/] [--skip-bad]

A GAN run completes by latent optimisation (Yeh et al. 2017); a ``task=inpaint`` run with its
completion network.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ganforge.cli._common import (
    add_loading,
    add_model_and_image,
    add_skip_bad,
    check_device,
    check_skip_bad,
    image_of,
    report_skipped,
    use_threads,
)
from ganforge.errors import InpaintError
from ganforge.options import from_namespace
from ganforge.tasks.inpaint.options import (
    BLENDS,
    DEFAULT_BATCH,
    DEFAULT_RESTARTS,
    DEFAULT_STEPS,
    METHODS,
    InpaintOptions,
)

VERB = "inpaint"  # the command: ganforge inpaint ...
DEFAULT_MODEL = "digits-inpaint"  # the built-in model used without --model
ORDER = 60  # place in `ganforge --help`
HELP = "fill in missing regions of images with a trained GAN or completion network"
DESCRIPTION = (
    "Complete the missing (white in --mask, or --box) part of an image, or of every image in a folder, "
    "with a GAN run (latent optimisation) or a completion network run (ganforge train task=inpaint)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_and_image(parser, "run folder from 'ganforge train' (GAN or task=inpaint)", default=DEFAULT_MODEL)
    parser.add_argument("--mask", metavar="PATH", help="mask image, white = missing (a folder of masks in folder mode)")
    parser.add_argument(
        "--box", metavar="X,Y,W,H", help="fill this rectangle instead of a mask (left, top, width, height)"
    )
    parser.add_argument(
        "--out", required=True, metavar="PATH", help="output image (.png keeps known pixels exact), or folder"
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="auto (default): the network for a task=inpaint run, latent optimisation for a GAN run",
    )
    parser.add_argument(
        "--compare",
        metavar="PATH",
        help="also write masked | completed | original side by side (a folder in folder mode)",
    )
    parser.add_argument(
        "--original", metavar="PATH", help="the intact image, shown in the comparison (single image only)"
    )
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"latent method: optimisation steps (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--restarts",
        type=int,
        default=DEFAULT_RESTARTS,
        help=f"latent method: random starts optimised together, the best kept (default {DEFAULT_RESTARTS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="latent method: seed of the starting points")
    parser.add_argument(
        "--class",
        dest="cls",
        metavar="C",
        help="conditional GAN runs: the class (index or name); default: try every class, keep the best",
    )
    parser.add_argument(
        "--blend", choices=BLENDS, default="poisson", help="how the fill meets the known pixels (default poisson)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"folder mode: images completed together, in one latent search or network pass (default {DEFAULT_BATCH})",
    )
    add_skip_bad(parser)
    add_loading(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``ganforge inpaint`` for parsed ``args``; raises InpaintError / RunError with one-line messages."""
    from ganforge.imaging import LOSSY_SUFFIXES, check_writable, save_image
    from ganforge.tasks.inpaint.app import inpaint_detailed, inpaint_folder, load_completer

    device = check_device(args.device)
    if args.steps < 1 or args.restarts < 1:
        raise InpaintError(f"--steps and --restarts must be at least 1 (got {args.steps}, {args.restarts})")
    if args.batch_size < 1:
        raise InpaintError(f"--batch-size must be at least 1, got {args.batch_size}")
    use_threads(args.threads)
    image, out = image_of(args), Path(args.out).expanduser()
    skip_bad = check_skip_bad(args, image)
    options = from_namespace(InpaintOptions, args, {"class_": "cls"}, device=device)
    if image.is_dir():
        if args.mask is not None and not Path(args.mask).is_dir():
            raise InpaintError(
                f"--image is a folder, so --mask must be a folder of masks named like the images; "
                f"'{args.mask}' is not a folder"
            )
        if args.original is not None:
            raise InpaintError("--original applies to a single image, not to folder mode")
        with _folder_progress() as progress:
            results = inpaint_folder(
                args.model,
                image,
                args.mask,
                out,
                args.compare,
                box=args.box,
                options=options,
                progress=progress,
                skip_bad=skip_bad,
            )
        print(f"completed {len(results)} image(s) into {out}{report_skipped(results)}", file=sys.stderr)
        print(out)
        return 0
    if args.mask is not None and Path(args.mask).is_dir():
        raise InpaintError(f"--mask '{args.mask}' is a folder; with a single --image give a mask file")
    if out.is_dir():
        out = out / f"{image.stem}.png"
    check_writable(out, "--out")
    if args.compare is not None:
        check_writable(args.compare, "--compare")
    if out.suffix.lower() in LOSSY_SUFFIXES:
        print(
            f"warning: {out.suffix} is a lossy format: the known pixels will not stay exact (use .png)", file=sys.stderr
        )
    comp = load_completer(args.model, args.method, checkpoint=args.checkpoint, device=device)
    res = inpaint_detailed(
        comp, image, args.mask, args.box, options=options, compare=args.compare, original=args.original
    )
    save_image(res.image, out)
    print(f"completed {image} -> {out}: {res.describe()}", file=sys.stderr)
    if res.compare_path is not None:
        print(f"comparison: {res.compare_path}", file=sys.stderr)
    print(out)
    return 0


@contextmanager
def _folder_progress() -> Iterator[Callable]:
    """The progress callback of folder mode: a bar with the time left on a terminal, else (a log, CI)
    one line per image."""
    from tqdm import tqdm

    if not sys.stderr.isatty() or os.environ.get("CI"):

        def line(i: int, n: int, res) -> None:
            print(f"[{i + 1}/{n}] {res.path}: {res.describe()}", file=sys.stderr, flush=True)

        yield line
        return
    with tqdm(unit="image", file=sys.stderr, dynamic_ncols=True) as bar:

        def tick(i: int, n: int, res) -> None:
            bar.total = n
            bar.update(1)

        yield tick
