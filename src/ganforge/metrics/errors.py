"""The one error type of the metrics package."""

from __future__ import annotations

from ganforge.errors import EvalError

__all__ = ["EvalError"]
