"""``ganforge translate``: translate an image (or a folder of images) with a ``task=translate`` run
(:mod:`ganforge.tasks.translate.app`); prints the output path.

    ganforge translate --model RUN_DIR --image in.png --out out.png [--direction a2b|b2a]
    ganforge translate --model RUN_DIR --image in.png --out out.png --compare cmp.png --target truth.png
    ganforge translate --model RUN_DIR --image photos/ --out styled/ [--compare cmp/ --target truths/] [--skip-bad]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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

VERB = "translate"  # the command: ganforge translate ...
DEFAULT_MODEL = "photo2painting"  # the built-in model used without --model
ORDER = 65  # place in `ganforge --help`
HELP = "translate images from one domain to another with a pix2pix or CycleGAN run"
DESCRIPTION = (
    "Translate an image, or every image of a folder (outputs keep the input file names), with a run of "
    "'ganforge train task=translate': a2b (default), or b2a for CycleGAN runs. Any image size works."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_and_image(parser, "run folder of 'ganforge train task=translate'", default=DEFAULT_MODEL)
    parser.add_argument("--out", required=True, metavar="PATH", help="output image, or folder (folder mode)")
    parser.add_argument(
        "--direction",
        choices=["a2b", "b2a"],
        default="a2b",
        help="a2b (default) or b2a (CycleGAN runs learn both; pix2pix only a2b)",
    )
    parser.add_argument(
        "--compare", metavar="PATH", help="also write input | output | target side by side (a folder in folder mode)"
    )
    parser.add_argument(
        "--target",
        metavar="PATH",
        help="the expected output, shown in the comparison (a folder of images named like the inputs in folder mode)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="N",
        help="images with a side above N pixels are translated in overlapping tiles (default: the "
        "model's translate.tile, 512 unless set when training)",
    )
    add_skip_bad(parser)
    add_loading(parser, ema_help="use the raw trained weights instead of their moving average")


def run(args: argparse.Namespace) -> int:
    """Run ``ganforge translate`` for parsed ``args``; raises TranslateError / RunError with one-line messages."""
    from ganforge.errors import TranslateError
    from ganforge.imaging import check_writable, save_image
    from ganforge.tasks.translate.app import TranslateOptions, translate_detailed, translate_folder

    device = check_device(args.device)
    use_threads(args.threads)
    image, out = image_of(args), Path(args.out).expanduser()
    skip_bad = check_skip_bad(args, image)
    options = TranslateOptions(checkpoint=args.checkpoint, device=device, ema=not args.no_ema, tile=args.tile)
    if image.is_dir():
        if args.target is not None and not Path(args.target).is_dir():
            raise TranslateError(
                f"--image is a folder, so --target must be a folder of images named like the inputs; "
                f"'{args.target}' is not a folder"
            )
        results = translate_folder(
            args.model, image, out, args.direction, args.compare, args.target, options=options, skip_bad=skip_bad
        )
        skipped = report_skipped(results)
        print(f"translated {len(results)} image(s) ({args.direction}) into {out}{skipped}", file=sys.stderr)
        print(out)
        return 0
    if out.is_dir():
        out = out / image.name
    check_writable(out, "--out")
    if args.compare is not None:
        check_writable(args.compare, "--compare")
    res = translate_detailed(args.model, image, args.direction, args.compare, args.target, options=options)
    save_image(res.image, out)
    print(f"translated {image} -> {out}: {res.describe()}", file=sys.stderr)
    if res.compare_path is not None:
        print(f"comparison: {res.compare_path}", file=sys.stderr)
    print(out)
    return 0
