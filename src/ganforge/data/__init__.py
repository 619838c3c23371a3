"""Datasets: load a whole image dataset into memory as one uint8 tensor.

``DATASETS`` maps a ``data.dataset`` name to a loader ``fn(cfg) -> ImageData``;
:func:`load_dataset` calls it and applies ``limit``, ``channels`` and ``size`` (with
``crop`` and ``resize``) once, so training never resizes. Importing this package loads no
data.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Callable

from ganforge.data.base import DataError, ImageData
from ganforge.data.cifar import load_cifar10
from ganforge.data.folder import load_folder
from ganforge.data.idx import load_embedded_mnist, load_fashion_mnist, load_mnist
from ganforge.data.transform import prepare
from ganforge.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import DataConfig

Loader = Callable[["DataConfig"], ImageData]

DATASETS: Registry[Loader] = Registry("dataset")
DATASETS.register("mnist-embedded")(load_embedded_mnist)
DATASETS.register("mnist")(load_mnist)
DATASETS.register("fashion-mnist")(load_fashion_mnist)
DATASETS.register("cifar10")(load_cifar10)
DATASETS.register("folder")(load_folder)

__all__ = ["DATASETS", "DataError", "ImageData", "dataset_fingerprint", "load_dataset"]


def load_dataset(cfg: "DataConfig") -> ImageData:
    """Load ``cfg.dataset`` and convert it to the configured size and channels."""
    try:
        loader = DATASETS.get(cfg.dataset)
    except KeyError as e:
        raise DataError(f"data.dataset: {e.args[0]}") from None
    return prepare(loader(cfg), cfg)


def dataset_fingerprint(data: ImageData) -> str:
    """sha256 hex of the images (bytes and shape) and labels: a cache key for statistics."""
    h = hashlib.sha256()
    images = data.images.detach().cpu().contiguous()
    h.update(repr(("images", tuple(images.shape), str(images.dtype))).encode())
    h.update(images.numpy())
    if data.labels is None:
        h.update(b"labels:none")
    else:
        labels = data.labels.detach().cpu().contiguous()
        h.update(repr(("labels", tuple(labels.shape), str(labels.dtype))).encode())
        h.update(labels.numpy())
    return h.hexdigest()
