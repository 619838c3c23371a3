"""Applications: load a saved model and do one job with one call.

    from ganforge.apps import inpaint
    out = inpaint("runs/00003-mnist-dcgan", "digit.png", box=(7, 7, 14, 14))   # PIL.Image

One module per job:

    inpaint    complete images (``inpaint``, ``inpaint_detailed``, ``inpaint_folder``) with a GAN run or a
               completion network
    latent     the latent search a GAN run completes images with (Yeh et al. 2017)
    blend      how a fill meets the known pixels (Poisson, feathered, none)
    generate   samples and latent interpolations of a generator, written as files
    info       what a run folder holds

``inpaint`` / ``inpaint_detailed`` / ``inpaint_folder`` / ``InpaintOptions`` / ``InpaintError`` are imported from
:mod:`ganforge.tasks.inpaint.app` on first use, so importing this package loads nothing.
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
