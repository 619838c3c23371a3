"""Datasets: load a whole image dataset into memory as one uint8 tensor.

``DATASETS`` maps a ``data.dataset`` name to a loader ``fn(cfg) -> ImageData``;
:func:`load_dataset` calls it and applies ``classes``, then ``limit``, ``channels`` and ``size``
(with ``crop`` and ``resize``) once, so training never resizes, then ``heldout``/``part``.
Importing this package loads no data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Callable, Sequence

from ganforge.data.base import DataError, ImageData
from ganforge.data.cifar import load_cifar10
from ganforge.data.emoji import load_emoji
from ganforge.data.folder import load_folder
from ganforge.data.idx import load_embedded_mnist, load_fashion_mnist, load_mnist
from ganforge.data.transform import prepare
from ganforge.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import DataConfig

Loader = Callable[["DataConfig"], ImageData]

DATASETS: Registry[Loader] = Registry("dataset")
DATASETS.register("mnist-embedded")(load_embedded_mnist)
DATASETS.register("emoji")(load_emoji)
DATASETS.register("mnist")(load_mnist)
DATASETS.register("fashion-mnist")(load_fashion_mnist)
DATASETS.register("cifar10")(load_cifar10)
DATASETS.register("folder")(load_folder)

__all__ = ["DATASETS", "DataError", "ImageData", "dataset_fingerprint", "load_dataset", "select_classes"]


def load_dataset(cfg: "DataConfig") -> ImageData:
    """Load ``cfg.dataset`` (only ``cfg.classes`` when set) and convert it to the configured size and channels."""
    try:
        loader = DATASETS.get(cfg.dataset)
    except KeyError as e:
        raise DataError(f"data.dataset: {e.args[0]}") from None
    if cfg.classes is None:
        return select_part(prepare(loader(cfg), cfg), cfg)
    # the classes are chosen first, so data.limit counts images of those classes
    data = select_classes(loader(dataclasses.replace(cfg, limit=None)), cfg.classes)
    return select_part(prepare(data, cfg), cfg)


def select_classes(data: ImageData, classes: Sequence[str]) -> ImageData:
    """The images of ``classes`` (names, or indices given as text: ``"5"``), in the dataset's order.

    Labels are renumbered 0..K-1 in the dataset's class order and ``class_names`` keeps the names
    of the chosen classes, so a conditional model sees K classes.
    """
    import torch

    if data.labels is None:
        raise DataError(
            f"data.classes: {data.name!r} has no class labels (an image folder needs one subfolder per class)"
        )
    names = data.class_names
    keep = []
    for c in classes:
        if c in names:
            keep.append(names.index(c))
        elif c.isdigit() and int(c) < len(names):
            keep.append(int(c))
        else:
            raise DataError(
                f"data.classes: unknown class {c!r}; {data.name!r} has the classes "
                f"{', '.join(f'{i} ({n})' if n != str(i) else n for i, n in enumerate(names))}"
            )
    keep = sorted(set(keep))
    new_label = torch.full((len(names),), -1, dtype=torch.int64)
    new_label[keep] = torch.arange(len(keep))
    mask = new_label[data.labels] >= 0
    return ImageData(
        data.images[mask].contiguous(),
        new_label[data.labels[mask]],
        [names[i] for i in keep],
        data.name,
        data.source,
        data.skipped,
    )


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
