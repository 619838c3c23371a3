"""Types shared by the dataset loaders: :class:`ImageData` and :class:`DataError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from ganforge.errors import DataError


@dataclass
class ImageData:
    """A whole image dataset held in memory.

    ``images`` is uint8 ``[N, C, H, W]`` with C in {1, 3}; ``labels`` is int64 ``[N]`` or
    None when the data has no labels; ``class_names`` is ``[]`` without labels.
    """

    images: torch.Tensor
    labels: Optional[torch.Tensor]
    class_names: List[str]
    name: str
    source: str
    skipped: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        x = self.images
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"ImageData.images: expected uint8 [N, C, H, W] with C in (1, 3), got {x.dtype} {tuple(x.shape)}"
            )
        if self.labels is not None:
            y = self.labels
            if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(f"ImageData.labels: expected int64 [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> Tuple[int, int, int]:
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def resolve_root(root: Optional[str], dataset: str, hint: str, may_create: bool = False) -> Path:
    """``cfg.root`` as a Path, checked: given, a folder, and existing unless ``may_create``."""
    if not root:
        raise DataError(f"data.root: the {dataset!r} dataset needs data.root=PATH ({hint})")
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"data.root: '{path}' is not a folder ({hint})")
    if not path.exists() and not may_create:
        raise DataError(f"data.root: folder '{path}' does not exist ({hint})")
    return path
