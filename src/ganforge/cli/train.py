"""``ganforge train [PRESET] [key=value ...]``: train a task; the last line of standard output is the
run folder (also after Ctrl-C, which writes a checkpoint first and exits with status 130)."""
from __future__ import annotations

import argparse

ORDER = 10  # place in `ganforge --help`
HELP = "train a GAN (default: DCGAN on the embedded MNIST, 5 minutes)"
DESCRIPTION = ("Train a GAN, or with task=inpaint (preset mnist-inpaint) an image-completion network. PRESET is a "
               "shipped preset name (see 'ganforge presets') or a YAML file; key=value items override config "
               "keys, e.g. train.steps=2000.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="*", metavar="[PRESET] [key=value ...]")
    parser.add_argument("--minutes", type=float, help="wall-clock budget (same as train.minutes=M)")
    parser.add_argument("--runs-dir", default="runs", help="where numbered run folders are made (default: runs)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config, run one step, write nothing")


def run(args: argparse.Namespace) -> int:
    from ganforge.api import trainer
    from ganforge.cli import EXIT_INTERRUPTED
    from ganforge.errors import ConfigError

    preset, overrides = None, []
    for item in args.items:
        if "=" in item:
            overrides.append(item)
        elif preset is None:
            preset = item
        else:
            raise ConfigError(f"unexpected argument {item!r}: give one PRESET and then key=value overrides")
    if args.minutes is not None:
        overrides.append(f"train.minutes={args.minutes}")
    if args.resume and preset:
        raise ConfigError("--resume continues a run with its own config; do not give a PRESET too")
    tr = trainer(preset=None if args.resume else (preset or "default"), overrides=overrides,
                 runs_dir=args.runs_dir, resume=args.resume, dry_run=args.dry_run)
    if args.dry_run:
        print(tr.cfg.to_yaml(), end="")
        tr.run()
        return 0
    try:
        run_dir = tr.run()
    except KeyboardInterrupt:
        print(tr.run_dir, flush=True)
        return EXIT_INTERRUPTED
    print(run_dir, flush=True)
    return 0
