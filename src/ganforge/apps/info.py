"""What a run folder holds, as ``ganforge info`` shows it: config, checkpoints, last metrics.

info = run_info("runs/00003-mnist-dcgan")
info["checkpoints"][-1]["step"], info["last_metrics"], info["best"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

from ganforge import runs
from ganforge.errors import RunError
from ganforge.tasks import TASKS

__all__ = ["run_info"]


def run_info(run_dir: Union[str, Path]) -> Dict[str, Any]:
    """A run folder described as plain data (what ``ganforge info --json`` prints):

    ``run``, its ``task``, its whole ``config``, its ``model`` and ``data`` config sections and ``loss``
    name (GAN runs; empty for other tasks), the ``checkpoints`` (each
    its meta.json plus ``path``), the ``best`` checkpoint's folder (None without one), the last
    training log record (``last_metrics``) and the last evaluation record (``last_eval``) of
    metrics.jsonl, and the latest sample grid (``samples``); paths as strings.
    A checkpoint folder or a built-in model (a model folder: ``ganforge models``) is described the same way,
    with itself as its only checkpoint and its model card's fields as ``card``.
    Raises :class:`~ganforge.errors.RunError` for a folder that is not a run or a config of an unknown task;
    damaged lines of metrics.jsonl are skipped with a warning (:func:`ganforge.runs.read_metrics`).
    """
    path = runs.resolve(run_dir)
    if runs.is_checkpoint_dir(path) and not runs.is_run_dir(path):
        return _model_info(path)
    run = runs.check_run_dir(path)
    cfg = runs.read_run_config(run)
    task = str(cfg.get("task") or "gan")
    if task not in TASKS:
        raise RunError(
            f"'{run / 'config.yaml'}': task {task!r} is not a ganforge task (one of: {', '.join(TASKS.names())}); "
            "the file was edited or written by another program"
        )
    records = runs.read_metrics(run)  # damaged lines are skipped with a warning
    best = run / "checkpoints" / "best"
    samples = run / "samples" / "latest.png"
    return {
        "run": str(run),
        "task": task,
        "config": cfg,
        "model": cfg.get("model", {}),
        "data": cfg.get("data", {}),
        "loss": cfg.get("loss", {}).get("name"),
        "checkpoints": [runs.read_json(p / "meta.json") | {"path": str(p)} for p in runs.list_checkpoints(run)],
        "best": str(best) if (best / "meta.json").exists() else None,
        "last_metrics": next((r for r in reversed(records) if "loss_d" in r), None),
        "last_eval": next((r for r in reversed(records) if "fid" in r), None),
        "samples": str(samples) if samples.exists() else None,
    }


def _model_info(folder: Path) -> Dict[str, Any]:
    """:func:`run_info` of a checkpoint folder or a model folder (its card checked and included)."""
    from ganforge.models import read_card

    ck = runs.open_checkpoint(folder)
    cfg = ck.config.get("config", {})
    card = read_card(folder).meta
    return {
        "run": str(folder),
        "task": ck.task,
        "config": cfg,
        "model": cfg.get("model", {}),
        "data": cfg.get("data", {}),
        "loss": cfg.get("loss", {}).get("name"),
        "checkpoints": [ck.meta | {"path": str(folder)}],
        "best": None,
        "last_metrics": None,
        "last_eval": None,
        "samples": None,
        "card": {k: v for k, v in card.items() if k != "files"} or None,
    }
