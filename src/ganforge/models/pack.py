"""Write a run's checkpoint as a shareable model folder (``ganforge models pack RUN --out DIR``).

Kept apart from :mod:`ganforge.models` (which the run reader uses to resolve names), since it reads runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from ganforge import runs
from ganforge.errors import RunError
from ganforge.models.card import COPIED, WEIGHTS_SUFFIX, sha256_file, write_card

__all__ = ["pack"]


def pack(
    source: Union[str, Path],
    out: Union[str, Path],
    *,
    checkpoint: str = "last",
    card: Optional[Dict[str, Any]] = None,
    networks: Optional[Sequence[str]] = None,
    half: Sequence[str] = (),
) -> Path:
    """Write the shareable model folder ``out`` from a run (its checkpoint ``checkpoint``) or a checkpoint
    folder: config.json, meta.json, the weights (``networks``: which ones; default all; those in ``half`` stored
    as float16, half the bytes, loaded back into float32 networks) and a README.md card
    holding ``card``'s fields plus the task, the training step and each file's sha256. ``out`` must be new
    or empty, so files of two models never mix."""
    ck = runs.open_checkpoint(source, checkpoint)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"'{out}' already exists and is not an empty folder: pack into a new folder")
    have = sorted(p.name[: -len(WEIGHTS_SUFFIX)] for p in ck.folder.glob(f"*{WEIGHTS_SUFFIX}"))
    chosen = list(networks) if networks else have
    unknown = [n for n in chosen if n not in have]
    if unknown:
        raise RunError(f"checkpoint '{ck.folder}' has no {unknown[0]}{WEIGHTS_SUFFIX}; it has {', '.join(have)}")
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copyfile(ck.folder / name, out / name)
    files: Dict[str, Dict[str, Any]] = {}
    for n in chosen:
        dst = out / f"{n}{WEIGHTS_SUFFIX}"
        if n in half:
            _save_half(ck.folder / dst.name, dst)
        else:
            shutil.copyfile(ck.folder / dst.name, dst)
        files[dst.name] = {"bytes": dst.stat().st_size, "sha256": sha256_file(dst)}
    meta: Dict[str, Any] = {"name": out.name, "task": ck.task, "library_name": "ganforge"}
    meta.update(_from_run(ck))
    meta.update(card or {})
    meta.setdefault("tags", ["ganforge", ck.task])
    tr = dict(meta.get("training") or {})
    tr.setdefault("steps", ck.step)
    meta["training"] = tr
    meta["files"] = files
    write_card(out, meta)
    return out


def _from_run(ck: runs.Checkpoint) -> Dict[str, Any]:
    """What a card can say from the run alone: a summary, the training data as configured (its licence is for
    the user to fill in) and the last in-training evaluation, if any."""
    cfg = ck.config.get("config", {})
    data = cfg.get("data", {})
    where = data.get("root") or data.get("dataset")
    out: Dict[str, Any] = {
        "summary": f"A {ck.task} model trained with ganforge (checkpoint {ck.folder.name}, step {ck.step}).",
        "data": [{"name": f"{data.get('dataset')}: {where}", "license": "not recorded (fill in before sharing)"}],
        "training": {"steps": ck.step, "config": "config.json holds the run's resolved config"},
    }
    if ck.run_dir is not None:
        evals = [r for r in runs.read_metrics(ck.run_dir) if "fid" in r and r.get("step", 0) <= ck.step]
        if evals:
            e = evals[-1]
            out["figures"] = [{"what": f"in-training FID ({e.get('features', 'eval')} features)", "value": e["fid"]}]
    return out


def _save_half(src: Path, dst: Path) -> None:
    """Copy a safetensors file with its floating-point tensors stored as float16."""
    from safetensors.torch import load_file, save_file

    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()}
    save_file(tensors, str(dst), metadata={"stored_as": "float16"})
