"""The run folder: the one place that reads and writes it.

::

    runs/00003-mnist-dcgan/
        config.yaml                  the resolved config (its ``task`` says what the run trains)
        metrics.jsonl  log.txt  loss_curve.png  samples/  tb/
        checkpoints/step-00001000/   one folder per checkpoint:
            <network>.safetensors    one file per network of the task (generator, generator_ema,
                                     discriminator, ...): safetensors, loading cannot run code
            config.json              task, image shape, class names and the config: enough to
                                     rebuild the networks without the run folder
            state.pt                 optimisers, RNG states, counters: tensors and plain containers
                                     only, loaded with weights_only=True
            meta.json                step, kimg, time; written last
        checkpoints/good/, best/     named checkpoints (watchdog rollback target, lowest FID)

A checkpoint is written into a temporary folder beside its final place and renamed into place in
one step, so a crash leaves either the old set of checkpoints or the new one, never a partial
folder. Only folders whose ``meta.json`` exists count as checkpoints. A network's file name is its
key in the task's network dictionary, so a task with any number of networks needs nothing here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import yaml
from safetensors.torch import load_file, save_file

from ganforge.errors import RunError

STEP_RE = re.compile(r"^step-(\d{8})$")
WEIGHTS_SUFFIX = ".safetensors"
PathLike = Union[str, Path]


# ------------------------------------------------------------------------------------------
# run folders


def next_run_dir(runs_dir: PathLike, name: str) -> Path:
    """``runs/00003-<name>``: one more than the highest number present; created here."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    while True:
        nums = [int(p.name[:5]) for p in runs_dir.iterdir() if re.match(r"^\d{5}-", p.name)]
        path = runs_dir / f"{(max(nums) + 1 if nums else 0):05d}-{safe}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue  # another process took this number


def is_run_dir(path: PathLike) -> bool:
    return (Path(path) / "config.yaml").is_file()


def is_checkpoint_dir(path: PathLike) -> bool:
    return (Path(path) / "meta.json").is_file() and (Path(path) / "config.json").is_file()


def check_run_dir(run_dir: PathLike) -> Path:
    """The run folder, or a clear error when it does not exist or is not a run."""
    run = Path(run_dir)
    if not run.exists():
        raise RunError(f"run folder '{run}' does not exist")
    if not run.is_dir() or not is_run_dir(run):
        raise RunError(f"'{run}' is not a ganforge run folder (no config.yaml); pass a folder made by 'ganforge train'")
    return run


def read_run_config(run_dir: PathLike) -> Dict[str, Any]:
    """A run's ``config.yaml`` as a nested dict."""
    path = check_run_dir(run_dir) / "config.yaml"
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RunError(f"cannot read '{path}': {e}") from None
    if not isinstance(d, dict):
        raise RunError(f"'{path}' is not a ganforge config (expected a mapping of sections)")
    return d


def run_task(path: PathLike) -> str:
    """The task (``gan``, ``inpaint``, ...) of a run folder or a checkpoint folder; runs written
    before tasks were recorded trained GANs."""
    path = Path(path).expanduser()
    if is_checkpoint_dir(path):
        return str(read_json(path / "config.json").get("config", {}).get("task") or "gan")
    return str(read_run_config(path).get("task") or "gan")


def read_metrics(run_dir: PathLike) -> List[Dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (a line cut by a crash is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# ------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class Checkpoint:
    """A checkpoint folder found in a run: where it is, its config.json and meta.json."""

    folder: Path
    config: Dict[str, Any]  # config.json: task, img_shape, class_names, config (the run's config dict)
    meta: Dict[str, Any]  # meta.json: step, kimg, epoch, elapsed_s, saved_at

    @property
    def task(self) -> str:
        return str(self.config.get("config", {}).get("task") or self.config.get("task") or "gan")

    @property
    def run_dir(self) -> Optional[Path]:
        """The run folder the checkpoint belongs to (None for a checkpoint folder copied elsewhere)."""
        return self.folder.parent.parent if self.folder.parent.name == "checkpoints" else None

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    def has(self, network: str) -> bool:
        return weights_path(self.folder, network).is_file()

    def weights(self, network: str) -> Dict[str, torch.Tensor]:
        return load_weights(self.folder, network)

    def state(self) -> Dict[str, Any]:
        return load_state(self.folder)


def open_checkpoint(run_dir: PathLike, which: str = "last") -> Checkpoint:
    """The checkpoint ``which`` (``last``, ``best``, a step number, or a checkpoint folder path) of a run."""
    folder = find_checkpoint(run_dir, which)
    return Checkpoint(folder, read_json(folder / "config.json"), read_json(folder / "meta.json"))


def weights_path(folder: PathLike, network: str) -> Path:
    return Path(folder) / f"{network}{WEIGHTS_SUFFIX}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_json(path: PathLike, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_checkpoint(
    folder: PathLike,
    weights: Dict[str, Dict[str, torch.Tensor]],
    config: Dict[str, Any],
    state: Dict[str, Any],
    meta: Dict[str, Any],
) -> Path:
    """Atomically write a checkpoint folder at ``folder`` (replacing one that exists):
    ``weights`` maps each network's name to its state dict (one ``<name>.safetensors`` each)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, sd in weights.items():
        path = weights_path(tmp, name)
        save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})
        _fsync_file(path)
    write_json(tmp / "config.json", config)
    torch.save(state, tmp / "state.pt")
    _fsync_file(tmp / "state.pt")
    write_json(tmp / "meta.json", {**meta, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    _fsync_file(tmp / "meta.json")
    if folder.exists():  # replace: move the old one aside first so the swap is two renames
        old = folder.parent / f".old-{folder.name}-{os.getpid()}"
        os.rename(folder, old)
        os.rename(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, folder)
    try:  # make the rename durable
        fd = os.open(folder.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass
    return folder


def list_checkpoints(run_dir: PathLike) -> List[Path]:
    """Complete step checkpoints of a run, oldest first."""
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    found = [p for p in ck.iterdir() if p.is_dir() and STEP_RE.match(p.name) and (p / "meta.json").is_file()]
    return sorted(found, key=lambda p: int(STEP_RE.match(p.name).group(1)))


def prune_checkpoints(run_dir: PathLike, keep: int) -> None:
    for p in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    ck = Path(run_dir) / "checkpoints"
    for p in ck.glob(".tmp-*"):  # leftovers of a crash while writing
        shutil.rmtree(p, ignore_errors=True)


def find_checkpoint(run_dir: PathLike, which: str = "last") -> Path:
    """``last``, ``best``, a step number, or a path to a checkpoint folder."""
    run_dir = Path(run_dir)
    which = str(which)
    direct = Path(which)
    if which not in ("last", "best") and (direct / "meta.json").is_file():
        return direct
    if (run_dir / "meta.json").is_file() and which == "last":  # a checkpoint folder given as the run
        return run_dir
    check_run_dir(run_dir)
    if which == "best":
        best = run_dir / "checkpoints" / "best"
        if (best / "meta.json").is_file():
            return best
        raise RunError(f"run '{run_dir}' has no 'best' checkpoint (it is written when in-training evaluation is on)")
    cks = list_checkpoints(run_dir)
    if not cks:
        raise RunError(f"run '{run_dir}' has no complete checkpoint yet (checkpoints/step-*/meta.json)")
    if which == "last":
        return cks[-1]
    if which.isdigit():
        for p in cks:
            if step_of(p) == int(which):
                return p
        steps = ", ".join(str(step_of(p)) for p in cks)
        raise RunError(f"run '{run_dir}' has no checkpoint at step {which}; available: {steps}")
    raise RunError(f"checkpoint {which!r}: expected last, best, a step number or a checkpoint folder")


def read_json(path: PathLike) -> Dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"cannot read '{path}': {e}") from None


def load_weights(folder: PathLike, network: str) -> Dict[str, torch.Tensor]:
    path = weights_path(folder, network)
    if not path.is_file():
        raise RunError(f"checkpoint '{folder}' has no {path.name}")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise RunError(f"cannot read weights '{path}': {e}") from None


def load_state(folder: PathLike) -> Dict[str, Any]:
    path = Path(folder) / "state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunError(f"cannot read training state '{path}': {e}") from None


def step_of(folder: PathLike) -> Optional[int]:
    m = STEP_RE.match(Path(folder).name)
    return int(m.group(1)) if m else None
