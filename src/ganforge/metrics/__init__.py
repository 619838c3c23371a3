"""Metrics: IS, FID, KID, precision/recall via torch-fidelity; a shipped domain feature extractor;
mode-coverage diagnostics; reference statistics cached on disk.

Public API::

    from ganforge.metrics import evaluate, TrainingEvaluator, EvalError
    r = evaluate("runs/0001-mnist-dcgan", features="mnist", floor=True)   # dict, see evaluate()

    FEATURES                   # registry: "mnist" (shipped classifier), "inception" (torch-fidelity)
    get_feature_space(name)    # a FeatureSpace: .extract(uint8 [N,C,H,W]) -> {"features", "logits"}
    register_torch_fidelity()  # makes "ganforge-mnist" usable in torch_fidelity.calculate_metrics
    add_eval_arguments(parser), cli_eval(args)   # the `ganforge eval` subcommand

Importing this package loads no weights, imports no torch-fidelity and registers nothing with it.
"""
from __future__ import annotations

from ganforge.metrics.errors import EvalError
from ganforge.metrics.evaluation import evaluate, write_json
from ganforge.metrics.features import FEATURES, FeatureSpace, get_feature_space
from ganforge.metrics.refstats import default_cache_dir
from ganforge.metrics.training import TrainingEvaluator

__all__ = [
    "EvalError",
    "FEATURES",
    "FeatureSpace",
    "TrainingEvaluator",
    "add_eval_arguments",
    "cli_eval",
    "default_cache_dir",
    "evaluate",
    "format_result",
    "get_feature_space",
    "register_torch_fidelity",
    "write_json",
]


def add_eval_arguments(parser):
    """Add the ``ganforge eval`` options to an argparse parser (see :mod:`ganforge.metrics.cli`)."""
    from ganforge.metrics.cli import add_eval_arguments as _add

    return _add(parser)


def cli_eval(args) -> int:
    """Run ``ganforge eval`` for parsed args; raises :class:`EvalError` with a one-line message."""
    from ganforge.metrics.cli import cli_eval as _run

    return _run(args)


def format_result(result) -> str:
    """The readable table of an :func:`evaluate` result."""
    from ganforge.metrics.cli import format_result as _fmt

    return _fmt(result)


def register_torch_fidelity() -> None:
    """Register ``ganforge-mnist`` and ``ganforge-inception-v3-compat`` with torch-fidelity (idempotent)."""
    from ganforge.metrics.fidelity_bridge import register_torch_fidelity as _register

    _register()
