"""``evaluate``: IS / FID / KID / precision-recall of generated images against a reference.

Features are extracted once per image set and every metric is derived from them with torch-fidelity's
functions (:mod:`ganforge.metrics.compute`); reference features are cached on disk
(:mod:`ganforge.metrics.refstats`). This module never reads a run folder: ``ganforge.metrics.evaluate``
(= :func:`ganforge.api.evaluate`) loads a run's generator and passes the handle here. Python::

    from ganforge.metrics import evaluate
    r = evaluate("runs/0003-mnist-dcgan", features="mnist", num_samples=10000, floor=True)
    r["fid"], r["floor"]["fid"], r["coverage"]["classes_covered"]
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ganforge.metrics import compute as C
from ganforge.metrics.errors import EvalError
from ganforge.metrics.features import FeatureSpace, get_feature_space
from ganforge.metrics.refstats import reference_features
from ganforge.metrics.sources import Statistics, is_stats_file, load_images, load_stats
from ganforge.options import with_overrides

DEFAULT_NUM_SAMPLES = 10000
SAMPLE_CHUNK = 10000  # generated images are drawn and featurised in chunks of this many (seed + i * 1000003)
FLOOR_KIND = "real vs real: two disjoint random subsets of the reference, m images each"
IS_FLOOR_KIND = "IS of m real reference images (a reference value, not a floor)"


@dataclasses.dataclass
class EvalOptions:
    """What :func:`evaluate` measures and how: the metrics, the sample count, the feature space (by name,
    or ``feature_space`` already made), the seed, the real-vs-real floor, and where features are computed
    and cached."""

    metrics: Union[str, Sequence[str]] = "fid,kid,is,pr"
    num_samples: Optional[int] = None  # images to generate (default 10,000), or the first N of a fixed set
    features: str = "inception"  # a name in FEATURES
    seed: int = 0
    floor: bool = False  # also each metric between two disjoint real subsets of the same size
    coverage: bool = True  # class coverage, for a domain classifier's features
    batch_size: int = 256
    device: str = "cpu"
    inception_weights: Optional[str] = None
    inception_sha256: Optional[str] = None
    cache: bool = True  # reference features cached on disk
    cache_dir: Union[str, Path, None] = None
    feature_space: Optional[FeatureSpace] = None  # overrides ``features`` when given


@dataclasses.dataclass
class _Fake:
    description: str
    images: Optional[torch.Tensor] = None  # fixed set
    sampler: Optional[Callable[[int, int], torch.Tensor]] = None  # (n, seed) -> uint8
    handle: Any = None  # GeneratorHandle when from a run


@dataclasses.dataclass
class _Real:
    label: str
    images: Optional[torch.Tensor] = None
    stats: Optional[Statistics] = None


@dataclasses.dataclass
class _RefSide:
    """The reference's statistics and features (features and logits are None for a mu/sigma file)."""

    stats: Dict[str, Any]  # {"mu", "sigma"}
    features: Optional[torch.Tensor]
    logits: Optional[torch.Tensor]
    sha256: Optional[str]
    num: int
    shape: Optional[List[Any]]  # [C, H, W], or None when unknown
    cache: Optional[str]


@dataclasses.dataclass
class _FakeSide:
    """The generated images' features and logits, their shape and count."""

    features: torch.Tensor
    logits: torch.Tensor
    shape: List[int]  # [C, H, W]
    num: int


def evaluate(
    fake,
    reference=None,
    *,
    options: Optional[EvalOptions] = None,
    out: Union[str, Path, None] = None,
    log: Optional[Callable[[str], None]] = None,
    **overrides: Any,
) -> Dict[str, Any]:
    """Measure generated images against a reference; returns the result object.

    ``fake``: a ``GeneratorHandle``, a uint8 tensor [N, C, H, W], an ``ImageData``, a folder of images, an
    ``.npz`` sample file, or a callable ``n -> uint8 [n, C, H, W]``. ``reference``: ``"train"`` / ``"test"``
    (the run's dataset and preprocessing, that split), an ``ImageData``, a uint8 tensor, a folder, an
    ``.npz`` sample file or an ``.npz`` statistics file.

    ``options``: an :class:`EvalOptions`; each of its fields may also be given as a keyword
    (``num_samples=5000``, ``floor=True``), replacing the options' value.
    ``out``: write the result as JSON there. Raises :class:`EvalError` with a one-line message for
    anything the user can fix (missing weights, bad paths, not a run, channel mismatch...).
    """
    t_start = time.perf_counter()
    o = with_overrides(EvalOptions, options, overrides, "evaluate")
    say = log or (lambda msg: None)
    wanted = C.parse_metrics(o.metrics)
    if o.num_samples is not None and o.num_samples < 2:
        raise EvalError(f"--samples must be at least 2, got {o.num_samples}")
    timings: Dict[str, float] = {}
    notes: List[str] = []
    skipped: Dict[str, str] = {}

    fk, rl, space = _resolve_sources(fake, reference, o, timings)
    t = time.perf_counter()
    ref = _reference_side(rl, space, o, say)
    timings["reference_s"] = time.perf_counter() - t
    t = time.perf_counter()
    fks, t_sample = _fake_side(fk, space, o, notes, say)
    timings["sample_s"] = t_sample
    timings["fake_features_s"] = time.perf_counter() - t - t_sample
    _check_shapes(ref.shape, fks.shape, notes)

    t = time.perf_counter()
    values = _metric_values(wanted, fks, ref, o.seed, skipped)
    timings["metrics_s"] = time.perf_counter() - t
    floors: Optional[Dict[str, Any]] = None
    if o.floor:
        t = time.perf_counter()
        floors = _floors(wanted, ref.features, ref.logits, fks.num, o.seed, notes, skipped)
        timings["floor_s"] = time.perf_counter() - t
    cov = _coverage(fks, ref, space, floors, notes) if o.coverage else None

    prov = _provenance(space, fk, rl, ref, fks, o)
    result = _result(wanted, values, floors, cov, skipped, notes, prov)
    timings["total_s"] = time.perf_counter() - t_start
    result["timings"] = {k: round(v, 3) for k, v in timings.items()}
    result = _clean(result)
    if out is not None:
        write_json(result, out)
    return result


# ---- the steps of evaluate ---------------------------------------------------------------


def _resolve_sources(fake, reference, o: EvalOptions, timings: Dict[str, float]):
    """(fake source, reference source, feature space): what is compared, and in which features."""
    fk = _resolve_fake(fake)
    rl = _resolve_reference(reference, fk)
    t = time.perf_counter()
    space = o.feature_space or get_feature_space(
        o.features,
        weights_path=o.inception_weights if o.features == "inception" else None,
        sha256=o.inception_sha256,
        device=o.device,
    )
    timings["load_extractor_s"] = time.perf_counter() - t
    return fk, rl, space


def _reference_side(rl: _Real, space: FeatureSpace, o: EvalOptions, say: Callable[[str], None]) -> _RefSide:
    """The reference's statistics: read from a statistics file (checked against ``space``), or
    computed from its images (cached on disk)."""
    if rl.stats is not None:
        st = rl.stats
        if st.meta.get("features") and st.meta["features"] != space.name:
            raise EvalError(
                f"statistics file {st.path} was computed with features {st.meta['features']!r}, "
                f"not {space.name!r}; use --features {st.meta['features']} or other statistics"
            )
        if st.mu.shape[0] != space.feature_dim:
            raise EvalError(
                f"statistics file {st.path} has {st.mu.shape[0]}-d statistics but features "
                f"{space.name!r} give {space.feature_dim}-d features; use statistics from the same extractor"
            )
        shape = st.meta.get("shape", [None] * 4)[1:] if st.meta.get("shape") else None
        return _RefSide(
            {"mu": st.mu, "sigma": st.sigma},
            st.features,
            st.logits,
            st.meta.get("data_sha256"),
            st.num_samples,
            shape,
            st.path,
        )
    _check_images(rl.images, f"reference {rl.label}")
    say(f"reference: {rl.label}: {len(rl.images)} images, features {space.name}")
    ref = reference_features(rl.images, space, batch_size=o.batch_size, cache=o.cache, cache_dir=o.cache_dir)
    if ref.from_cache:
        say(f"reference statistics loaded from cache {ref.path}")
    return _RefSide(
        ref.stats,
        ref.features,
        ref.logits,
        ref.data_sha256,
        ref.num_samples,
        list(rl.images.shape[1:]),
        str(ref.path) if ref.path else None,
    )


def _fake_side(fk: _Fake, space: FeatureSpace, o: EvalOptions, notes: List[str], say) -> Tuple[_FakeSide, float]:
    """The generated images' features (sampled from the generator, or read from a fixed set), and the
    seconds spent sampling."""
    out, shape, n, t_sample = _fake_features(fk, space, o.num_samples, o.seed, o.batch_size, notes, say)
    return _FakeSide(out["features"], out["logits"], shape, n), t_sample


def _check_shapes(real_shape: Optional[List[Any]], fake_shape: List[int], notes: List[str]) -> None:
    """Channels must agree between the two sides; differing sizes are only noted."""
    if not real_shape or real_shape[0] is None:
        return
    if int(real_shape[0]) != int(fake_shape[0]):
        raise EvalError(
            f"channels differ: generated images have {fake_shape[0]} channel(s), the reference has {real_shape[0]}; "
            "compare like with like (e.g. a reference with the run's data.channels)"
        )
    if list(real_shape[1:]) != list(fake_shape[1:]):
        notes.append(
            f"image sizes differ: generated {fake_shape[1]}x{fake_shape[2]}, reference "
            f"{real_shape[1]}x{real_shape[2]}; both are resized by the feature extractor"
        )


def _metric_values(
    wanted, fks: _FakeSide, ref: _RefSide, seed: int, skipped: Dict[str, str]
) -> Dict[str, Dict[str, Any]]:
    """{metric: {"value", "std", ...}} for the wanted metrics; those the reference cannot give go to ``skipped``."""
    ff, fl = fks.features, fks.logits
    values: Dict[str, Dict[str, Any]] = {}
    if "fid" in wanted:
        values["fid"] = {"value": C.fid_from_statistics(C.fid_statistics(ff), ref.stats)}
    for m in ("kid", "pr"):
        if m in wanted and ref.features is None:
            skipped[m] = "the reference is a statistics file without features (mu/sigma only)"
    if "kid" in wanted and ref.features is not None:
        k = C.kid(ff, ref.features, seed=seed)
        values["kid"] = {
            "value": k["mean"],
            "std": k["std"],
            "kid_subset_size": k["subset_size"],
            "kid_subsets": k["subsets"],
        }
    if "is" in wanted:
        s = C.inception_score(fl, seed=seed)
        values["is"] = {"value": s["mean"], "std": s["std"], "isc_splits": s["splits"]}
    if "pr" in wanted and ref.features is not None:
        p = C.precision_recall(ff, ref.features)
        values["precision"] = {"value": p["precision"], "f_score": p["f_score"], "prc_neighborhood": p["neighborhood"]}
        values["recall"] = {"value": p["recall"], "f_score": p["f_score"], "prc_neighborhood": p["neighborhood"]}
    return values


def _coverage(
    fks: _FakeSide, ref: _RefSide, space: FeatureSpace, floors: Optional[Dict[str, Any]], notes: List[str]
) -> Optional[Dict[str, Any]]:
    """Class coverage of the generated images (domain-classifier features only), with the real floor's KL."""
    if not space.is_domain_classifier:
        return None
    if ref.logits is None:
        notes.append(
            "coverage: the reference has no classifier outputs (statistics only): real class distribution unknown"
        )
        return None
    cov = C.coverage(fks.logits, ref.logits, space.class_names)
    if floors is not None and floors.get("_idx") is not None:
        a, b = floors["_idx"]
        cov["kl_floor"] = C.coverage(ref.logits[a], ref.logits, space.class_names)["kl_fake_to_real"]
    return cov


def _provenance(
    space: FeatureSpace, fk: _Fake, rl: _Real, ref: _RefSide, fks: _FakeSide, o: EvalOptions
) -> Dict[str, Any]:
    """Where the numbers come from: extractor, both sides, checkpoint, seed, device, versions, time."""
    handle = fk.handle
    real_shape = ref.shape
    return {
        **space.describe(),
        "num_fake": fks.num,
        "num_real": ref.num,
        "reference": rl.label,
        "reference_sha256": ref.sha256,
        "reference_cache": ref.cache,
        "fake": fk.description,
        "fake_shape": [int(v) for v in fks.shape],
        "real_shape": [int(v) for v in real_shape] if real_shape and real_shape[0] is not None else None,
        "seed": int(o.seed),
        "checkpoint": str(handle.checkpoint_path) if handle is not None else None,
        "step": int(handle.step) if handle is not None else None,
        "kimg": float(getattr(handle, "kimg", 0.0)) if handle is not None else None,
        "run_dir": str(handle.run_dir) if handle is not None and handle.run_dir is not None else None,
        "ema": bool(getattr(handle, "ema", False)) if handle is not None else None,
        "device": str(o.device),
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _result(wanted, values, floors, cov, skipped, notes, prov) -> Dict[str, Any]:
    """The result object: one value (and std) per metric, a record per metric with its provenance, and
    the floor, coverage, skipped metrics, notes and provenance."""
    if floors:
        floors.pop("_idx", None)  # internal: the subsets used
    records = []
    for name, v in values.items():
        rec = {"metric": name, "value": v["value"], "std": v.get("std")}
        if floors is not None:
            rec["floor"] = floors.get(name)
            rec["floor_num_samples"] = floors.get("num_samples")
            rec["floor_kind"] = IS_FLOOR_KIND if name == "is" else FLOOR_KIND
        rec.update({k: val for k, val in v.items() if k not in ("value", "std")})
        rec.update(
            {
                k: prov[k]
                for k in (
                    "features",
                    "weights_sha256",
                    "num_real",
                    "num_fake",
                    "reference",
                    "resize",
                    "seed",
                    "checkpoint",
                    "step",
                )
            }
        )
        records.append(rec)
    result: Dict[str, Any] = {}
    for name, v in values.items():
        result[name] = v["value"]
        if v.get("std") is not None:
            result[f"{name}_std"] = v["std"]
    result.update(
        {
            "metrics": list(wanted),
            "results": records,
            "floor": floors,
            "coverage": cov,
            "skipped": skipped,
            "notes": notes,
            "provenance": prov,
        }
    )
    return result


def write_json(result: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``result`` as indented JSON (NaN refused) at ``path``; returns the path."""
    p = Path(path).expanduser()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    except OSError as e:
        raise EvalError(f"cannot write results to {p}: {e.strerror or e}") from None
    return p


# ------------------------------------------------------------------------------------------
# internals


def _versions() -> Dict[str, str]:
    import ganforge

    try:
        import torch_fidelity

        tf = torch_fidelity.__version__
    except Exception:  # pragma: no cover
        tf = "unknown"
    return {"ganforge": getattr(ganforge, "__version__", "unknown"), "torch": torch.__version__, "torch_fidelity": tf}


def _check_images(x: torch.Tensor, what: str) -> None:
    if not torch.is_tensor(x) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3, 4):
        desc = f"{x.dtype} {list(x.shape)}" if torch.is_tensor(x) else type(x).__name__
        raise EvalError(f"{what}: expected uint8 images [N, C, H, W] with C in 1, 3, got {desc}")
    if x.shape[0] < 2:
        raise EvalError(f"{what}: needs at least 2 images, got {x.shape[0]}")


def _is_handle(obj) -> bool:
    return hasattr(obj, "sample_uint8") and hasattr(obj, "config")


def _resolve_fake(fake) -> _Fake:
    if _is_handle(fake):
        return _Fake(description=f"generator {fake.checkpoint_path}", sampler=_handle_sampler(fake), handle=fake)
    if hasattr(fake, "images") and torch.is_tensor(getattr(fake, "images")):  # ImageData
        return _Fake(
            description=f"images {getattr(fake, 'name', '')} ({getattr(fake, 'source', '')})".strip(),
            images=fake.images,
        )
    if torch.is_tensor(fake):
        return _Fake(description=f"tensor {list(fake.shape)}", images=fake)
    if isinstance(fake, (str, Path)):
        p = Path(fake).expanduser()
        if p.is_dir() and ((p / "config.yaml").is_file() or (p / "meta.json").is_file()):
            raise EvalError(
                f"fake: '{p}' is a run folder; load its generator first (ganforge.load(run)), or call "
                "ganforge.evaluate(run, ...) or ganforge.metrics.evaluate, which do"
            )
        if p.is_file() and is_stats_file(p):
            raise EvalError(f"fake: {p} holds FID statistics, not images; the generated side needs images or a run")
        imgs, desc = load_images(p, "fake")
        return _Fake(description=desc, images=imgs)
    if callable(fake):
        return _Fake(
            description=f"callable {getattr(fake, '__name__', type(fake).__name__)}", sampler=lambda n, seed: fake(n)
        )
    raise EvalError(
        f"fake: expected a GeneratorHandle, uint8 tensor, ImageData, folder or .npz, got {type(fake).__name__}"
    )


def _handle_sampler(h):
    return lambda n, seed: h.sample_uint8(n, seed=seed)


def _resolve_reference(reference, fk: _Fake) -> _Real:
    if reference is None or (isinstance(reference, str) and reference in ("train", "test")):
        if fk.handle is None:
            raise EvalError(
                "a reference is needed: give real images (a folder, an .npz sample file) or a statistics "
                ".npz; 'train'/'test' only work for a run folder"
            )
        cfg = fk.handle.config.data
        split = reference or cfg.split
        from ganforge.data import load_dataset

        try:
            data = load_dataset(dataclasses.replace(cfg, split=split))
        except (ValueError, OSError, KeyError) as e:
            raise EvalError(f"reference '{split}' of run {fk.handle.run_dir}: {e}") from None
        label = f"{split} ({data.name}, {cfg.dataset})"
        return _Real(label=label, images=data.images)
    if hasattr(reference, "images") and torch.is_tensor(getattr(reference, "images")):
        return _Real(label=f"{getattr(reference, 'name', 'images')}", images=reference.images)
    if torch.is_tensor(reference):
        return _Real(label=f"tensor {list(reference.shape)}", images=reference)
    if isinstance(reference, Statistics):
        return _Real(label=f"statistics {reference.path}", stats=reference)
    if isinstance(reference, (str, Path)):
        p = Path(reference).expanduser()
        if not p.exists():
            raise EvalError(
                f"reference: no such file or folder: {p} (expected train, test, a folder, an .npz of "
                "images or an .npz of statistics)"
            )
        if p.is_file() and is_stats_file(p):
            return _Real(label=f"statistics {p}", stats=load_stats(p))
        imgs, desc = load_images(p, "reference")
        return _Real(label=desc, images=imgs)
    raise EvalError(
        f"reference: expected train, test, a path, ImageData or a uint8 tensor, got {type(reference).__name__}"
    )


def _fake_features(fk: _Fake, space: FeatureSpace, num_samples, seed, batch_size, notes, say):
    t_sample = 0.0
    if fk.images is not None:
        imgs = fk.images
        _check_images(imgs, "fake")
        if num_samples is not None and num_samples < len(imgs):
            imgs = imgs[:num_samples]
        elif num_samples is not None and num_samples > len(imgs):
            notes.append(f"asked for {num_samples} samples but the generated set has {len(imgs)}; using all")
        say(f"fake: {len(imgs)} images, features {space.name}")
        return space.extract(imgs, batch_size), list(imgs.shape[1:]), int(len(imgs)), 0.0
    n = int(num_samples or DEFAULT_NUM_SAMPLES)
    feats, logits, shape = [], [], None
    for i, start in enumerate(range(0, n, SAMPLE_CHUNK)):
        k = min(SAMPLE_CHUNK, n - start)
        say(f"sampling {start + k}/{n} images (seed {seed})")
        t = time.perf_counter()
        try:
            imgs = fk.sampler(k, int(seed) + i * 1000003)
        except (ValueError, RuntimeError) as e:
            raise EvalError(f"sampling from {fk.description} failed: {e}") from None
        t_sample += time.perf_counter() - t
        _check_images(imgs, "generated samples")
        if imgs.shape[0] != k:
            raise EvalError(f"the generator returned {imgs.shape[0]} images, {k} were asked for")
        if shape is not None and list(imgs.shape[1:]) != shape:
            raise EvalError("the generator returned images of changing shape")
        shape = list(imgs.shape[1:])
        out = space.extract(imgs.cpu(), batch_size)
        feats.append(out["features"])
        logits.append(out["logits"])
    return {"features": torch.cat(feats), "logits": torch.cat(logits)}, shape, n, t_sample


def _floors(wanted, ref_feats, ref_logits, n_fake, seed, notes, skipped) -> Optional[Dict[str, Any]]:
    if ref_feats is None:
        for m in wanted:
            skipped[f"floor_{m}"] = "the reference is a statistics file without features"
        return None
    n_real = int(ref_feats.shape[0])
    a, b = C.split_real(n_real, n_fake, seed)
    m = len(a)
    if m < 2:
        notes.append("floor: the reference has fewer than 4 images; no floor")
        return None
    if m < n_fake:
        notes.append(
            f"floor: the reference has {n_real} images, so the real-vs-real floor uses two disjoint "
            f"subsets of {m} (not {n_fake}); FID is biased upwards at smaller sample counts"
        )
    out: Dict[str, Any] = {"num_samples": m, "kind": FLOOR_KIND, "_idx": (a, b)}
    fa, fb = ref_feats[a], ref_feats[b]
    if "fid" in wanted:
        out["fid"] = C.fid(fa, fb)
    if "kid" in wanted:
        out["kid"] = C.kid(fa, fb, seed=seed)["mean"]
    if "pr" in wanted and m > C.PRC_NEIGHBORHOOD:
        p = C.precision_recall(fa, fb)
        out["precision"], out["recall"] = p["precision"], p["recall"]
    if "is" in wanted and ref_logits is not None:
        k = min(n_fake, n_real)
        perm = torch.randperm(n_real, generator=torch.Generator().manual_seed(int(seed) + 104729))[:k]
        out["is"] = C.inception_score(ref_logits[perm], seed=seed)["mean"]
        out["is_num_samples"] = k
    return out


def _clean(obj):
    """JSON-safe: tensors/arrays to lists, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if torch.is_tensor(obj):
        return _clean(obj.tolist())
    return obj
