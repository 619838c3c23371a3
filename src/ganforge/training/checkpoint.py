"""Checkpoints that are safe to load and never half-written.

A checkpoint is a folder::

    checkpoints/step-00001000/
        generator.safetensors       weights (safetensors: loading cannot run code)
        generator_ema.safetensors
        discriminator.safetensors
        config.json                 everything needed to rebuild the networks
        state.pt                    optimisers, RNG states, counters: tensors and plain
                                    containers only, loaded with weights_only=True
        meta.json                   step, kimg, time; written last

It is written into a temporary folder beside its final place and renamed into place in
one step, so a crash leaves either the old set of checkpoints or the new one, never a
partial folder. Only folders whose ``meta.json`` exists count as checkpoints.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from safetensors.torch import load_file, save_file

STEP_RE = re.compile(r"^step-(\d{8})$")
WEIGHT_FILES = {"g": "generator.safetensors", "g_ema": "generator_ema.safetensors", "d": "discriminator.safetensors"}


from ganforge.errors import RunError  # noqa: E402,F401  (re-exported)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_checkpoint(
    folder: Path,
    weights: Dict[str, Dict[str, torch.Tensor]],
    config: Dict[str, Any],
    state: Dict[str, Any],
    meta: Dict[str, Any],
) -> Path:
    """Atomically write a checkpoint folder at ``folder`` (replacing one that exists)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for key, sd in weights.items():
        path = tmp / WEIGHT_FILES[key]
        save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})
        _fsync_file(path)
    _write_json(tmp / "config.json", config)
    torch.save(state, tmp / "state.pt")
    _fsync_file(tmp / "state.pt")
    _write_json(tmp / "meta.json", {**meta, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
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


def list_checkpoints(run_dir: Path) -> List[Path]:
    """Complete step checkpoints of a run, oldest first."""
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    found = [p for p in ck.iterdir() if p.is_dir() and STEP_RE.match(p.name) and (p / "meta.json").is_file()]
    return sorted(found, key=lambda p: int(STEP_RE.match(p.name).group(1)))


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    for p in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    ck = Path(run_dir) / "checkpoints"
    for p in ck.glob(".tmp-*"):  # leftovers of a crash while writing
        shutil.rmtree(p, ignore_errors=True)


def is_run_dir(path: Path) -> bool:
    return (Path(path) / "config.yaml").is_file()


def find_checkpoint(run_dir: Path | str, which: str = "last") -> Path:
    """``last``, ``best``, a step number, or a path to a checkpoint folder."""
    run_dir = Path(run_dir)
    direct = Path(which)
    if which not in ("last", "best") and (direct / "meta.json").is_file():
        return direct
    if not run_dir.exists():
        raise RunError(f"run folder '{run_dir}' does not exist")
    if not run_dir.is_dir() or not is_run_dir(run_dir):
        raise RunError(f"'{run_dir}' is not a ganforge run folder (no config.yaml); pass a folder made by 'ganforge train'")
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
    if str(which).isdigit():
        for p in cks:
            if int(STEP_RE.match(p.name).group(1)) == int(which):
                return p
        steps = ", ".join(str(int(STEP_RE.match(p.name).group(1))) for p in cks)
        raise RunError(f"run '{run_dir}' has no checkpoint at step {which}; available: {steps}")
    raise RunError(f"checkpoint {which!r}: expected last, best, a step number or a checkpoint folder")


def read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"cannot read '{path}': {e}") from None


def load_weights(folder: Path, key: str) -> Dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHT_FILES[key]
    if not path.is_file():
        raise RunError(f"checkpoint '{folder}' has no {WEIGHT_FILES[key]}")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise RunError(f"cannot read weights '{path}': {e}") from None


def load_state(folder: Path) -> Dict[str, Any]:
    path = Path(folder) / "state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunError(f"cannot read training state '{path}': {e}") from None


def step_of(folder: Path) -> Optional[int]:
    m = STEP_RE.match(Path(folder).name)
    return int(m.group(1)) if m else None
