"""Image sets and statistics files the evaluator reads: folders of images, ``.npz`` sample files
(uint8 ``arr_0`` [N, H, W, C], the guided-diffusion / ADM layout) and ``.npz`` FID statistics
(``mu``, ``sigma``, as written by pytorch-fid, torch-fidelity users and ganforge's own cache).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ganforge.imaging import IMAGE_SUFFIXES, LOSSY_SUFFIXES, images_in
from ganforge.metrics.errors import EvalError


@dataclass
class Statistics:
    """Reference statistics loaded from a file; ``features``/``logits`` only when the file has them."""

    mu: np.ndarray
    sigma: np.ndarray
    path: str
    features: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    meta: Dict = field(default_factory=dict)

    @property
    def num_samples(self) -> Optional[int]:
        if self.features is not None:
            return int(self.features.shape[0])
        n = self.meta.get("num_samples")
        return int(n) if n is not None else None


def is_stats_file(path: Path) -> bool:
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "mu" in z.files and "sigma" in z.files
    except Exception:
        return False


NPZ_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first bytes (with members, empty)


def check_npz(path: Path, what: str) -> None:
    """A one-line :class:`EvalError` unless ``path`` starts like a zip archive, as an ``.npz`` does:
    NumPy would call any other file "pickled (object) data"."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise EvalError(f"{what}: cannot read {path}: {e.strerror or e}") from None
    if head not in NPZ_MAGIC:
        text = all(32 <= b < 127 or b in b"\t\r\n" for b in head)
        why = ": it is empty" if not head else ": it holds text" if text else ""
        raise EvalError(f"{what}: {path} is not an .npz file (a NumPy zip archive, as numpy.savez writes){why}")


def load_stats(path: Path) -> Statistics:
    check_npz(path, "statistics")
    try:
        with np.load(path, allow_pickle=False) as z:
            mu, sigma = np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64)
            feats = torch.from_numpy(z["features"].astype(np.float32)) if "features" in z.files else None
            logits = torch.from_numpy(z["logits"].astype(np.float32)) if "logits" in z.files else None
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except Exception as e:
        raise EvalError(f"cannot read statistics file {path}: {type(e).__name__}: {e}") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise EvalError(f"statistics file {path}: expected mu [D] and sigma [D, D], got {mu.shape} and {sigma.shape}")
    return Statistics(mu=mu, sigma=sigma, path=str(path), features=feats, logits=logits, meta=meta)


def load_images(path, what: str = "images") -> Tuple[torch.Tensor, str]:
    """A folder of images or an ``.npz`` sample file -> (uint8 [N, C, H, W], description)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise EvalError(f"{what}: no such file or folder: {p}")
    if p.is_dir():
        return _load_folder(p, what)
    if p.suffix.lower() == ".npz":
        return _load_npz(p, what)
    raise EvalError(f"{what}: {p} is neither a folder of images nor an .npz file")


def _load_npz(p: Path, what: str) -> Tuple[torch.Tensor, str]:
    check_npz(p, what)
    try:
        with np.load(p, allow_pickle=False) as z:
            if "arr_0" not in z.files:
                if "mu" in z.files:
                    raise EvalError(
                        f"{what}: {p} holds FID statistics (mu, sigma), not images; "
                        "statistics can only be the real/reference side"
                    )
                raise EvalError(
                    f"{what}: {p} has no 'arr_0' array (keys: {', '.join(z.files) or 'none'}); "
                    "expected uint8 images [N, H, W, C]"
                )
            a = z["arr_0"]
    except EvalError:
        raise
    except Exception as e:
        raise EvalError(f"{what}: cannot read {p}: {type(e).__name__}: {e}") from None
    if a.dtype != np.uint8:
        raise EvalError(f"{what}: {p}: arr_0 must be uint8 images, got {a.dtype}")
    if a.ndim == 3:  # [N, H, W] grey
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3, 4):  # [N, H, W, C] (guided-diffusion layout)
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim == 4 and a.shape[1] in (1, 3, 4):  # [N, C, H, W]
        pass
    else:
        raise EvalError(f"{what}: {p}: arr_0 has shape {list(a.shape)}; expected [N, H, W, C] with C in 1, 3, 4")
    if a.shape[1] == 4:
        a = a[:, :3]
    if a.shape[0] == 0:
        raise EvalError(f"{what}: {p} holds no images")
    return torch.from_numpy(np.ascontiguousarray(a)), f"npz {p} ({a.shape[0]} images)"


def _load_folder(p: Path, what: str) -> Tuple[torch.Tensor, str]:
    from PIL import Image

    files = images_in(p)
    if not files:
        raise EvalError(f"{what}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder {p}")
    arrays, grey = [], True
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                if im.mode in ("L", "1", "I", "I;16", "F", "LA"):
                    arr = np.asarray(im.convert("L"))[:, :, None]
                else:
                    arr = np.asarray(im.convert("RGB"))
                    grey = False
        except Exception as e:
            raise EvalError(f"{what}: cannot read image {f}: {type(e).__name__}: {e}") from None
        if arrays and arr.shape[:2] != arrays[0].shape[:2]:
            raise EvalError(
                f"{what}: images in {p} differ in size ({files[0].name} is "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]}, {f.name} is {arr.shape[1]}x{arr.shape[0]}); "
                "resize them to one size first"
            )
        arrays.append(arr)
    if not grey:
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    x = torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())  # [N, C, H, W]
    lossy = sum(f.suffix.lower() in LOSSY_SUFFIXES for f in files)
    note = f", {lossy} lossy-compressed" if lossy else ""
    return x, f"folder {p} ({len(files)} images{note})"
