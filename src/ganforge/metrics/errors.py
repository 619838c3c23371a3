"""The one error type of the metrics package."""
from __future__ import annotations


class EvalError(ValueError):
    """An evaluation problem the user can fix; the message is one line and says what to do."""
