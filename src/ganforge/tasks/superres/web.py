"""The Upscale page: an uploaded image upscaled by a super-resolution run, shown beside the input and
the comparison picture. It calls :func:`ganforge.tasks.superres.app.upscale_detailed` (what ``ganforge upscale``
calls)."""

from __future__ import annotations

from typing import Any, Dict, List

from ganforge.tasks.superres.cli import DEFAULT_MODEL
from ganforge.web.core import Field, Job, Output, Page, file_output, model_fields, png_output, register


def _run(form: Dict[str, Any], job: Job) -> List[Output]:
    from PIL import Image

    from ganforge.tasks.superres.app import UpscaleOptions, load_upscaler, upscale_detailed

    options = UpscaleOptions(tile=form["tile"], checkpoint=form["checkpoint"], device=job.cache.device, ema=form["ema"])
    handle = load_upscaler(str(form["run"]), checkpoint=options.checkpoint, device=options.device, ema=options.ema)
    job.progress(0, 1, f"upscaling x{handle.scale}")
    cmp = job.scratch.path("compare.png")
    res = upscale_detailed(handle, form["image"], cmp, options=options)
    with Image.open(form["image"]) as im:
        inp = im.copy()
    job.progress(1, 1, "done")
    return [
        png_output(inp, "input.png"),
        png_output(res.image, "upscaled.png"),
        file_output(cmp, "compare.png", kind="image", group="comparison: input (nearest) | bicubic | ganforge"),
        Output("text", "about", text=res.describe()),
    ]


# the page's form
FIELDS = [
    *model_fields(),
    Field("image", "image", "image"),
    Field("tile", "int", "tile", 128, min=0, max=4096, help="input pixels a side per tile (0 = whole image)"),
]

register(
    Page(
        "upscale",
        "Upscale",
        "Upscale an image with a super-resolution run (x2, x4, ...).",
        ("superres",),
        FIELDS,
        _run,
        order=30,
        default_model=DEFAULT_MODEL,
    )
)
