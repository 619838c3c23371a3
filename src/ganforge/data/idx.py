"""IDX files: the packaged MNIST test split, MNIST and Fashion-MNIST.

The IDX format is a big-endian header (magic number, then one uint32 per dimension)
followed by the raw uint8 data. Files may be gzip-compressed; compression is detected from
the content, not the file name, so a ``.gz`` that a browser already unpacked still loads.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, List, Optional, Tuple

import numpy as np
import torch

from ganforge.data.base import DataError, ImageData, resolve_root

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import DataConfig

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_MAX_BYTES = 1 << 34  # a header claiming more than 16 GiB is corrupt, not a dataset

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
EMBEDDED_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


# ---- parsing --------------------------------------------------------------------------------


def read_idx(path: "str | Path", magic: int) -> np.ndarray:
    """Read an IDX file (raw or gzip) whose magic number must be ``magic``."""
    try:
        with open(path, "rb") as f:
            return read_idx_stream(f, str(path), magic)
    except FileNotFoundError:
        raise DataError(f"IDX file '{path}' does not exist") from None


def read_idx_stream(f: BinaryIO, where: str, magic: int) -> np.ndarray:
    """Read an IDX array from a seekable binary stream; ``where`` names it in errors."""
    try:
        gz = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=f, mode="rb") if gz else f  # type: ignore[assignment]
        return _parse(stream, where, magic)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"cannot read IDX file '{where}': {e} (the file is corrupt or truncated; delete it and download it again)"
        ) from None


def _parse(stream: BinaryIO, where: str, magic: int) -> np.ndarray:
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"IDX file '{where}' is truncated: it ends inside the header")
    found = int.from_bytes(head, "big")
    if found != magic:
        raise DataError(f"'{where}' is not an IDX {kind} file: magic number {found}, expected {magic}")
    ndim = head[3]
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"IDX file '{where}' is truncated: it ends inside the header")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    count = int(np.prod(dims, dtype=np.int64))
    if count > _MAX_BYTES:
        raise DataError(f"IDX file '{where}' is corrupt: its header claims an array of shape {dims}")
    data = np.empty(count, dtype=np.uint8)
    got = _read_into(stream, memoryview(data))
    if got < count:
        raise DataError(
            f"IDX file '{where}' is truncated: the header says shape {dims} ({count} bytes of data) "
            f"but only {got} bytes follow; delete it and download it again"
        )
    if stream.read(1):
        raise DataError(f"IDX file '{where}' is corrupt: it has more data than its header (shape {dims}) describes")
    return data.reshape(dims)


def _read_into(stream: BinaryIO, buf: memoryview) -> int:
    got = 0
    while got < len(buf):
        n = stream.readinto(buf[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _to_image_data(
    images: np.ndarray, labels: np.ndarray, class_names: List[str], name: str, source: str, where: str
) -> ImageData:
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{where}: {images.shape[0]} images but {labels.shape[0]} labels; the image and label "
            "files do not belong together"
        )
    if labels.size and int(labels.max()) >= len(class_names):
        raise DataError(f"{where}: label {int(labels.max())} is out of range for {len(class_names)} classes")
    n, h, w = images.shape
    return ImageData(
        images=torch.from_numpy(images.reshape(n, 1, h, w)),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=list(class_names),
        name=name,
        source=source,
    )


# ---- the packaged MNIST test split ----------------------------------------------------------


def load_embedded_mnist(cfg: "DataConfig") -> ImageData:
    """The MNIST test split shipped in ``ganforge/assets/mnist`` (10,000 digits, 28x28)."""
    folder = resources.files("ganforge") / "assets" / "mnist"
    arrays = []
    for fname, magic in zip(EMBEDDED_FILES, (IMAGES_MAGIC, LABELS_MAGIC)):
        res = folder / fname
        if not res.is_file():
            raise DataError(f"the packaged MNIST file ganforge/assets/mnist/{fname} is missing; reinstall ganforge")
        with res.open("rb") as f:
            arrays.append(read_idx_stream(f, f"ganforge/assets/mnist/{fname}", magic))
    return _to_image_data(arrays[0], arrays[1], MNIST_CLASSES, "mnist", str(folder), "packaged MNIST")


# ---- MNIST / Fashion-MNIST from a folder ----------------------------------------------------


def _file_names(prefix: str, kind: str, ndim: int) -> List[str]:
    bases = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return bases + [b + ".gz" for b in bases]


def find_idx_files(root: Path, subfolder: str, split: str) -> Optional[Tuple[Path, Path]]:
    """(images, labels) for ``split`` in ``root`` or ``root/<subfolder>/raw``; raw before .gz."""
    prefix = "train" if split == "train" else "t10k"
    for folder in (root, root / subfolder / "raw"):
        found = []
        for kind, ndim in (("images", 3), ("labels", 1)):
            found.append(next((folder / n for n in _file_names(prefix, kind, ndim) if (folder / n).is_file()), None))
        if found[0] is not None and found[1] is not None:
            return found[0], found[1]
    return None


def _download(tv_class: str, root: Path, split: str) -> None:
    try:
        import torchvision.datasets as tvd

        getattr(tvd, tv_class)(root=str(root), train=(split == "train"), download=True)
    except Exception as e:  # network, checksum and disk errors all mean the same to the user
        raise DataError(f"downloading {tv_class} into '{root}' with torchvision failed: {e}") from e


def _load_idx_dataset(cfg: "DataConfig", name: str, tv_class: str, class_names: List[str]) -> ImageData:
    split = cfg.split
    if split not in ("train", "test"):
        raise DataError(f"data.split: expected train or test, got {split!r}")
    hint = f"a folder with the {name} IDX files, or where data.download=true should put them"
    root = resolve_root(cfg.root, name, hint, may_create=cfg.download)
    files = find_idx_files(root, tv_class, split) if root.is_dir() else None
    if files is None and cfg.download:
        _download(tv_class, root, split)
        files = find_idx_files(root, tv_class, split)
    if files is None:
        prefix = "train" if split == "train" else "t10k"
        names = [_file_names(prefix, "images", 3)[0], _file_names(prefix, "labels", 1)[0]]
        raise DataError(
            f"{name} {split} files not found in '{root}' or '{root / tv_class / 'raw'}': looked for "
            f"{', '.join(names)} (each optionally .gz); set data.download=true to download them"
        )
    images = read_idx(files[0], IMAGES_MAGIC)
    labels = read_idx(files[1], LABELS_MAGIC)
    return _to_image_data(images, labels, class_names, name, str(files[0].parent), f"{name} in '{files[0].parent}'")


def load_mnist(cfg: "DataConfig") -> ImageData:
    """MNIST from IDX files in ``cfg.root`` (or ``root/MNIST/raw``), downloaded if allowed."""
    return _load_idx_dataset(cfg, "mnist", "MNIST", MNIST_CLASSES)


def load_fashion_mnist(cfg: "DataConfig") -> ImageData:
    """Fashion-MNIST from IDX files in ``cfg.root`` (or ``root/FashionMNIST/raw``)."""
    return _load_idx_dataset(cfg, "fashion-mnist", "FashionMNIST", FASHION_MNIST_CLASSES)
