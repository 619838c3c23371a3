"""The Upscale page: an uploaded image upscaled by a super-resolution run, shown beside the input and
the comparison picture. It calls :func:`ganforge.apps.upscale.upscale_detailed` (what ``ganforge upscale``
calls)."""
from __future__ import annotations

from typing import Any, Dict, List

from ganforge.web.core import Field, Job, Output, Page, checkpoint_field, ema_field, file_output, png_output, register


def _run(form: Dict[str, Any], job: Job) -> List[Output]:
    from PIL import Image

    from ganforge.apps.upscale import load_upscaler, upscale_detailed

    handle = load_upscaler(str(form["run"]), checkpoint=form["checkpoint"], device=job.cache.device, ema=form["ema"])
    job.progress(0, 1, f"upscaling x{handle.scale}")
    cmp = job.scratch.path("compare.png")
    res = upscale_detailed(handle, form["image"], cmp, tile=form["tile"])
    with Image.open(form["image"]) as im:
        inp = im.copy()
    job.progress(1, 1, "done")
    return [png_output(inp, "input.png"), png_output(res.image, "upscaled.png"),
            file_output(cmp, "compare.png", kind="image", group="comparison: input (nearest) | bicubic | ganforge"),
            Output("text", "about", text=res.describe())]


register(Page(
    name="upscale",
    title="Upscale",
    summary="Upscale an image with a super-resolution run (x2, x4, ...).",
    tasks=("superres",),
    fields=[
        Field("run", "run", "run"),
        checkpoint_field(),
        ema_field(),
        Field("image", "image", "image"),
        Field("tile", "int", "tile", 128, min=0, max=4096, help="input pixels a side per tile (0 = whole image)"),
    ],
    run=_run,
    order=30,
))
