"""``ganforge upscale``: upscale an image (or a folder of images) with a super-resolution run
(:mod:`ganforge.tasks.superres.app`); prints the output path.

    ganforge upscale --model RUN_DIR --image in.png --out out.png [--compare cmp.png] [--original hr.png]
    ganforge upscale --model RUN_DIR --image photos/ --out big/ [--compare cmp/] [--skip-bad]
    ganforge upscale --model RUN_DIR/checkpoints/pixel --image in.png --out out.png   # the pixel-loss model
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

VERB = "upscale"  # the command: ganforge upscale ...
DEFAULT_MODEL = "photo-x4"  # the built-in model used without --model
ORDER = 65  # place in `ganforge --help`
HELP = "upscale images with a super-resolution run (task=superres)"
DESCRIPTION = (
    "Upscale an image, or every image in a folder, by the model's scale (x2, x4, x8) with a run of "
    "'ganforge train task=superres' (presets mnist-sr, photo-sr). The image keeps its mode (grey, RGB, "
    "alpha); large images are processed in overlapping tiles, which gives the same result as whole."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_and_image(
        parser,
        "a task=superres run folder, or a checkpoint folder (RUN/checkpoints/pixel: the pixel-loss model),",
        default=DEFAULT_MODEL,
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="output image, or a folder in folder mode (PNGs named like the inputs)",
    )
    parser.add_argument(
        "--compare",
        metavar="PATH",
        help="also write input (nearest) | bicubic | ganforge | original side by side (a folder in folder mode)",
    )
    parser.add_argument(
        "--original", metavar="PATH", help="the high-resolution original, shown in the comparison (single image)"
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="N",
        help="input pixels a side per tile (default 256; 0 = the whole image at once)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=None,
        metavar="N",
        help="context pixels around each tile (default: the network's receptive radius: seamless)",
    )
    add_skip_bad(parser)
    add_loading(parser, "last | STEP | checkpoint folder", "use the trained weights instead of their moving average")


def run(args: argparse.Namespace) -> int:
    """Run ``ganforge upscale`` for parsed ``args``; problems are one-line UpscaleError / RunError / WriteError."""
    from ganforge.imaging import check_writable, save_image
    from ganforge.tasks.superres.app import (
        DEFAULT_TILE,
        UpscaleError,
        UpscaleOptions,
        load_upscaler,
        upscale_detailed,
        upscale_folder,
    )

    device = check_device(args.device)
    use_threads(args.threads)
    image, out = image_of(args), Path(args.out).expanduser()
    skip_bad = check_skip_bad(args, image)
    options = UpscaleOptions(
        tile=DEFAULT_TILE if args.tile is None else args.tile,
        overlap=args.overlap,
        checkpoint=args.checkpoint,
        device=device,
        ema=not args.no_ema,
    )
    if image.is_dir():
        if args.original is not None:
            raise UpscaleError("--original applies to a single image, not to folder mode")

        def line(i: int, n: int, res) -> None:
            print(f"[{i + 1}/{n}] {res.path}: {res.describe()}", file=sys.stderr, flush=True)

        results = upscale_folder(
            args.model, image, out, args.compare, options=options, progress=line, skip_bad=skip_bad
        )
        print(f"upscaled {len(results)} image(s) into {out}{report_skipped(results)}", file=sys.stderr)
        print(out)
        return 0
    if not image.exists():
        raise UpscaleError(f"image file '{image}' does not exist")
    if out.is_dir():
        out = out / f"{image.stem}.png"
    check_writable(out, "--out")
    if args.compare is not None:
        check_writable(args.compare, "--compare")
    handle = load_upscaler(args.model, checkpoint=options.checkpoint, device=options.device, ema=options.ema)
    res = upscale_detailed(handle, image, args.compare, args.original, options=options)
    save_image(res.image, out)
    print(f"upscaled {image} -> {out}: {res.describe()}", file=sys.stderr)
    if res.compare_path is not None:
        print(f"comparison: {res.compare_path}", file=sys.stderr)
    print(out)
    return 0
