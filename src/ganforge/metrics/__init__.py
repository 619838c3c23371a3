"""Metrics: IS, FID, KID, precision/recall via torch-fidelity; a shipped domain feature extractor;
mode-coverage diagnostics; reference statistics cached on disk.

Public API::

    from ganforge.metrics import evaluate, TrainingEvaluator, EvalError
    r = evaluate("runs/0001-mnist-dcgan", features="mnist", floor=True)   # dict, see evaluate()

``evaluate`` here is :func:`ganforge.api.evaluate`: it also takes a run folder, whose generator it
loads; the metrics modules themselves work on handles, samplers and images, never on run folders
(:func:`ganforge.metrics.evaluation.evaluate`).

    FEATURES                   # registry: "mnist" (shipped classifier), "inception" (torch-fidelity)
    get_feature_space(name)    # a FeatureSpace: .extract(uint8 [N,C,H,W]) -> {"features", "logits"}
    register_torch_fidelity()  # makes "ganforge-mnist" usable in torch_fidelity.calculate_metrics

The ``ganforge eval`` command is :mod:`ganforge.cli.eval`.

Importing this package loads no weights, imports no torch-fidelity and registers nothing with it.
"""
from __future__ import annotations

from ganforge.metrics.errors import EvalError
from ganforge.metrics.evaluation import write_json
from ganforge.metrics.features import FEATURES, FeatureSpace, get_feature_space
from ganforge.metrics.refstats import default_cache_dir
from ganforge.metrics.training import TrainingEvaluator

__all__ = [
    "EvalError",
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
