"""The Complete page: upload an image, draw the region to fill with the mouse (brush size, undo),
choose the method, and see the completion beside the input. It calls
:func:`ganforge.tasks.inpaint.app.inpaint_detailed` (what ``ganforge inpaint`` calls) with the drawn mask."""

from __future__ import annotations

from typing import Any, Dict, List

from ganforge.tasks.inpaint.cli import DEFAULT_MODEL
from ganforge.tasks.inpaint.options import BLENDS, DEFAULT_RESTARTS, METHODS
from ganforge.web.core import Field, Job, Output, Page, model_fields, png_output, register


def _run(form: Dict[str, Any], job: Job) -> List[Output]:
    from PIL import Image

    from ganforge.tasks.inpaint.app import InpaintOptions, inpaint_detailed

    job.progress(0, 1, f"completing with method {form['method']}")
    options = InpaintOptions(
        method=form["method"],
        steps=form["steps"],
        restarts=form["restarts"],
        seed=form["seed"],
        blend=form["blend"],
        checkpoint=form["checkpoint"],
        device=job.cache.device,
    )
    res = inpaint_detailed(
        str(form["run"]),
        form["image"],
        form["mask"],
        options=options,
        progress=lambda i, n: job.progress(i, n, f"latent search step {i}/{n}"),
    )
    with Image.open(form["image"]) as im:
        inp = im.copy()
    return [
        png_output(inp, "input.png"),
        png_output(res.image, "completed.png"),
        Output("text", "about", text=res.describe()),
    ]


# the page's form
FIELDS = [
    *model_fields(ema=False),
    Field("image", "image", "image", help="PNG, JPEG, ... (L, LA, RGB or RGBA)"),
    Field("mask", "mask", "region to fill", over="image", help="draw on the image; white = fill"),
    Field(
        "method",
        "select",
        "method",
        "auto",
        METHODS,
        help="auto: the network of a completion run, latent search for a GAN run",
    ),
    Field("blend", "select", "blend", "poisson", BLENDS),
    Field("steps", "int", "latent steps", 200, min=1, help="latent search only", limit="max_steps"),
    Field("restarts", "int", "restarts", DEFAULT_RESTARTS, min=1, help="latent search only", limit="max_restarts"),
    Field("seed", "int", "seed", 0, min=0, max=2**31 - 1),
]

register(
    Page(
        "complete",
        "Complete",
        "Fill a region you draw on an image: latent search with a GAN run, or a completion network.",
        ("gan", "inpaint"),
        FIELDS,
        _run,
        order=20,
        default_model=DEFAULT_MODEL,
    )
)
