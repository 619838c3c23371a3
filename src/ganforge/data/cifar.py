"""CIFAR-10 from the python batches (``cifar-10-batches-py``).

The batches are pickles. They are read with :class:`RestrictedUnpickler`, which only
rebuilds numpy arrays, dicts, lists, strings and numbers: a file that names any other
global (``os.system``, ``builtins.eval``, ...) is refused instead of running code.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ganforge.data.base import DataError, ImageData, resolve_root

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import DataConfig

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"


# ---- restricted unpickling ------------------------------------------------------------------


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes under pickle protocol 2 as _codecs.encode(text, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise ForbiddenGlobal(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args: Any) -> bytes:
    # Protocol 2 writes b"" as bytes(); nothing else is needed (and bytes(10**12) is not).
    if args:
        raise ForbiddenGlobal("builtins.bytes with arguments")
    return b""


_ALLOWED: Dict[Tuple[str, str], Callable[..., Any]] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(_module, "scalar")] = _multiarray.scalar


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals needed to rebuild numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"{module}.{name}") from None


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (bytes keys stay bytes)."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except ForbiddenGlobal as e:
        raise DataError(
            f"refusing to load '{path}': the pickle references {e}, which is not allowed in a "
            "CIFAR-10 batch (only numpy arrays, dicts, lists, strings and numbers are); the file "
            "is not a genuine CIFAR-10 python batch and may be malicious"
        ) from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError) as e:  # fmt: skip
        raise DataError(
            f"cannot read CIFAR-10 batch '{path}': {type(e).__name__}: {e} (the file is corrupt or "
            "truncated; delete it and download it again)"
        ) from None


# ---- batches ---------------------------------------------------------------------------------


def _get(d: Dict[Any, Any], key: str) -> Any:
    return d[key.encode()] if key.encode() in d else d.get(key)


def _as_dict(obj: Any, path: Path, keys: List[str]) -> Dict[Any, Any]:
    if not isinstance(obj, dict) or any(_get(obj, k) is None for k in keys):
        raise DataError(f"'{path}' is not a CIFAR-10 python batch: expected a dict with keys {', '.join(keys)}")
    return obj


def read_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[n, 3, 32, 32]`` and labels int64 ``[n]`` from one batch file."""
    d = _as_dict(load_pickle(path), path, ["data", "labels"])
    data = _get(d, "data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"'{path}': expected 'data' to be a uint8 array of shape [N, 3072], got {got}")
    try:
        labels = np.asarray(_get(d, "labels"), dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"'{path}': expected 'labels' to be a list of integers") from None
    if labels.shape != (data.shape[0],):
        raise DataError(f"'{path}': {data.shape[0]} images but labels of shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def read_label_names(path: Path) -> List[str]:
    """``label_names`` from ``batches.meta``."""
    d = _as_dict(load_pickle(path), path, ["label_names"])
    names = _get(d, "label_names")
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"'{path}': expected 'label_names' to be a list of strings")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def find_batch_folder(root: Path, split: str) -> Optional[Path]:
    """``root/cifar-10-batches-py`` or ``root`` when it holds the batches for ``split``."""
    needed = (TRAIN_FILES if split == "train" else TEST_FILES) + [META_FILE]
    for folder in (root / BATCH_FOLDER, root):
        if all((folder / n).is_file() for n in needed):
            return folder
    return None


def _download(root: Path) -> None:
    try:
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
    except Exception as e:  # network, checksum and disk errors all mean the same to the user
        raise DataError(f"downloading CIFAR-10 into '{root}' with torchvision failed: {e}") from e


def load_cifar10(cfg: "DataConfig") -> ImageData:
    """CIFAR-10 (3x32x32, 10 classes) from ``cfg.root``, downloaded if allowed."""
    split = cfg.split
    if split not in ("train", "test"):
        raise DataError(f"data.split: expected train or test, got {split!r}")
    hint = "a folder with cifar-10-batches-py, or where data.download=true should put it"
    root = resolve_root(cfg.root, "cifar10", hint, may_create=cfg.download)
    folder = find_batch_folder(root, split) if root.is_dir() else None
    if folder is None and cfg.download:
        _download(root)
        folder = find_batch_folder(root, split)
    files = TRAIN_FILES if split == "train" else TEST_FILES
    if folder is None:
        raise DataError(
            f"cifar10 {split} files not found in '{root / BATCH_FOLDER}' or '{root}': looked for "
            f"{', '.join(files + [META_FILE])}; set data.download=true to download them"
        )
    class_names = read_label_names(folder / META_FILE)
    parts = [read_batch(folder / n) for n in files]
    images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DataError(
            f"cifar10 in '{folder}': labels range from {labels.min()} to {labels.max()} but "
            f"{META_FILE} names {len(class_names)} classes"
        )
    return ImageData(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(labels),
        class_names=class_names,
        name="cifar10",
        source=str(folder),
    )
