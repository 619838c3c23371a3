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
    return select_part(prepare(loader(cfg), cfg), cfg)


def heldout_split(n: int, heldout: int, seed: int):
    """(train indices, held-out indices): a seeded permutation, the last ``heldout`` held out.

    The same rule as ``scripts/train_mnist_classifier.py``, so with seed 0 and 2,000 held out the
    held-out digits are exactly the ones the shipped classifier never saw.
    """
    import torch

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n - heldout].sort().values, perm[n - heldout :].sort().values


def select_part(data: ImageData, cfg: "DataConfig") -> ImageData:
    """Apply ``heldout``/``part`` (after ``limit``)."""
    if cfg.part == "all" or cfg.heldout == 0:
        return data
    n = len(data)
    if cfg.heldout >= n:
        raise DataError(f"data.heldout={cfg.heldout}: the dataset has only {n} images; hold out fewer")
    train, held = heldout_split(n, cfg.heldout, cfg.split_seed)
    idx = train if cfg.part == "train" else held
    labels = None if data.labels is None else data.labels[idx]
    return ImageData(data.images[idx].contiguous(), labels, data.class_names, data.name, data.source, data.skipped)


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
