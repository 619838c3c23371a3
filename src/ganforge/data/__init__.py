"""Datasets. (Interface stub: being implemented; see load_dataset.)"""
from __future__ import annotations

from ganforge.registry import Registry

DATASETS: Registry = Registry("dataset")
for _n in ("mnist-embedded", "mnist", "fashion-mnist", "cifar10", "folder"):
    DATASETS.register(_n)(_n)
