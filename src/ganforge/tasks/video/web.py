"""The Video page: clips of a ``task=video`` run as an animated grid, with GIF / MP4 / npz downloads.
It calls the run's sample writer (:func:`ganforge.api.sample_writer`, which picks
:mod:`ganforge.tasks.video.app` for a video run: what ``ganforge sample`` calls)."""

from __future__ import annotations

from typing import Any, Dict, List

from ganforge.web.core import Field, HandleCache, Job, Limits, Output, Page, file_output, model_fields, register

DEFAULT_MODEL = "moving-digits"  # the built-in video model the page starts with when the folder has no video run


def _check(form: Dict[str, Any], cache: HandleCache, limits: Limits) -> None:
    """The clips' frames, in pixels at the GIF's scale, within the server's limit."""
    h = cache.load(form["run"], form["checkpoint"], form["ema"])
    height, width = h.img_shape[-2:]
    frames, n, scale = form["frames"] or h.frames, form["count"], form["scale"]
    limits.check_output(
        n * frames * height * width * scale**2, f"{n} clips of {frames} frames of {width * scale}x{height * scale}"
    )


def _run(form: Dict[str, Any], job: Job) -> List[Output]:
    from ganforge.api import sample_writer

    h = job.cache.load(form["run"], form["checkpoint"], form["ema"])
    writer = sample_writer(h)
    n, seed, frames = form["count"], form["seed"], form["frames"]
    outs = []
    names = ["clips.gif", "clips.npz"] + (["clips.mp4"] if _has_av() else [])
    for i, name in enumerate(names):
        job.progress(i, len(names), f"writing {name}")
        path = job.scratch.path(name)
        writer.write_samples(h, path, n, seed=seed, frames=frames, scale=form["scale"])
        if name.endswith(".gif"):  # shown, and offered as a download (the same bytes)
            outs.append(file_output(path, name, kind="image", group="clips", download="downloads"))
        else:
            outs.append(file_output(path, name, group="downloads"))
    job.progress(len(names), len(names), "done")
    return outs + [Output("text", "about", text=f"{n} clips of {h!r}, seed {seed}")]


def _has_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


# the page's form
FIELDS = [
    *model_fields(),
    Field("seed", "int", "seed", 0, min=0, max=2**31 - 1),
    Field("count", "int", "clips", 8, min=1, max=64),
    Field(
        "frames",
        "int",
        "frames",
        None,
        min=1,
        optional=True,
        help="empty: the length it trained on",
        limit="max_frames",
    ),
    Field("scale", "int", "scale", 2, min=1, max=8, help="pixels per pixel in the GIF / MP4"),
]

register(
    Page(
        "video",
        "Video",
        "Clips of a video run, as an animated grid and as GIF, MP4 and npz files.",
        ("video",),
        FIELDS,
        _run,
        order=15,
        default_model=DEFAULT_MODEL,
        check=_check,
    )
)
