"""``ganforge watermark``: embed, detect or extract an invisible watermark with a ``task=watermark`` run
(:mod:`ganforge.tasks.watermark.app`).

    ganforge watermark embed   --model WM_RUN --image in.png --message TEXT_OR_HEX --out out.png [--strength S]
    ganforge watermark detect  --model WM_RUN --image img.png --key TEXT_OR_HEX [--fpr 1e-6]
                               [--test combined|soft|binomial] [--json]
    ganforge watermark extract --model WM_RUN --image img.png [--json]

``--image`` may be a folder: embed writes every image into the folder ``--out``; detect and extract
print one line (or, with ``--json``, one JSON object) per image. Every image of a folder is decoded first:
an unusable one stops the command before anything is written, or with ``--skip-bad`` is skipped and named.
"""

from __future__ import annotations

import argparse
import json
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

VERB = "watermark"  # the command: ganforge watermark ...
DEFAULT_MODEL = "photo-watermark"  # the built-in model used without --model
ORDER = 68  # place in `ganforge --help`
HELP = "embed, detect or extract an invisible watermark (task=watermark)"
DESCRIPTION = (
    "Mark images invisibly with a message, test whether an image carries a key (p-value, decision at a "
    "false-positive rate), or read the message back (with BCH error correction), with a run of "
    "'ganforge train watermark'. Any image size, grey or colour; --image may be a folder."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    emb = sub.add_parser("embed", help="mark an image (or a folder) with a message")
    det = sub.add_parser("detect", help="test an image (or a folder) for a key: p-value and decision")
    ext = sub.add_parser("extract", help="read the message of an image (or a folder)")
    for p in (emb, det, ext):
        add_model_and_image(p, "a task=watermark run folder (or a checkpoint folder)", "WM_RUN", default=DEFAULT_MODEL)
        add_loading(p, "last | STEP | checkpoint folder")
        add_skip_bad(p)
    emb.add_argument(
        "--message",
        required=True,
        metavar="TEXT_OR_HEX",
        help="text (UTF-8) or 0x-prefixed hex, up to the model's capacity",
    )
    emb.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="output image, or a folder in folder mode (PNGs named like the inputs)",
    )
    emb.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="residual strength (default 1: the trained PSNR; 2 = 6 dB lower PSNR, more robust)",
    )
    det.add_argument("--key", required=True, metavar="TEXT_OR_HEX", help="the message that was embedded")
    det.add_argument("--fpr", type=float, default=1e-6, help="false-positive rate of the decision (default 1e-6)")
    det.add_argument(
        "--test",
        choices=("combined", "soft", "binomial"),
        default="combined",
        help="combined (default): the better of soft (bits weighed by the decoder's confidence) and "
        "binomial (the count of matching bits), Bonferroni-corrected",
    )
    for p in (det, ext):
        p.add_argument("--json", action="store_true", help="print one JSON object per image (raw bits under 'bits')")


def _detect_line(info) -> str:
    verdict = "MARKED" if info["detected"] else "not detected"
    how = {
        "combined": f"soft and binomial tests; the count alone needs {info['threshold']}",
        "soft": "soft test: bits weighed by confidence",
        "binomial": f"binomial test: needs {info['threshold']}",
    }[info["test"]]
    return (
        f"{verdict}: {info['matches']}/{info['n_bits']} bits match the key, p-value {info['p_value']:.3g} "
        f"({how}; FPR {info['fpr']:g})"
    )


def _extract_line(info) -> str:
    text = repr(info["text"]) if info["text"] is not None else "(not text)"
    state = (
        f"{info['corrected']} error(s) corrected" if info["ok"] else "too many errors to correct (uncorrected reading)"
    )
    return f"message {text} hex {info['hex']}: {state}; bits {info['bits']}"


def run(args: argparse.Namespace) -> int:
    """Run ``ganforge watermark`` for parsed ``args``; problems are one-line WatermarkError / ImageError / RunError."""
    from ganforge.imaging import check_writable
    from ganforge.tasks.watermark import app as wm

    device = check_device(args.device)
    use_threads(args.threads)
    image = image_of(args)
    if not image.exists():
        raise wm.WatermarkError(f"image '{image}' does not exist")
    skip_bad = check_skip_bad(args, image)
    handle = wm.load_watermarker(args.model, checkpoint=args.checkpoint, device=device)
    if args.action == "embed":
        out = Path(args.out).expanduser()
        if image.is_dir():
            check_writable(out, "--out", folder=True)
            res = wm.embed_folder(
                handle,
                image,
                out,
                args.message,
                args.strength,
                progress=lambda i, n, r: print(f"[{i + 1}/{n}] {r.path} -> {r.out}", file=sys.stderr, flush=True),
                skip_bad=skip_bad,
            )
            print(f"marked {len(res)} image(s) into {out}{report_skipped(res)}", file=sys.stderr)
            print(out)
            return 0
        if out.is_dir():
            out = out / f"{image.stem}.png"
        check_writable(out, "--out")
        wm.embed_file(handle, image, out, args.message, args.strength)
        print(f"marked {image} -> {out} with {args.message!r}", file=sys.stderr)
        print(out)
        return 0
    key = args.key if args.action == "detect" else None
    if key is not None:
        wm.message_code(handle.bits).parse(key)

    def show(path, info) -> None:
        if args.json:
            print(json.dumps({"image": str(path), **info}), flush=True)
        else:
            line = _detect_line(info) if key is not None else _extract_line(info)
            print(f"{path}: {line}" if image.is_dir() else line, flush=True)

    if image.is_dir():
        res = wm.read_folder(
            handle,
            image,
            key,
            getattr(args, "fpr", wm.DEFAULT_FPR),
            getattr(args, "test", "combined"),
            progress=lambda i, n, r: show(r.path, r.info),
            skip_bad=skip_bad,
        )
        skipped = report_skipped(res)
        if key is not None and not args.json:
            marked = sum(r.info["detected"] for r in res)
            print(f"{marked} of {len(res)} image(s) carry the key{skipped}", file=sys.stderr)
        return 0
    info = wm.detect(handle, image, key, args.fpr, args.test) if key is not None else wm.extract(handle, image)
    show(image, info)
    return 0
