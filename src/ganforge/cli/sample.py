"""``ganforge sample RUN_DIR --out PATH``: images from a trained run, as a .png grid, a .npz file or a
folder of PNGs (:func:`ganforge.tasks.gan.app.write_samples`); prints the output path. Runs whose
handle names another writer (``sample_app``: a video run's clips as .gif/.mp4/.npz/folder, see
:mod:`ganforge.tasks.video.app`) are written by that module (:func:`ganforge.api.sample_writer`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganforge.cli._common import add_loading, check_device, use_threads

ORDER = 20  # place in `ganforge --help`
HELP = "generate images (or clips, from a video run) from a trained run"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        nargs="?",
        default="digits",
        metavar="RUN",
        help="a run folder, a checkpoint folder or a built-in model's name ('ganforge models'; default: digits)",
    )
    parser.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        required=True,
        help="a .png grid, a .npz (uint8 arr_0 [N,H,W,C]) or a folder of PNGs; a video run: also "
        "an animated .gif/.mp4 grid, a .npz of arr_0 [N,T,H,W,C], or a folder of frame folders",
    )
    parser.add_argument("--nrow", type=int, default=None, help="images per row in a .png grid")
    parser.add_argument(
        "--class",
        dest="cls",
        metavar="C",
        help="conditional runs: a class index or name, or 'all' (--n per class; a .png gets one "
        "labelled row per class)",
    )
    parser.add_argument(
        "--truncation",
        type=float,
        default=None,
        metavar="T",
        help="redraw latent components larger than T in magnitude (BigGAN's truncation trick: "
        "smaller T, less variety; e.g. 1.0)",
    )
    parser.add_argument(
        "--watermark",
        metavar="WM_RUN",
        help="mark every image invisibly with this task=watermark run or built-in model (e.g. photo-watermark)",
    )
    parser.add_argument(
        "--message",
        default=None,
        metavar="TEXT_OR_HEX",
        help="with --watermark: the message (default 'gf'; detect it with ganforge watermark detect --key)",
    )
    add_loading(parser, ema_help="use the raw generator weights instead of the EMA copy")


def run(args: argparse.Namespace) -> int:
    import ganforge.api
    from ganforge.api import sample_writer
    from ganforge.errors import UsageError
    from ganforge.imaging import check_writable

    out = Path(args.out)
    if args.n < 1:
        raise UsageError("--n must be at least 1")
    device = check_device(args.device)
    check_writable(out, "--out", folder=out.suffix == "" or out.is_dir())  # every writer: no suffix = a folder
    use_threads(args.threads)
    g = ganforge.api.load(args.run_dir, checkpoint=args.checkpoint, ema=not args.no_ema, device=device)
    writer = sample_writer(g)  # how this run's samples are written (the handle says; GAN runs: tasks/gan/app.py)
    if writer.sample_output_kind(out) is None:
        raise UsageError(f"--out {out}: expected {writer.SAMPLE_OUTPUTS}")
    if args.cls is not None and not g.num_classes:
        raise UsageError(
            f"--class: the run '{args.run_dir}' trained an unconditional model; it has no classes "
            "(train with model.conditional=true)"
        )
    extra = {}
    if args.watermark or args.message is not None:  # an invisible watermark on every image (apps/watermark.py)
        from ganforge.apps.watermark import marker

        extra["mark"] = marker(args.watermark, args.message, writer, device=device)
    n = writer.write_samples(
        g, out, args.n, seed=args.seed, cls=args.cls, nrow=args.nrow, truncation=args.truncation, **extra
    )
    print(f"wrote {n} samples from {g.checkpoint_path} (step {g.step}) to {out}", file=sys.stderr)
    print(out)
    return 0
