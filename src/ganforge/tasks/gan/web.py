"""The Generate page: samples of a GAN run (seed, count, class, truncation, EMA or raw weights) as a
grid with PNG / npz downloads, and a latent walk between two seeds as an animation. It calls
:func:`ganforge.tasks.gan.app.write_samples` (what ``ganforge sample`` calls), so the same settings give
the same images as the command line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List

from ganforge.tasks.gan.cli import DEFAULT_MODEL
from ganforge.web.core import Field, HandleCache, Job, Limits, Output, Page, file_output, model_fields, register

ANY_CLASS = "classes in turn"


def _options(run_dir: Path, cache: HandleCache) -> Dict[str, List[Any]]:
    g = cache.load(run_dir)
    return {"class": [ANY_CLASS, *g.class_names] if g.num_classes else []}


def _check(form: Dict[str, Any], cache: HandleCache, limits: Limits) -> None:
    """The grid and the walk's frames, in pixels, within the server's limit."""
    g = cache.load(form["run"], form["checkpoint"], form["ema"])
    h, w = g.img_shape[-2:]
    frames = form["frames"] if form["seed_b"] is not None else 0
    what = f"{form['count']} samples of {w}x{h}" + (f" and a walk of {frames} frames" if frames else "")
    limits.check_output(form["count"] * h * w * (1 + frames), what)


def _run(form: Dict[str, Any], job: Job) -> List[Output]:
    import torch

    from ganforge.imaging import to_uint8
    from ganforge.tasks.gan.app import slerp, truncated_noise, write_interpolation, write_samples

    g = job.cache.load(form["run"], form["checkpoint"], form["ema"])
    cls = form.get("class")
    cls = None if cls in (None, ANY_CLASS) or not g.num_classes else cls
    n, seed, trunc = form["count"], form["seed"], form["truncation"]
    steps = 2 + (form["frames"] if form["seed_b"] is not None else 0)
    job.progress(0, steps, "sampling")
    grid, npz = job.scratch.path("samples.png"), job.scratch.path("samples.npz")
    write_samples(g, grid, n, seed=seed, cls=cls, truncation=trunc)
    job.progress(1, steps, "writing samples.npz")
    write_samples(g, npz, n, seed=seed, cls=cls, truncation=trunc)
    outs = [
        file_output(grid, "samples.png", kind="image", group="samples", download="downloads"),  # shown and offered
        file_output(npz, "samples.npz", group="downloads"),
    ]
    outs.append(
        Output(
            "text",
            "about",
            text=f"{n} samples of {g!r}, seed {seed}"
            + (f", class {cls}" if cls is not None else "")
            + (f", truncation {trunc:g}" if trunc else ""),
        )
    )
    if form["seed_b"] is not None:  # n paths, each from sample i of seed A to sample i of seed B, laid out as the grid
        frames = form["frames"]
        za, zb = truncated_noise(g, n, seed, trunc), truncated_noise(g, n, form["seed_b"], trunc)
        labels = g.labels_for(n, cls, seed=seed)
        per_t = []
        for i, t in enumerate(torch.linspace(0, 1, frames)):
            per_t.append(to_uint8(g.generate(slerp(za, zb, float(t)), labels)))  # [n, C, H, W]
            job.progress(2 + i, steps, f"frame {i + 1}/{frames}")
        imgs = torch.stack(per_t, 1).flatten(0, 1)  # [n * frames, C, H, W], one path per row
        gif = write_interpolation(imgs, n, frames, job.scratch.path("walk.gif"), nrow=math.ceil(math.sqrt(n)))
        outs.insert(1, file_output(gif, "walk.gif", kind="image", group="samples", download="downloads"))
    job.progress(steps, steps, "done")
    return outs


# the page's form
FIELDS = [
    *model_fields(),
    Field("seed", "int", "seed", 0, min=0, max=2**31 - 1),
    Field("count", "int", "count", 16, min=1, max=256),
    Field("class", "select", "class", ANY_CLASS, depends=True, help="conditional runs: the class of every sample"),
    Field(
        "truncation",
        "float",
        "truncation",
        None,
        min=0.05,
        max=10,
        step=0.05,
        optional=True,
        help="redraw latent components larger than this (empty: none)",
    ),
    Field(
        "seed_b",
        "int",
        "walk to seed",
        None,
        min=0,
        max=2**31 - 1,
        optional=True,
        help="also animate the latent walk from the seed to this seed",
    ),
    Field("frames", "int", "walk frames", 12, min=2, limit="max_frames"),
]

register(
    Page(
        "generate",
        "Generate",
        "Samples of a GAN run, and an animated walk in latent space from one seed to another.",
        ("gan",),
        FIELDS,
        _run,
        run_options=_options,
        order=10,
        default_model=DEFAULT_MODEL,
        check=_check,
    )
)
