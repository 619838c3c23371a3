"""``ganforge info RUN_DIR [--json]``: a run's config, checkpoints and last metrics
(:func:`ganforge.apps.info.run_info`), for people or as JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

ORDER = 40  # place in `ganforge --help`
HELP = "describe a run folder: config, checkpoints, last metrics"
DESCRIPTION = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run folder, a checkpoint folder or a built-in model's name")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ganforge.apps.info import run_info

    info = run_info(args.run_dir)
    print(json.dumps(info, indent=2) if args.json else "\n".join(_lines(info)))
    return 0


def _lines(info: Dict[str, Any]) -> List[str]:
    """The readable description: one labelled line per item."""
    from pathlib import Path

    from ganforge.runs import read_json

    m, d = info["model"], info["data"]
    lines = [f"run        {info['run']}", f"task       {info['task']}"]
    if m:
        lines.append(f"model      {m.get('arch')} z_dim={m.get('z_dim')} loss={info['loss']}")
    shared = {"name", "task", "data", "model", "loss", "g_optim", "d_optim", "train", "augment", "eval", "watchdog"}
    for section, values in info["config"].items():  # a task's own sections (inpaint: arch, width, masks ...)
        if section not in shared and isinstance(values, dict):
            lines.append(f"{section:10s} " + " ".join(f"{k}={v}" for k, v in values.items()))
    lines.append(
        f"data       {d.get('dataset')} root={d.get('root')} size={d.get('size')} channels={d.get('channels')}"
    )
    for c in info["checkpoints"]:
        lines.append(
            f"checkpoint step {c['step']:>8}  {c['kimg']:8.1f} kimg  {c['elapsed_s'] / 60:6.1f} min  {c['path']}"
        )
    if not info["checkpoints"]:
        lines.append("checkpoint none yet")
    if info["best"]:
        b = read_json(Path(info["best"]) / "meta.json")
        lines.append(f"best       step {b['step']:>8}  {b['kimg']:8.1f} kimg  (lowest in-training FID)  {info['best']}")
    for label, key in (("last log ", "last_metrics"), ("last eval", "last_eval")):
        if info[key]:
            lines.append(f"{label}  " + "  ".join(f"{k}={v}" for k, v in info[key].items()))
    if info.get("card"):
        c = info["card"]
        lines.append(f"card       {c.get('name')}: {c.get('summary', '')}  (the whole card: {info['run']}/README.md)")
    if info["samples"]:
        lines.append(f"samples    {info['samples']}")
    return lines
