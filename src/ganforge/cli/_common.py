"""What several verbs share: the model, image, checkpoint, ``--device``, ``--threads`` and ``--skip-bad`` options and
their checks.

Adding the options imports nothing heavy (``ganforge --help`` stays torch-free); the checks import
torch, so verbs call them from ``run``.
"""

from __future__ import annotations

import argparse
import os
import re

from ganforge.errors import UsageError

THREADS_ENV = "GANFORGE_THREADS"  # the default of --threads when set
DEFAULT_THREADS = 1  # small networks run fastest on one thread, and do not collapse on a busy machine


IMAGE_HELP = "image file, or a folder of images"


def add_model_and_image(
    parser: argparse.ArgumentParser, model_help: str, metavar: str = "RUN_DIR", default: "str | None" = None
) -> None:
    """``--model`` (a run, a checkpoint folder or a built-in model's name; ``default``: the built-in model used
    when it is left out) and the image, a file or a folder, given as ``IMAGE`` or ``--image``
    (:func:`image_of` reads it): what the image verbs take."""
    parser.add_argument("image_pos", nargs="?", metavar="IMAGE", help=f"{IMAGE_HELP} (or --image PATH)")
    model_help += " or a built-in model's name ('ganforge models')"
    if default:
        model_help += f"; default: the built-in model {default}"
    parser.add_argument("--model", required=default is None, default=default, metavar=metavar, help=model_help)
    parser.add_argument("--image", metavar="PATH", help=IMAGE_HELP)


def image_of(args: argparse.Namespace):
    """The image path of a verb made with :func:`add_model_and_image` (``IMAGE`` or ``--image``), or a
    one-line :class:`UsageError` when neither or both are given."""
    from pathlib import Path

    given = [a for a in (args.image_pos, args.image) if a is not None]
    if len(given) != 1:
        why = "give it once" if given else "give one"
        raise UsageError(f"an image (a file or a folder) is needed: {why}, as IMAGE or as --image PATH")
    return Path(given[0]).expanduser()


def add_skip_bad(parser: argparse.ArgumentParser) -> None:
    """``--skip-bad``: what every folder mode offers (:func:`ganforge.imaging.usable_images`)."""
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="folder mode: skip images that cannot be read or used, each named with the reason on standard "
        "error (default: stop at the first, before anything is written)",
    )


def check_skip_bad(args: argparse.Namespace, image) -> bool:
    """``--skip-bad``, or a one-line :class:`UsageError` when it is given for a single image."""
    if args.skip_bad and not image.is_dir():
        raise UsageError(f"--skip-bad applies to folder mode; '{image}' is not a folder")
    return bool(args.skip_bad)


def report_skipped(results) -> str:
    """Print each input a folder mode skipped (``results.skipped``) on standard error, one line each
    (``skipped: <why, naming the file>``); returns what the summary line adds (``; 2 skipped``)."""
    import sys

    skipped = getattr(results, "skipped", None) or []
    for s in skipped:
        print(f"skipped: {s.reason}", file=sys.stderr)
    return f"; {len(skipped)} unusable image(s) skipped" if skipped else ""


def add_loading(
    parser: argparse.ArgumentParser,
    checkpoint_help: str = "last | best | STEP | checkpoint folder",
    ema_help: "str | None" = None,
) -> None:
    """How a run is loaded: ``--checkpoint``, ``--no-ema`` (when ``ema_help`` is given), ``--device``, ``--threads``."""
    parser.add_argument("--checkpoint", default="last", help=checkpoint_help)
    if ema_help:
        parser.add_argument("--no-ema", action="store_true", help=ema_help)
    add_device(parser)
    add_threads(parser)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto (cuda when available, else cpu)"
    )


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help=f"CPU threads for PyTorch (default: ${THREADS_ENV} when set, else {DEFAULT_THREADS}: "
        "ganforge's networks are small, and more threads make them slower on a busy machine)",
    )


def check_device(device: str) -> str:
    """The device ``--device`` names (``auto`` resolved), or a one-line :class:`UsageError`."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise UsageError(f"--device {device!r}: expected cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine; use --device cpu (or auto)")
    n = torch.cuda.device_count()
    if ":" in device and int(device.split(":")[1]) >= n:
        raise UsageError(f"--device {device}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    return device


def use_threads(threads: "int | None") -> int:
    """Set PyTorch's CPU threads to ``--threads`` (else ``$GANFORGE_THREADS``, else 1); returns the number."""
    import torch

    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if raw and not raw.isdigit():
            raise UsageError(f"{THREADS_ENV}={raw!r}: expected a positive integer (the number of CPU threads)")
        threads, what = (int(raw) if raw else DEFAULT_THREADS), THREADS_ENV
    else:
        what = "--threads"
    if threads < 1:
        raise UsageError(f"{what}: expected a positive number of CPU threads, got {threads}")
    torch.set_num_threads(threads)
    return threads
