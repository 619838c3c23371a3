"""Applications: load a saved model and do one job with one call.

Most modules here are stable import paths for a task's user-facing functions (``inpaint``, ``upscale``,
``translate``, ``watermark``, ``video``, ``generate``; ``latent``, ``blend`` and ``options`` of the inpaint
task); ``info`` says what a run folder holds. ``inpaint`` / ``inpaint_detailed`` / ``inpaint_folder`` /
``InpaintOptions`` / ``InpaintError`` are imported from :mod:`ganforge.tasks.inpaint.app` on first use, so
importing this package loads nothing. Python::

    from ganforge.apps import inpaint
    out = inpaint("runs/00003-mnist-dcgan", "digit.png", box=(7, 7, 14, 14))  # PIL.Image
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "inpaint": "ganforge.tasks.inpaint.app",
    "inpaint_detailed": "ganforge.tasks.inpaint.app",
    "inpaint_folder": "ganforge.tasks.inpaint.app",
    "InpaintError": "ganforge.tasks.inpaint.app",
    "InpaintOptions": "ganforge.tasks.inpaint.app",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ganforge.apps' has no attribute {name!r}")
