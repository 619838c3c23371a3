"""Reference features and statistics cached on disk, reusable across runs.

The key hashes the exact uint8 images fed to the extractor (so the data config's preprocessing counts),
their shape, the extractor's name, weights, layers and preprocessing, and a format version. A file
``<cache>/<features>-<key[:24]>.npz`` holds ``mu``, ``sigma``, ``features``, ``logits`` and ``meta``: an ordinary
statistics file, usable as ``--reference``. Cache folder: ``cache_dir``, else ``$GANFORGE_CACHE/refstats``,
else ``~/.cache/ganforge/refstats``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch

from ganforge.metrics.compute import fid_statistics
from ganforge.metrics.features import FeatureSpace

FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    root = os.environ.get("GANFORGE_CACHE")
    base = Path(root).expanduser() if root else Path("~/.cache/ganforge").expanduser()
    return base / "refstats"


def content_hash(images: torch.Tensor) -> str:
    """SHA-256 of the images' bytes and shape (what the extractor sees)."""
    x = images.detach().cpu().contiguous()
    h = hashlib.sha256()
    h.update(f"{x.dtype}:{list(x.shape)}".encode())
    h.update(memoryview(x.numpy()).cast("B"))
    return h.hexdigest()


def cache_key(data_hash: str, shape, space: FeatureSpace) -> str:
    desc = {
        "v": FORMAT_VERSION,
        "data_sha256": data_hash,
        "shape": [int(s) for s in shape],
        "features": space.name,
        "weights_sha256": space.weights_sha256,
        "layers": space.layers(),
        "preprocess": space.resize,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


class ReferenceFeatures:
    """Features, logits and FID statistics of a real image set (computed once, then cached)."""

    def __init__(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        mu: np.ndarray,
        sigma: np.ndarray,
        data_sha256: str,
        key: str,
        path: Optional[Path],
        from_cache: bool,
    ):
        self.features, self.logits = features, logits
        self.stats = {"mu": mu, "sigma": sigma}
        self.data_sha256, self.key, self.path, self.from_cache = data_sha256, key, path, from_cache

    @property
    def num_samples(self) -> int:
        return int(self.features.shape[0])


def reference_features(
    images: torch.Tensor,
    space: FeatureSpace,
    batch_size: int = 256,
    cache: bool = True,
    cache_dir: Union[str, Path, None] = None,
    data_sha256: Optional[str] = None,
) -> ReferenceFeatures:
    data_sha256 = data_sha256 or content_hash(images)
    key = cache_key(data_sha256, images.shape, space)
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = folder / f"{space.name}-{key[:24]}.npz"
    if cache and path.is_file():
        got = _read(path, key)
        if got is not None:
            f, lg, mu, sigma = got
            return ReferenceFeatures(f, lg, mu, sigma, data_sha256, key, path, True)
    out = space.extract(images, batch_size)
    st = fid_statistics(out["features"])
    if cache:
        meta = {
            "key": key,
            "data_sha256": data_sha256,
            "shape": list(images.shape),
            "num_samples": int(images.shape[0]),
            **space.describe(),
        }
        _write(path, out["features"], out["logits"], st["mu"], st["sigma"], meta)
    return ReferenceFeatures(
        out["features"], out["logits"], st["mu"], st["sigma"], data_sha256, key, path if cache else None, False
    )


def _read(path: Path, key: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") != key:
                return None
            return (
                torch.from_numpy(z["features"].copy()),
                torch.from_numpy(z["logits"].copy()),
                z["mu"].astype(np.float64),
                z["sigma"].astype(np.float64),
            )
    except Exception:  # unreadable or partial file: recompute and overwrite
        return None


def _write(path: Path, features, logits, mu, sigma, meta: Dict) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        os.close(fd)
        np.savez(
            tmp,
            mu=mu,
            sigma=sigma,
            features=features.numpy().astype(np.float32),
            logits=logits.numpy().astype(np.float32),
            meta=np.array(json.dumps(meta)),
        )
        from ganforge.runs import normal_mode

        normal_mode(tmp)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache must not stop an evaluation
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
