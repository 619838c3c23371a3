"""Metrics: IS, FID, KID, precision/recall via torch-fidelity, in a shipped MNIST feature space or
Inception; mode-coverage diagnostics; reference statistics cached on disk.

    from ganforge.metrics import evaluate
    r = evaluate("runs/0001-mnist-dcgan", features="mnist", floor=True)   # = ganforge.api.evaluate

``FEATURES`` names the feature spaces (:func:`get_feature_space`); :func:`register_torch_fidelity` makes
them usable from torch-fidelity itself. Importing this package loads no weights and imports no torch-fidelity.
"""

from __future__ import annotations

from ganforge.metrics.errors import EvalError
from ganforge.metrics.evaluation import EvalOptions, write_json
from ganforge.metrics.features import FEATURES, FeatureSpace, get_feature_space
from ganforge.metrics.refstats import default_cache_dir
from ganforge.metrics.training import TrainingEvaluator

__all__ = [
    "EvalError",
    "EvalOptions",
    "FEATURES",
    "FeatureSpace",
    "TrainingEvaluator",
    "default_cache_dir",
    "evaluate",
    "get_feature_space",
    "register_torch_fidelity",
    "write_json",
]


def register_torch_fidelity() -> None:
    """Register ``ganforge-mnist`` and ``ganforge-inception-v3-compat`` with torch-fidelity (idempotent)."""
    from ganforge.metrics.fidelity_bridge import register_torch_fidelity as _register

    _register()


def evaluate(fake, reference=None, **kwargs):
    """:func:`ganforge.api.evaluate`: :func:`ganforge.metrics.evaluation.evaluate` that also takes a run folder."""
    from ganforge.api import evaluate as _evaluate

    return _evaluate(fake, reference, **kwargs)
