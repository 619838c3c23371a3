"""The pages of the web app, one module each, registered in :data:`ganforge.web.core.PAGES`.

    generate   samples and latent walks of a GAN run              pages/generate.py
    video      clips of a video run                                pages/video.py
    complete   fill a region drawn on an image                     pages/complete.py
    upscale    super-resolution                                    pages/upscale.py
    translate  image-to-image translation                          pages/translate.py
    watermark  embed / detect / extract invisible watermarks       pages/watermark.py

A new page is a module that builds a :class:`ganforge.web.core.Page` (its fields and the function that
calls :mod:`ganforge.apps`) and registers it, plus one import line below. The Runs page (the list of
runs, their samples, curves and metrics) is the app's own and needs no module here.
"""
from ganforge.web.core import PAGES

# ---- the registered pages: one import each --------------------------------------------------------
from ganforge.web.pages import generate as _generate  # noqa: E402,F401  (registers "generate")
from ganforge.web.pages import video as _video  # noqa: E402,F401  (registers "video")
from ganforge.web.pages import complete as _complete  # noqa: E402,F401  (registers "complete")
from ganforge.web.pages import upscale as _upscale  # noqa: E402,F401  (registers "upscale")
from ganforge.web.pages import translate as _translate  # noqa: E402,F401  (registers "translate")
from ganforge.web.pages import watermark as _watermark  # noqa: E402,F401  (registers "watermark")

__all__ = ["PAGES"]
