"""The Watermark page: embed a message into an uploaded image, detect a key in it, or extract its
message, with a ``task=watermark`` run. It calls :mod:`ganforge.tasks.watermark.app` (``embed``, ``detect``,
``extract``: what ``ganforge watermark embed|detect|extract`` call)."""

from __future__ import annotations

import math
from typing import Any, Dict, List

from ganforge.tasks.watermark.cli import DEFAULT_MODEL
from ganforge.web.core import Field, Job, Output, Page, model_fields, png_output, register

ACTIONS = ("embed", "detect", "extract")


def _psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _run(form: Dict[str, Any], job: Job) -> List[Output]:
    import numpy as np
    from PIL import Image

    from ganforge.errors import UsageError
    from ganforge.tasks.watermark import app as wm

    h = job.cache.get(
        ("watermark", str(form["run"]), form["checkpoint"]),
        lambda: wm.load_watermarker(str(form["run"]), checkpoint=form["checkpoint"], device=job.cache.device),
    )
    action, message = form["action"], form["message"]
    if action in ("embed", "detect") and not message:
        raise UsageError(f"message: {action} needs a message (for detect: the one that was embedded)")
    with Image.open(form["image"]) as im:
        inp = im.copy()
    job.progress(0, 1, f"{action}ing")
    if action == "embed":
        marked = wm.embed(h, form["image"], message, strength=form["strength"])
        out = Image.fromarray(marked)
        back = wm.extract(h, marked)
        said = back["text"] if back["text"] is not None else "0x" + back["hex"]
        reads = (
            f"it reads back as {said!r} ({back['corrected']} bit errors corrected)"
            if back["ok"]
            else "it does not read back (too many bit errors to correct: a stronger strength may help)"
        )
        return [
            png_output(inp, "input.png"),
            png_output(out, "marked.png", download="downloads"),  # shown, and offered as a download
            Output(
                "text",
                "about",
                text=f"embedded {message!r} ({h.bits} bits) at strength {form['strength']:g}: "
                f"PSNR {_psnr(np.asarray(inp.convert(out.mode)), marked):.1f} dB; "
                f"{reads}",
            ),
        ]
    if action == "detect":
        r = wm.detect(h, form["image"], message, fpr=form["fpr"])
        verdict = "marked with this key" if r["detected"] else "not shown to carry this key"
        return [
            png_output(inp, "input.png"),
            Output(
                "text",
                "about",
                text=f"{verdict}: {r['matches']}/{r['n_bits']} bits match (p-value "
                f"{r['p_value']:.3g}; {r['threshold']} matching bits pass on their "
                f"own at a false-positive rate of {r['fpr']:g})",
            ),
        ]
    r = wm.extract(h, form["image"])
    said = r["text"] if r["text"] is not None else "0x" + r["hex"]
    state = f"{r['corrected']} bit errors corrected" if r["ok"] else "too many bit errors to correct (the raw reading)"
    return [
        png_output(inp, "input.png"),
        Output("text", "about", text=f"message {said!r} (hex {r['hex']}): {state}; confidence {r['confidence']:g}"),
        Output("text", "bits", text=f"bits read: {r['bits']}"),
    ]


# the page's form
FIELDS = [
    *model_fields(ema=False),
    Field("image", "image", "image", help="at least 16 pixels a side"),
    Field("action", "select", "action", "embed", ACTIONS),
    Field(
        "message",
        "text",
        "message / key",
        "",
        optional=True,
        help="embed: the message; detect: the key (the embedded message)",
    ),
    Field(
        "strength",
        "float",
        "strength",
        1.0,
        min=0.01,
        max=10,
        step=0.1,
        help="embed: 1 = as trained; more is more robust and more visible",
    ),
    Field("fpr", "float", "false-positive rate", 1e-6, min=1e-12, max=0.5, help="detect: the test's level"),
]

register(
    Page(
        "watermark",
        "Watermark",
        "Embed an invisible message in an image, detect a key in it, or read its message.",
        ("watermark",),
        FIELDS,
        _run,
        order=50,
        default_model=DEFAULT_MODEL,
    )
)
