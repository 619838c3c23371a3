"""The local web app, ``ganforge serve``: the runs (samples, curves, metrics, live while training) and a
page per job -- generate, video, complete, upscale, translate, watermark -- each calling the same
:mod:`ganforge.apps` functions as the command line.

    core.py     the runs folder (read only), uploads and their limits, jobs with progress, Page/Field
    server.py   the FastAPI app (create_app, serve, BackgroundServer)
    pages/      one module per page, registered in core.PAGES
    static/     the browser code: plain HTML, CSS and JavaScript, no build step

Needs the ``web`` extra (``pip install ganforge[web]``: FastAPI, uvicorn, python-multipart). Importing
this package loads nothing; ``from ganforge.web.server import create_app`` does.
"""
