"""The Translate page: an uploaded image translated by a ``task=translate`` run in the direction chosen
(a2b, or b2a for CycleGAN runs), shown beside the input. It calls
:func:`ganforge.tasks.translate.app.translate_detailed` (what ``ganforge translate`` calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from ganforge.tasks.translate.cli import DEFAULT_MODEL
from ganforge.web.core import Field, HandleCache, Job, Output, Page, model_fields, png_output, register


def _options(run_dir: Path, cache: HandleCache) -> Dict[str, List[Any]]:
    return {"direction": list(cache.load(run_dir).directions)}


def _run(form: Dict[str, Any], job: Job) -> List[Output]:
    from PIL import Image

    from ganforge.tasks.translate.app import TranslateOptions, translate_detailed

    job.progress(0, 1, f"translating {form['direction']}")
    options = TranslateOptions(checkpoint=form["checkpoint"], device=job.cache.device, ema=form["ema"])
    res = translate_detailed(str(form["run"]), form["image"], form["direction"], options=options)
    with Image.open(form["image"]) as im:
        inp = im.copy()
    job.progress(1, 1, "done")
    return [
        png_output(inp, "input.png"),
        png_output(res.image, "translated.png"),
        Output("text", "about", text=res.describe()),
    ]


# the page's form
FIELDS = [
    *model_fields(),
    Field("image", "image", "image"),
    Field("direction", "select", "direction", "a2b", depends=True),
]

register(
    Page(
        "translate",
        "Translate",
        "Translate an image to the other domain of a pix2pix or CycleGAN run.",
        ("translate",),
        FIELDS,
        _run,
        run_options=_options,
        order=40,
        default_model=DEFAULT_MODEL,
    )
)
