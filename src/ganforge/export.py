"""Export a run's inference networks for deployment without ganforge: ONNX or a ``torch.export``
program (``.pt2``), with a JSON manifest next to them.

    from ganforge.export import export_run
    manifest = export_run("runs/00001-mnist-dcgan-cond", "onnx", "deploy/")
    # deploy/generator.onnx, deploy/manifest.json

The networks, their example inputs and dynamic dims come from the task's handle
(:meth:`ganforge.tasks.base.Handle.export_networks`). Both formats come from one ``torch.export`` trace
in eval mode; ONNX uses PyTorch's dynamo exporter and stores the manifest entry in its metadata (key
``ganforge``). Needs ``pip install 'ganforge[export]'`` for ONNX. Manifest format: ``docs/export.md``.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ganforge import runs
from ganforge.errors import GanforgeError, WriteError
from ganforge.tasks.base import ExportNet, Handle

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}  # format -> file suffix
ONNX_NEEDS = ("onnx", "onnxscript")  # what the ONNX exporter imports (onnxruntime only runs the files)
MANIFEST = "manifest.json"

__all__ = ["FORMATS", "ExportError", "export_run", "export_handle", "export_network", "resolve_shape", "check_format"]


class ExportError(GanforgeError, ValueError):
    """A run, network or option that cannot be exported as asked; the message says what to change."""


# ------------------------------------------------------------------------------------------
# checks


def check_format(fmt: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """The formats of ``fmt`` (``"onnx"``, ``"onnx,torch-export"`` or a sequence) if each is known and what it
    needs is installed, else a one-line :class:`ExportError`."""
    fmts = tuple(f.strip() for f in fmt.split(",")) if isinstance(fmt, str) else tuple(fmt)
    for f in fmts or ("",):
        if f not in FORMATS:
            raise ExportError(f"--format {f!r}: choose one of: {', '.join(FORMATS)} (or both, comma-separated)")
    if "onnx" in fmts:
        missing = [m for m in ONNX_NEEDS if importlib.util.find_spec(m) is None]
        if missing:
            raise ExportError(f"--format onnx needs {', '.join(missing)}: pip install 'ganforge[export]'")
    return tuple(dict.fromkeys(fmts))


def _out_folder(out: Union[str, Path]) -> Path:
    """``--out`` as a Path, after checking that it is not a file and that the export can be written there:
    in a new folder beside it (swapped in at the end) or, where only the folder itself is writable, in it."""
    p = Path(out).expanduser()
    if p.exists() and not p.is_dir():
        raise WriteError(
            f"cannot write the export to '{p}': it is a file; --out is a folder (one file per network and {MANIFEST})"
        )
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot write the export to '{p}': {e.strerror or e}") from None
    if p.is_dir() and not os.access(p, os.W_OK):
        raise WriteError(f"cannot write the export to '{p}': the folder is read-only")
    if not p.is_dir() and not os.access(p.parent, os.W_OK):
        raise WriteError(f"cannot write the export to '{p}': '{p.parent}' is read-only")
    return p


def _old_export_files(folder: Path, names: Sequence[str]) -> List[Path]:
    """The files of an earlier export in ``folder``: those its manifest lists, the manifest itself, and any
    ``<network>.onnx`` / ``.pt2`` of the networks being exported now (an export whose manifest was lost)."""
    found = [folder / MANIFEST]
    try:
        old = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        for entry in (old.get("networks") or {}).values():
            found += [folder / str(f) for f in (entry.get("files") or {}).values()]
    except (OSError, ValueError, AttributeError, TypeError):  # no manifest, or not one of ours
        pass
    found += [folder / f"{n}{suffix}" for n in names for suffix in FORMATS.values()]
    out = []
    for f in found:  # only plain files directly in the folder, once each
        if f.parent == folder and f.is_file() and not f.is_symlink() and f not in out:
            out.append(f)
    return out


def _install(built: Path, dest: Path, names: Sequence[str]) -> None:
    """Put the export built in ``built`` at ``dest`` so that no reader sees two exports mixed: a new
    folder is renamed into place; a folder that holds only an earlier export is swapped whole (two
    renames); a folder that also holds other files keeps them, loses the earlier export's files (its
    manifest first) and gets the new files one rename each, the manifest last."""
    if not dest.exists() and built.parent == dest.parent:
        os.rename(built, dest)
        return
    old = _old_export_files(dest, names) if dest.is_dir() else []
    others = [p for p in dest.iterdir() if p not in old] if dest.is_dir() else []
    if built.parent == dest.parent and not dest.is_symlink() and not others:
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.rename(dest, aside / dest.name)
        try:
            os.rename(built, dest)
        except OSError:
            os.rename(aside / dest.name, dest)  # the earlier export back in place
            os.rmdir(aside)
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return
    new = sorted(p.name for p in built.iterdir())
    for f in sorted(old, key=lambda f: f.name != MANIFEST):  # the manifest goes first: none describes a mix
        if f.name not in new or f.name == MANIFEST:
            f.unlink()
    for name in sorted(new, key=lambda n: n == MANIFEST):  # ... and comes back last
        os.replace(built / name, dest / name)
    shutil.rmtree(built, ignore_errors=True)


def _about_paths(handle: Handle) -> Tuple[Optional[str], str]:
    """The run and checkpoint for the manifest, without local paths: the run folder's name and the
    checkpoint's path inside it (``checkpoints/step-00005000``), or the checkpoint folder's (model's) name."""
    ck = Path(handle.checkpoint_path)
    if handle.run_dir is None:
        return None, ck.name
    run = Path(handle.run_dir)
    try:
        return run.name, ck.relative_to(run).as_posix()
    except ValueError:
        return run.name, ck.name


# ------------------------------------------------------------------------------------------
# shapes


def resolve_shape(shape: Sequence[Union[int, str]], **dims: int) -> tuple:
    """A manifest shape with its names filled in: ``resolve_shape(["batch", 1, "4*height"], batch=2, height=7)``
    -> ``(2, 1, 28)``. Entries are ints, a dim name, or ``K*name``."""
    out = []
    for d in shape:
        if isinstance(d, int):
            out.append(d)
            continue
        m = re.fullmatch(r"(?:(\d+)\*)?([a-z_]+)", str(d))
        if not m or m.group(2) not in dims:
            raise ExportError(f"shape entry {d!r}: expected an int, a dim name ({', '.join(dims)}) or K*name")
        out.append(int(m.group(1) or 1) * int(dims[m.group(2)]))
    return tuple(out)


def _input_shapes(net: ExportNet) -> List[List[Union[int, str]]]:
    out = []
    for name, x in zip(net.input_names, net.inputs):
        s: List[Union[int, str]] = ["batch", *(int(v) for v in x.shape[1:])]
        if name in net.spatial:
            s[-2:] = ["height", "width"]
        out.append(s)
    return out


def _output_shapes(net: ExportNet, outputs: Sequence[torch.Tensor], hw: Optional[tuple]) -> List[List[Union[int, str]]]:
    shapes = []
    for name, y in zip(net.output_names, outputs):
        if name in net.output_shapes:
            shapes.append(list(net.output_shapes[name]))
            continue
        s: List[Union[int, str]] = ["batch", *(int(v) for v in y.shape[1:])]
        if hw is not None and y.dim() >= 4 and tuple(y.shape[-2:]) == hw:
            s[-2:] = ["height", "width"]
        shapes.append(s)
    return shapes


def _dynamic_shapes(net: ExportNet) -> tuple:
    """``torch.export`` dynamic shapes: dim 0 of every input; H and W of the spatial inputs, shared by them
    (``multiple * Dim`` when the network needs multiples, so the program checks it)."""
    from torch.export import Dim

    batch = Dim("batch")
    if net.multiple > 1:
        h, w = net.multiple * Dim("height_blocks"), net.multiple * Dim("width_blocks")
    else:
        h = w = None
    spec = []
    for name, x in zip(net.input_names, net.inputs):
        d: Dict[int, Any] = {0: batch}
        if name in net.spatial:
            d[x.dim() - 2] = h if h is not None else Dim.DYNAMIC
            d[x.dim() - 1] = w if w is not None else Dim.DYNAMIC
        spec.append(d)
    return tuple(spec)


def _dim_ranges(ep, net: ExportNet) -> Dict[str, Dict[str, int]]:
    """Per dynamic dim: its smallest value in the traced program (and the multiple it must be of)."""
    import sympy

    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    users = [placeholders[n] for n in ep.graph_signature.user_inputs if n in placeholders]
    wanted = {"batch": (0, 0)}
    for i, name in enumerate(net.input_names):
        if name in net.spatial:
            nd = net.inputs[i].dim()
            wanted.update({"height": (i, nd - 2), "width": (i, nd - 1)})
            break
    out: Dict[str, Dict[str, int]] = {}
    for dim, (i, axis) in wanted.items():
        entry: Dict[str, int] = {"min": 1}
        try:
            expr = users[i].meta["val"].shape[axis].node.expr
            k, sym = (int(expr.args[0]), expr.args[1]) if isinstance(expr, sympy.Mul) else (1, expr)
            lower = int(ep.range_constraints[sym].lower)
            entry["min"] = max(1, k * lower)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            pass
        if dim != "batch" and net.multiple > 1:
            entry["multiple"] = int(net.multiple)
        out[dim] = entry
    return out


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


# ------------------------------------------------------------------------------------------
# one network


def _write_onnx(ep, net: ExportNet, path: Path, shapes: Dict[str, list], entry: Dict[str, Any]) -> int:
    """Write ``ep`` as one ONNX file with readable dim names and ``entry`` in its metadata; returns its opset."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # optimize=False: onnxscript 0.7's rewriter matches constants with abs_tol=1e-8, so its "x + 0 -> x"
        # rule deleted the "+ 1e-8" of pixel_norm (the completion network then differed by 0.13 on a blank
        # image). ONNX Runtime folds constants itself when it loads the file.
        program = torch.onnx.export(
            ep,
            net.inputs,
            input_names=list(net.input_names),
            output_names=list(net.output_names),
            dynamo=True,
            external_data=False,
            verbose=False,
            report=False,
            optimize=False,
        )
    model = program.model_proto
    for value in [*model.graph.input, *model.graph.output]:  # readable dim names for deployers
        if value.name in shapes:
            for d, s in zip(value.type.tensor_type.shape.dim, shapes[value.name]):
                if isinstance(s, str):
                    d.dim_param = s
                else:
                    d.dim_value = int(s)
    meta = model.metadata_props.add()
    meta.key, meta.value = "ganforge", json.dumps(entry)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def export_network(
    net: ExportNet, fmt: Union[str, Sequence[str]], folder: Union[str, Path], about: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]:
    """Export one network into ``folder`` as ``<name>.onnx`` and/or ``<name>.pt2`` (``fmt``: see
    :func:`check_format`; both come from one trace); returns its manifest entry. ``about`` (run, step, ...)
    is stored with each file (ONNX metadata key ``ganforge`` / the ``.pt2``'s extra file ``ganforge.json``)."""
    fmts = check_format(fmt)
    folder = Path(folder)
    if len(net.input_names) != len(net.inputs) or not set(net.spatial) <= set(net.input_names):
        raise ExportError(
            f"network {net.name!r}: {len(net.inputs)} example inputs but input names "
            f"{list(net.input_names)} (spatial: {list(net.spatial)})"
        )
    if any(x.dim() == 0 or x.shape[0] < 2 for x in net.inputs):
        raise ExportError(
            f"network {net.name!r}: example inputs need a batch of 2 or more (a batch of 1 would be "
            "fixed in the exported graph)"
        )
    module = net.module.eval()
    with torch.no_grad():
        outputs = module(*net.inputs)
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    if len(outputs) != len(net.output_names):
        raise ExportError(
            f"network {net.name!r} returns {len(outputs)} tensors but names {len(net.output_names)} "
            f"outputs ({', '.join(net.output_names)})"
        )
    hw = None
    for name, x in zip(net.input_names, net.inputs):
        if name in net.spatial:
            hw = tuple(int(v) for v in x.shape[-2:])
            break
    in_shapes, out_shapes = _input_shapes(net), _output_shapes(net, outputs, hw)
    example = {"batch": int(net.inputs[0].shape[0])}
    if hw is not None:
        example.update(height=hw[0], width=hw[1])
    for name, shape, y in zip(net.output_names, out_shapes, outputs):
        if resolve_shape(shape, **example) != tuple(y.shape):
            raise ExportError(
                f"network {net.name!r}: output {name!r} has shape {tuple(y.shape)}, not the declared "
                f"{shape} at {example}"
            )
    try:
        ep = torch.export.export(module, tuple(net.inputs), dynamic_shapes=_dynamic_shapes(net), strict=False)
    except Exception as e:  # torch raises many types here; the first line says what could not be traced
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"network {net.name!r} cannot be exported with dynamic batch"
            f"{' and height/width' if net.spatial else ''}: {first}"
        ) from None
    entry: Dict[str, Any] = {
        "files": {f: f"{net.name}{FORMATS[f]}" for f in fmts},
        "inputs": [
            {"name": n, "dtype": _dtype(x), "shape": s, "values": net.values.get(n, "")}
            for n, x, s in zip(net.input_names, net.inputs, in_shapes)
        ],
        "outputs": [
            {"name": n, "dtype": _dtype(y), "shape": s, "values": net.values.get(n, "")}
            for n, y, s in zip(net.output_names, outputs, out_shapes)
        ],
        "dims": _dim_ranges(ep, net),
        "info": dict(net.info),
    }
    stored = {**dict(about or {}), "network": net.name, **{k: v for k, v in entry.items() if k != "files"}}
    entry["sha256"] = {}
    for f in fmts:
        path = folder / entry["files"][f]
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        try:
            if f == "onnx":
                shapes = {d["name"]: d["shape"] for d in entry["inputs"] + entry["outputs"]}
                entry["onnx_opset"] = _write_onnx(ep, net, tmp, shapes, stored)
            else:
                torch.export.save(ep, str(tmp), extra_files={"ganforge.json": json.dumps(stored)})
            os.replace(tmp, path)
        except OSError as e:
            raise WriteError(f"cannot write '{path}': {e.strerror or e}") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        entry["sha256"][f] = runs.sha256_file(path)
    return entry


# ------------------------------------------------------------------------------------------
# a handle, a run


def export_handle(handle: Handle, fmt: Union[str, Sequence[str]], out: Union[str, Path]) -> Dict[str, Any]:
    """Export every network of a loaded handle into the folder ``out`` in ``fmt`` (one format or several:
    see :func:`check_format`); returns the manifest (also written as ``out/manifest.json``).

    The export is built in a new folder beside ``out`` and then put in its place, so an earlier export
    there is replaced whole (files of other formats or networks included) and a failure leaves it as it
    was; other files in ``out`` are kept. Files get the permissions of any new file (0644 under the usual
    umask), and the manifest names the run and checkpoint without local paths."""
    fmts = check_format(fmt)
    dest = _out_folder(out)
    nets = handle.export_networks()
    names = [n.name for n in nets]
    if len(set(names)) != len(names):
        raise ExportError(f"the {handle.task} handle lists networks with the same name: {', '.join(names)}")
    run, checkpoint = _about_paths(handle)
    manifest: Dict[str, Any] = {
        "formats": list(fmts),
        "task": handle.task,
        "run": run,
        "checkpoint": checkpoint,
        "step": handle.step,
        "kimg": handle.kimg,
        "ema": bool(handle.ema),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__.split("+")[0],
        "networks": {},
    }
    about = {k: manifest[k] for k in ("task", "run", "checkpoint", "step", "kimg", "ema")}
    beside = os.access(dest.parent, os.W_OK)  # else (only the folder is writable) the export is built inside it
    try:
        built = Path(tempfile.mkdtemp(prefix=f".{dest.name}.export-", dir=dest.parent if beside else dest))
    except OSError as e:
        raise WriteError(f"cannot write the export to '{dest}': {e.strerror or e}") from None
    try:
        for net in nets:
            manifest["networks"][net.name] = export_network(net, fmts, built, about)
        (built / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for f in built.iterdir():
            runs.normal_mode(f)
        runs.normal_mode(built, folder=True)  # mkdtemp makes it 0700
        _install(built, dest, names)
    except OSError as e:
        raise WriteError(f"cannot write the export to '{dest}': {e.strerror or e}") from None
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return manifest


def export_run(
    run: Union[str, Path],
    fmt: Union[str, Sequence[str]] = "onnx",
    out: Union[str, Path] = "export",
    *,
    checkpoint: str = "last",
    ema: bool = True,
) -> Dict[str, Any]:
    """Export the inference network(s) of a run folder (or checkpoint folder) into the folder ``out``:
    ``<network>.onnx`` / ``.pt2`` and ``manifest.json``. ``checkpoint``: ``last``, ``best``, a step or a
    checkpoint folder; ``ema``: the moving-average weights (what samples show) or the raw ones."""
    from ganforge.api import load

    check_format(fmt)
    handle = load(run, checkpoint=checkpoint, ema=ema, device="cpu")
    return export_handle(handle, fmt, out)
