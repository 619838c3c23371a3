"""``ganforge train [PRESET] [key=value ...]``: train a task; the last line of standard output is the
run folder (also after Ctrl-C or SIGTERM, which write a checkpoint first and exit with status 130).

Under ``torchrun --nproc_per_node=N -m ganforge train ...`` every process runs this verb; rank 0
prints the run folder, and each leaves the process group cleanly (networks and optimisers released,
a barrier, then ``destroy_process_group``) so that a finished run exits with status 0."""

from __future__ import annotations

import argparse

ORDER = 10  # place in `ganforge --help`
HELP = "train a model (default: a DCGAN on the embedded MNIST, 5 minutes)"
DESCRIPTION = (
    "Train a GAN, or another task's networks with task=NAME or a preset of that task (image completion, "
    "super-resolution, translation: see 'ganforge presets'). PRESET is a shipped preset name or a YAML "
    "file; key=value items override config keys, e.g. train.steps=2000 ('ganforge config TASK' lists them)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="*", metavar="[PRESET] [key=value ...]")
    parser.add_argument("--minutes", type=float, help="wall-clock budget (same as train.minutes=M)")
    parser.add_argument("--runs-dir", default="runs", help="where numbered run folders are made (default: runs)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run from its newest intact checkpoint (an older one if the newest is damaged)",
    )
    parser.add_argument(
        "--checkpoint",
        default="last",
        metavar="STEP|good|best|FOLDER",
        help="with --resume: the checkpoint to continue from (default: the newest intact one)",
    )
    parser.add_argument(
        "--init-from",
        metavar="RUN",
        help="start from the weights of RUN's last checkpoint (or of a "
        "checkpoint folder such as RUN/checkpoints/best): every tensor matching by name and shape",
    )
    parser.add_argument(
        "--freeze-d",
        type=int,
        default=0,
        metavar="K",
        help="with --init-from: keep the discriminator's first K blocks fixed (Freeze the Discriminator)",
    )
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
    if args.checkpoint != "last" and not args.resume:
        raise ConfigError("--checkpoint chooses where a resumed run continues from: give it with --resume RUN_DIR")
    tr = trainer(
        preset=None if args.resume else (preset or "default"),
        overrides=overrides,
        runs_dir=args.runs_dir,
        resume=args.resume,
        resume_from=args.checkpoint,
        dry_run=args.dry_run,
        init_from=args.init_from,
        freeze_d=args.freeze_d,
    )
    main = tr.is_main
    clean = False  # leave the process group with a barrier only when every rank got here alike
    try:
        if args.dry_run:
            if main:
                print(tr.cfg.to_yaml(), end="")
            tr.run()
            clean = True
            return 0
        try:
            run_dir = tr.run()
        except KeyboardInterrupt:
            clean = tr._stop  # a stop every rank agreed on (not a second Ctrl-C mid-step)
            if main:
                print(tr.run_dir, flush=True)
            return EXIT_INTERRUPTED
        clean = True
        if main:
            print(run_dir, flush=True)
        return 0
    finally:
        _leave(tr, clean)


def _leave(tr, clean: bool) -> None:
    """The end of a (multi-process) run: release the trainer, then barrier and destroy the process group;
    after an error on one rank the barrier is skipped (the others may never reach it)."""
    from ganforge.training import distributed

    if clean:
        tr.close()
    elif distributed.active():
        import torch.distributed as dist

        dist.destroy_process_group()
