"""``ganforge export``: write a run's inference network(s) as ONNX or torch.export files with a JSON
manifest (:mod:`ganforge.export`); prints the output folder.

    ganforge export RUN --format onnx --out deploy/           # deploy/<network>.onnx + deploy/manifest.json
    ganforge export RUN --format torch-export --out deploy/   # deploy/<network>.pt2 + deploy/manifest.json
    ganforge export RUN --format onnx,torch-export --out deploy/   # both, from one trace
"""

from __future__ import annotations

import argparse
import sys

ORDER = 95  # place in `ganforge --help`
HELP = "export a run's network(s) to ONNX or torch.export for deployment"
DESCRIPTION = (
    "Write the inference network(s) of a run (the GAN generator, completion network, upscaler, "
    "translators, ...) into the folder --out: one file per network (<network>.onnx or .pt2) and "
    "manifest.json (input/output names, shapes, dynamic dims, value ranges, the run and step). The batch "
    "is dynamic; fully convolutional networks also take any height and width. ONNX needs "
    "pip install 'ganforge[export]'."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run folder, a checkpoint folder or a built-in model's name")
    parser.add_argument(
        "--format",
        default="onnx",
        metavar="onnx|torch-export",
        help="onnx: one .onnx file per network (default); torch-export: torch.export.save programs "
        "(.pt2); onnx,torch-export: both",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FOLDER",
        help="output folder (made if missing; an earlier export in it is replaced whole, other files are kept)",
    )
    parser.add_argument("--checkpoint", default="last", help="last | best | STEP | checkpoint folder")
    parser.add_argument(
        "--no-ema", action="store_true", help="export the trained weights instead of their moving average"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ganforge export`` for parsed ``args``; problems are one-line ExportError / RunError / WriteError."""
    from ganforge.export import check_format, export_run

    check_format(args.format)  # before loading anything
    manifest = export_run(args.run_dir, args.format, args.out, checkpoint=args.checkpoint, ema=not args.no_ema)
    for name, net in manifest["networks"].items():
        ins = ", ".join(f"{d['name']} {d['shape']}" for d in net["inputs"])
        outs = ", ".join(f"{d['name']} {d['shape']}" for d in net["outputs"])
        print(f"{name}: {', '.join(net['files'].values())} ({ins} -> {outs})", file=sys.stderr)
    print(
        f"exported {len(manifest['networks'])} network(s) of {manifest['task']} step {manifest['step']} as "
        f"{', '.join(manifest['formats'])}; manifest: {args.out}/manifest.json",
        file=sys.stderr,
    )
    print(args.out)
    return 0
