"""The Upscale page: an uploaded image upscaled by a super-resolution run, shown beside the input and
the comparison picture. It calls :func:`ganforge.tasks.superres.app.upscale_detailed` (what ``ganforge upscale``
calls). The output's pixels are checked against the server's limit before the job is queued, and the job
reports (and can be cancelled) tile by tile."""

from __future__ import annotations

import math
from typing import Any, Dict, List

from ganforge.tasks.superres.cli import DEFAULT_MODEL
from ganforge.web.core import (
    Field,
    HandleCache,
    Job,
    Limits,
    Output,
    Page,
    file_output,
    model_fields,
    png_output,
    register,
)

COMPARE_MAX_PIXELS = 4_000_000  # the comparison picture (three panels of the output's size) only up to this output


def _check(form: Dict[str, Any], cache: HandleCache, limits: Limits) -> None:
    """The output's pixels within the server's limit, and no whole-image pass over a large image."""
    from ganforge.errors import UpscaleError
    from ganforge.imaging import image_size

    s = cache.load(form["run"], form["checkpoint"], form["ema"]).scale
    w, h = image_size(form["image"])
    limits.check_output(w * h * s * s, f"the x{s} upscale of a {w}x{h} image ({w * s}x{h * s})")
    if not form["tile"] and max(w, h) > limits.max_tile:
        raise UpscaleError(
            f"tile 0 (the whole image at once) is for images up to {limits.max_tile} pixels a side; this one is "
            f"{w}x{h}: choose a tile of at most {limits.max_tile}"
        )


def _run(form: Dict[str, Any], job: Job) -> List[Output]:
    from PIL import Image

    from ganforge.tasks.superres.app import UpscaleOptions, load_upscaler, upscale_detailed

    options = UpscaleOptions(tile=form["tile"], checkpoint=form["checkpoint"], device=job.cache.device, ema=form["ema"])
    handle = load_upscaler(job.cache.load(form["run"], options.checkpoint, options.ema))
    with Image.open(form["image"]) as im:
        inp = im.copy()
    tile = form["tile"] or max(inp.size)
    n_tiles = math.ceil(inp.width / tile) * math.ceil(inp.height / tile)
    done = [0]

    def each_tile(module, args) -> None:  # before each pass of the network: progress, and where a cancel stops it
        job.progress(done[0], n_tiles, f"upscaling x{handle.scale}: tile {done[0] + 1}/{n_tiles}")
        done[0] += 1

    job.progress(0, n_tiles, f"upscaling x{handle.scale}")
    hook = handle.module.register_forward_pre_hook(each_tile)
    try:
        W, H = inp.width * handle.scale, inp.height * handle.scale
        cmp = job.scratch.path("compare.png") if W * H <= COMPARE_MAX_PIXELS else None
        res = upscale_detailed(handle, form["image"], cmp, options=options)
    finally:
        hook.remove()
    job.progress(n_tiles, n_tiles, "done")
    outs = [png_output(inp, "input.png"), png_output(res.image, "upscaled.png", download="downloads")]
    if cmp is not None:
        group = "comparison: input (nearest) | bicubic | ganforge"
        outs.append(file_output(cmp, "compare.png", kind="image", group=group))
    about = res.describe() + ("" if cmp is not None else f"; no comparison picture over {COMPARE_MAX_PIXELS:,} pixels")
    return outs + [Output("text", "about", text=about)]


# the page's form
FIELDS = [
    *model_fields(),
    Field("image", "image", "image"),
    Field("tile", "int", "tile", 128, min=0, help="input pixels a side per tile (0 = whole image)", limit="max_tile"),
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
        check=_check,
    )
)
