"""The run folder: the one place that reads and writes it.

``runs/00003-mnist-dcgan/`` holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``log.txt``,
``samples/``, ``tb/`` and ``checkpoints/step-NNNNNNNN/`` (plus named ones such as ``good/`` and ``best/``), each
with one ``<network>.safetensors`` per network of the task, ``config.json`` (enough to rebuild the networks),
``state.pt`` (optimisers, RNG states, counters; loaded with ``weights_only=True``) and ``meta.json``, written
last. A checkpoint is written beside its place and renamed into it, so a crash never leaves a partial
folder; only folders with ``meta.json`` count. Layout in full: ``docs/architecture.md``.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
import yaml
from safetensors.torch import load_file, save_file

from ganforge.errors import RunError, WriteError

STEP_RE = re.compile(r"^step-(\d{8})$")
WEIGHTS_SUFFIX = ".safetensors"
PathLike = Union[str, Path]


# ------------------------------------------------------------------------------------------
# run folders


def next_run_dir(runs_dir: PathLike, name: str) -> Path:
    """``runs/00003-<name>``: one more than the highest number present; created here."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "it is a file, not a folder" if runs_dir.is_file() else write_failure(runs_dir, e)
        raise WriteError(f"cannot make a run folder in '{runs_dir}': {why}") from None
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
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        from ganforge.config import yaml_problem

        raise RunError(f"'{path}' is not valid YAML at {yaml_problem(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"cannot read '{path}': {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(d, dict):
        raise RunError(f"'{path}' is not a ganforge config (expected a mapping of sections)")
    return d


def resolve(model: PathLike) -> Path:
    """The folder ``model`` means: a built-in model's name (``ganforge models``) or a path (see
    :func:`ganforge.models.resolve`)."""
    from ganforge import models

    return models.resolve(model)


def run_task(path: PathLike) -> str:
    """The task (``gan``, ``inpaint``, ...) of a run folder, a checkpoint folder or a built-in model; runs
    written before tasks were recorded trained GANs."""
    path = resolve(path)
    if is_checkpoint_dir(path):
        return str(read_json(path / "config.json").get("config", {}).get("task") or "gan")
    return str(read_run_config(path).get("task") or "gan")


def read_metrics(run_dir: PathLike) -> List[Dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``, one dict per line, tolerant of damage: a line that is not
    UTF-8 text, not JSON or not a JSON object is skipped, and so is an unreadable file (no records);
    either is said once per file with a :class:`RuntimeWarning` (never an exception: a run folder is user
    data that crashes and disks damage). A last line without its newline (being written, or cut by a
    crash) is skipped silently. Every reader of the file (``ganforge info``, the web app, training when it
    resumes) goes through here."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def read_jsonl(path: PathLike) -> List[Dict[str, Any]]:
    """The objects of a JSON-lines file, skipping damage as :func:`read_metrics` says."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        _warn_once(path, f"cannot read '{path}' ({e.strerror or e}): its metrics are left out")
        return []
    lines = data.split(b"\n")
    out: List[Dict[str, Any]] = []
    bad: List[str] = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
            why = None if isinstance(rec, dict) else f"a JSON {type(rec).__name__}, not an object"
        except UnicodeDecodeError:
            why = "not UTF-8 text"
        except (ValueError, RecursionError):  # JSONDecodeError, an int too long to convert, nesting too deep
            why = "not JSON"
        if why is None:
            out.append(rec)
        elif i < len(lines) or why != "not JSON":  # an unfinished last line is not damage
            bad.append(f"line {i}: {why}")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        _warn_once(path, f"'{path}': skipped {len(bad)} damaged line(s), e.g. {bad[0]}{more}")
    return out


_WARNED: set = set()  # the files read_metrics has warned about (once per file and process)


def _warn_once(path: Path, message: str) -> None:
    key = str(path.resolve())
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


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
    if (folder / "README.md").is_file():  # a model folder with a card: its weights are checked against it
        from ganforge import models

        models.verify(folder)
    return Checkpoint(folder, read_json(folder / "config.json"), read_json(folder / "meta.json"))


def weights_path(folder: PathLike, network: str) -> Path:
    return Path(folder) / f"{network}{WEIGHTS_SUFFIX}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def umask() -> int:
    """This process's umask (read without changing it where the system says it: Linux's /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_mode(path: PathLike, folder: bool = False) -> None:
    """Give a file (or folder) the permissions an ordinary new one gets, 0666 (0777) less the umask:
    what ``tempfile.mkstemp`` (0600), ``mkdtemp`` (0700) and safetensors (0600) make is private, which a
    deploy folder served by another account, or a run folder shared with a group, cannot read."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


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
    ``weights`` maps each network's name to its state dict (one ``<name>.safetensors`` each).

    A write that fails (a full disk, a missing permission) removes its temporary folder, leaves the
    checkpoints already there as they were and raises :class:`WriteError` naming the cause."""
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, sd in weights.items():
            path = weights_path(tmp, name)
            save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, str(path), metadata={"format": "pt"})
            normal_mode(path)  # safetensors writes 0600
            _fsync_file(path)
        write_json(tmp / "config.json", config)
        torch.save(state, tmp / "state.pt")
        _fsync_file(tmp / "state.pt")
        write_json(tmp / "meta.json", {**meta, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        _fsync_file(tmp / "meta.json")
    except (OSError, RuntimeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(
            f"cannot write checkpoint '{folder}': {write_failure(folder.parent, e)}; the checkpoints "
            f"already in '{folder.parent}' are intact"
        ) from None
    if folder.exists():  # replace: move the old one aside first so the swap is two renames
        old = folder.parent / f".old-{folder.name}-{os.getpid()}"  # a crash between them: see recover()
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


def write_failure(where: PathLike, e: BaseException) -> str:
    """Why a write under ``where`` failed, in words: a full disk is said plainly (torch reports it as
    ``enforce fail at inline_container.cc``), else the system's message."""
    free = None
    try:
        free = shutil.disk_usage(Path(where) if Path(where).exists() else Path(where).parent).free
    except OSError:
        pass
    full = (
        getattr(e, "errno", None) == errno.ENOSPC
        or "No space left" in str(e)
        or (free is not None and free < LOW_SPACE)
    )
    if full:
        return f"the disk is full ({(free or 0) / 2**20:.0f} MB free)"
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}" + (f" ('{e.filename}')" if e.filename else "")
    return str(e).splitlines()[0] if str(e) else type(e).__name__


LOW_SPACE = 16 * 2**20  # bytes free under which a failed write is reported as a full disk


def list_checkpoints(run_dir: PathLike) -> List[Path]:
    """Complete step checkpoints of a run, oldest first."""
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    found = [p for p in ck.iterdir() if p.is_dir() and STEP_RE.match(p.name) and (p / "meta.json").is_file()]
    return sorted(found, key=lambda p: int(STEP_RE.match(p.name).group(1)))


def prune_checkpoints(run_dir: PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints. Each is first renamed to ``.trash-*`` (one
    atomic step), so a crash while deleting never leaves a half-deleted ``step-*`` folder behind."""
    for p in list_checkpoints(run_dir)[:-keep]:
        trash = p.parent / f".trash-{p.name}-{os.getpid()}"
        os.rename(p, trash)
        shutil.rmtree(trash, ignore_errors=True)
    for p in (Path(run_dir) / "checkpoints").glob(".tmp-step-*"):  # leftovers of a crash while writing
        shutil.rmtree(p, ignore_errors=True)


def recover(run_dir: PathLike) -> List[str]:
    """Tidy what a crash can leave in ``checkpoints/`` and say what was done (called when training
    starts or resumes):

    - a named checkpoint (``good``, ``best``) replaced by a crash between its two renames: the new
      complete copy (``.tmp-NAME-*`` with its meta.json) or else the old one (``.old-NAME-*``) is
      renamed back into place;
    - half-deleted pruned checkpoints (``.trash-*``), unfinished writes and replaced copies are removed.
    """
    ck = Path(run_dir) / "checkpoints"
    done: List[str] = []
    if not ck.is_dir():
        return done
    leftovers = sorted(p for p in ck.iterdir() if p.name.startswith((".tmp-", ".old-", ".trash-")))
    for prefix in (".tmp-", ".old-"):  # the newer copy first
        for p in leftovers:
            m = re.match(rf"^{re.escape(prefix)}(.+)-\d+$", p.name)
            if (
                m
                and p.exists()
                and not STEP_RE.match(m.group(1))
                and (p / "meta.json").is_file()
                and not (ck / m.group(1)).exists()
            ):
                os.rename(p, ck / m.group(1))
                done.append(f"restored checkpoints/{m.group(1)} from {p.name}")
    for p in leftovers:
        if p.exists():
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    return done


def resume_candidates(run_dir: PathLike) -> List[Path]:
    """The complete checkpoints a run can resume from, newest step first: every ``step-*`` folder,
    then ``good`` and ``best`` (both written whole) when they are not older than what is left."""
    ck = Path(run_dir) / "checkpoints"
    found = list(reversed(list_checkpoints(run_dir)))
    for name in ("good", "best"):
        if (ck / name / "meta.json").is_file():
            found.append(ck / name)

    def step(p: Path) -> int:
        try:
            return int(read_json(p / "meta.json").get("step", -1))
        except RunError:
            return -1

    return sorted(found, key=lambda p: (-step(p), p.name.startswith("step-") is False))


def find_checkpoint(run_dir: PathLike, which: str = "last") -> Path:
    """``last``, ``best``, a step number, or a path to a checkpoint folder, of a run folder (or of a
    checkpoint folder or built-in model, which are their own only checkpoint)."""
    run_dir = resolve(run_dir)
    which = str(which)
    direct = Path(which)
    if which not in ("last", "best") and (direct / "meta.json").is_file():
        return direct
    if (run_dir / "meta.json").is_file():  # a checkpoint folder (or a built-in model) given as the run
        if which == "last":
            return run_dir
        if not is_run_dir(run_dir):
            raise RunError(
                f"'{run_dir}' is a single checkpoint (a model folder), not a run: it has no checkpoint {which!r}; "
                "leave --checkpoint out"
            )
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
    """A JSON object file of a run (meta.json, config.json), or a one-line :class:`RunError`."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not UTF-8, not JSON
        raise RunError(f"cannot read '{path}': {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(d, dict):
        raise RunError(f"cannot read '{path}': expected a JSON object, got a {type(d).__name__}")
    return d


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
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only load failed" in str(e):
            raise RunError(
                f"refused to load '{path}': it holds Python objects that could run code when loaded, "
                "which ganforge never writes (the file was replaced or tampered with); training state "
                "is only read as plain tensors"
            ) from None
        raise RunError(f"cannot read training state '{path}': {str(e).splitlines()[0]}") from None
    except FileNotFoundError:
        raise RunError(f"checkpoint '{folder}' has no state.pt") from None
    except Exception as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunError(f"cannot read training state '{path}': the file is damaged or cut short ({why})") from None


def load_network(net: nn.Module, folder: PathLike, network: str) -> nn.Module:
    """Load ``<network>.safetensors`` of a checkpoint into ``net``; a mismatch (a config.json that does
    not match the weights) is one line naming the first tensor that differs."""
    loaded = load_weights(folder, network)
    expected = net.state_dict()
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    wrong = [k for k in expected if k in loaded and tuple(loaded[k].shape) != tuple(expected[k].shape)]
    where = f"'{weights_path(folder, network)}'"
    if wrong:
        k = wrong[0]
        raise RunError(
            f"weights {where} do not match the network its config.json describes: {k} has shape "
            f"{list(loaded[k].shape)}, the network expects {list(expected[k].shape)}"
            f"{f' ({len(wrong) - 1} more tensors differ)' if len(wrong) > 1 else ''}"
        )
    if missing or unexpected:
        what = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}") + (
            f" ({len(missing) + len(unexpected) - 1} more)" if len(missing) + len(unexpected) > 1 else ""
        )
        raise RunError(f"weights {where} do not match the network its config.json describes: {what}")
    net.load_state_dict(loaded)
    return net


def step_of(folder: PathLike) -> Optional[int]:
    m = STEP_RE.match(Path(folder).name)
    return int(m.group(1)) if m else None


def sha256_file(path: Union[str, Path]) -> str:
    """The SHA-256 of a file's bytes, as hex (weights provenance, export manifests, model cards)."""
    from ganforge.models.card import sha256_file as sha

    return sha(path)
