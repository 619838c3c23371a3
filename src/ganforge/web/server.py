"""The FastAPI application of ``ganforge serve``: the pages' JSON API, the runs folder's images, the
static browser code.

    app = create_app("runs")                       # an ASGI app (serve it with uvicorn)
    serve("runs", host="127.0.0.1", port=7860)     # what `ganforge serve` runs

Routes: ``/``, ``/static/*``, ``/api/pages``, ``/api/runs`` (the runs, and the built-in models' cards),
``/api/runs/{run}/options/{page}``, ``POST /api/pages/{page}`` (a form -> a job id; 429 when the queue is
full), ``/api/jobs/{id}`` and its outputs, ``POST /api/jobs/{id}/cancel``, ``/api/status`` (queue, jobs kept,
bytes held, memory, limits), ``/files/{path}`` (an image in the runs folder; a path leading outside it gets
403). A run of another task than the page's is refused (400) before the page's code sees it. A run
picker's ``builtin:NAME`` is a built-in model (only the names :func:`ganforge.models.names` lists); nothing
of the package's folder is served but what the cards say. Read only: run folders and built-in models are
read, never written; outputs go to private temporary folders, deleted afterwards; nothing is unpickled.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ganforge.errors import GanforgeError, UsageError
from ganforge.web.core import (
    PAGES,
    SERVED_SUFFIXES,
    Forbidden,
    HandleCache,
    Job,
    Jobs,
    Limits,
    QueueFull,
    RunsFolder,
    Scratch,
    builtin_summary,
    check_image_upload,
)

STATIC = Path(__file__).parent / "static"
LIVE_SECONDS = 60  # a run whose metrics or samples changed this recently counts as training
CURVE_POINTS = 400  # points per loss curve sent to the browser


def mb(n: int) -> str:
    return f"{n / 2**20:.3g} MB"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# ---- what the Runs page shows ---------------------------------------------------------------------------


def _progress(cfg: Dict[str, Any], last: Optional[Dict[str, Any]]) -> Optional[float]:
    """How far a run is through its budget (train.steps / kimg / epochs / minutes), 0..1, or None."""
    if not last:
        return None
    train = cfg.get("train") or {}
    for key, rec_key, scale in (
        ("steps", "step", 1),
        ("kimg", "kimg", 1),
        ("epochs", "epoch", 1),
        ("minutes", "time_s", 1 / 60),
    ):
        budget = train.get(key)
        if budget and rec_key in last:
            return max(0.0, min(1.0, float(last[rec_key]) * scale / float(budget)))
    return None


def _curves(records: List[Dict[str, Any]]) -> Dict[str, List[List[float]]]:
    """{metric: [[step, value], ...]} for the losses (``loss_*``) and evaluations (``fid``, ``val_*``),
    thinned to at most :data:`CURVE_POINTS` points each."""
    out: Dict[str, List[List[float]]] = {}
    for r in records:
        step = r.get("step")
        if step is None:
            continue
        for k, v in r.items():
            if (k.startswith("loss") or k == "fid" or k.startswith("val_")) and isinstance(v, (int, float)):
                out.setdefault(k, []).append([float(step), float(v)])
    for k, pts in out.items():
        if len(pts) > CURVE_POINTS:
            stride = len(pts) / CURVE_POINTS
            out[k] = [pts[int(i * stride)] for i in range(CURVE_POINTS)] + [pts[-1]]
    return out


def run_summary(folder: RunsFolder, name: str) -> Dict[str, Any]:
    """One run as the Runs page shows it; a run that cannot be read is listed with its error line."""
    from ganforge import runs

    path = folder.root / name
    out: Dict[str, Any] = {"name": name}
    try:
        cfg = runs.read_run_config(path)
        records = runs.read_metrics(path)
    except GanforgeError as e:
        return out | {"error": f"error: {e}"}
    data = cfg.get("data") or {}
    model = cfg.get("model") or {}
    train_rec = [r for r in records if any(k.startswith("loss") for k in r)]
    last = train_rec[-1] if train_rec else (records[-1] if records else None)
    evals = [r for r in records if any(k == "fid" or k.startswith("val_") for k in r)]
    cks = runs.list_checkpoints(path)
    stamps = [p.stat().st_mtime for p in (path / "metrics.jsonl", path / "samples") if p.exists()]
    updated = max(stamps) if stamps else None
    samples = None
    for candidate in ("latest.gif", "latest.png"):  # an animated grid (video runs) first
        p = path / "samples" / candidate
        if p.is_file():
            samples = f"/files/{name}/samples/{candidate}?t={p.stat().st_mtime_ns}"
            break
    progress = _progress(cfg, last)
    return out | {
        "task": str(cfg.get("task") or "gan"),
        "dataset": str(data.get("dataset", "")) + (f" ({Path(str(data['root'])).name})" if data.get("root") else ""),
        "model": str(model.get("arch") or model.get("method") or ""),
        "step": (last or {}).get("step", runs.read_json(cks[-1] / "meta.json").get("step") if cks else None),
        "kimg": (last or {}).get("kimg"),
        "progress": progress,
        "checkpoints": len(cks),
        "samples": samples,
        "curves": _curves(records),
        "last_metrics": last,
        "last_eval": evals[-1] if evals else None,
        "updated": updated,
        "live": _live(updated, progress),
    }


def _live(updated: Optional[float], progress: Optional[float]) -> bool:
    """A run is training when its metrics or samples changed in the last :data:`LIVE_SECONDS` and it has
    budget left."""
    return bool(updated and time.time() - updated < LIVE_SECONDS and (progress is None or progress < 1))


def _stamp(run: Path) -> tuple:
    """What changes when a run writes something the Runs page shows."""
    out = []
    for p in (run / "config.yaml", run / "metrics.jsonl", run / "samples", run / "checkpoints"):
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _stamp_model(model: Path) -> tuple:
    """What changes when a built-in model's files do (a reinstall)."""
    return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in model.iterdir() if p.is_file()))


# ---- cross-site defences ---------------------------------------------------------------------------------


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# what the pages may load: their own scripts and styles (no inline ones), images from the app, blob: (a chosen
# upload shown before it is sent) and data:; no plugins, no other base, forms to the app only, never in a frame
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _origin_tuple(scheme: str, netloc: str) -> Optional[tuple]:
    """(scheme, host, port) with the scheme's default port filled in, or None for something unparsable."""
    try:
        u = urlsplit(f"{scheme}://{netloc}")
        port = u.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None
    if not u.hostname or u.username is not None or u.path not in ("", "/") or u.query or u.fragment:
        return None
    return scheme.lower(), u.hostname.lower(), port


def same_origin(origin: str, scheme: str, host: Optional[str]) -> bool:
    """Whether the ``Origin`` header names the app itself: the same scheme, host and port (defaults filled
    in) as the request's own URL (``scheme`` and its ``Host`` header)."""
    if not host or origin == "null":
        return False
    try:
        o = urlsplit(origin)
    except ValueError:
        return False
    if o.path or o.query or o.fragment or not o.scheme:
        return False
    mine, theirs = _origin_tuple(scheme, host), _origin_tuple(o.scheme, o.netloc)
    return mine is not None and mine == theirs


def refuse_cross_site(method: str, scheme: str, headers: Dict[str, str]) -> Optional[str]:
    """Why a request must be refused as coming from another site, or None. A request that changes
    something (anything but GET/HEAD/OPTIONS) must come from the app's own pages: its ``Origin`` the app's
    exact origin (scheme, host and port); without an ``Origin``, only when the browser's ``Sec-Fetch-Site``
    says ``same-origin`` (or ``none``: typed by the user); ``Sec-Fetch-Site: cross-site`` or ``same-site``
    (another port or subdomain) never. A reading request from another site is refused too (a picture or the
    JSON embedded in another page), except a top-level navigation (a link to the app)."""
    site = headers.get("sec-fetch-site")
    if method in SAFE_METHODS:
        navigate = (
            headers.get("sec-fetch-mode") == "navigate" and headers.get("sec-fetch-dest", "document") == "document"
        )
        if site in ("cross-site", "same-site") and not navigate:
            return f"error: a request from another site (Sec-Fetch-Site: {site}) is not accepted"
        return None
    origin = headers.get("origin")
    if site in ("cross-site", "same-site"):
        return f"error: a form from another site (Sec-Fetch-Site: {site}) is not accepted"
    if origin is None:
        if site in ("same-origin", "none"):
            return None
        return (
            "error: a request without an Origin header is not accepted: send 'Origin: "
            f"{scheme}://{headers.get('host', 'HOST:PORT')}' (browsers do) or 'Sec-Fetch-Site: same-origin'"
        )
    if not same_origin(origin, scheme, headers.get("host")):
        return f"error: a form from another site ({origin[:200]}) is not accepted"
    return None


class SecurityMiddleware:
    """ASGI middleware, outermost: refuses cross-site requests (:func:`refuse_cross_site`, 403) and adds
    :data:`SECURITY_HEADERS` (the CSP, ``X-Frame-Options: DENY`` ...) to every response, errors included."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = message | {"headers": list(message.get("headers", [])) + extra}
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        why = refuse_cross_site(scope["method"], scope.get("scheme", "http"), headers)
        if why is not None:
            return await _error(403, why)(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


def _rss_bytes() -> Optional[int]:
    """This process's resident memory, from /proc (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# ---- the app ---------------------------------------------------------------------------------------------


def create_app(
    runs_dir: Any = "runs",
    *,
    device: str = "cpu",
    max_upload_mb: float = 20,
    max_pixels: Optional[int] = None,
    local: bool = True,
    limits: Optional[Dict[str, Any]] = None,
) -> FastAPI:
    """The web app over the run folders in ``runs_dir`` (read only). Uploads larger than
    ``max_upload_mb`` per file or images with more than ``max_pixels`` pixels (default: the size policy of
    :func:`ganforge.imaging.max_pixels`) are refused. ``limits``: the other :class:`~ganforge.web.core.Limits`
    by name (``{"max_queue": 4}``), else their ``GANFORGE_WEB_<NAME>`` environment variables, else defaults.

    ``local`` (served on this machine only): requests must name a local host (``Host: 127.0.0.1:7860``,
    ``localhost``), so a web page whose name points at 127.0.0.1 (DNS rebinding) cannot read the app; and
    always, requests from other sites are refused (:func:`refuse_cross_site`) and every response carries a
    Content-Security-Policy and ``X-Frame-Options: DENY``."""
    from ganforge.tasks import TASKS

    TASKS.names()  # the registries the requests read, loaded now: two request threads never race to load them
    folder = RunsFolder(Path(runs_dir))
    lim = Limits.from_env(max_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels, **(limits or {}))
    cache = HandleCache(device=device)
    jobs = Jobs(lim)
    app = FastAPI(title="ganforge", docs_url=None, redoc_url=None, openapi_url=None)
    if local:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOCAL_HOSTS))
    app.add_middleware(SecurityMiddleware)  # added last: outermost, so its headers are on every answer
    app.state.folder, app.state.jobs, app.state.cache, app.state.limits = folder, jobs, cache, lim
    app.router.add_event_handler(
        "shutdown", jobs.shutdown
    )  # Ctrl-C: waiting jobs' uploads removed, the running one stopped
    pages = sorted((PAGES.get(n) for n in PAGES.names()), key=lambda p: (p.order, p.name))  # loads PAGES

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/pages")
    def list_pages() -> Dict[str, Any]:
        return {"runs_dir": str(folder.root), "pages": [p.to_json(lim) for p in pages], "limits": lim.to_json()}

    @app.get("/api/status")
    def status() -> Dict[str, Any]:
        """The server's load and what it holds: the queue, the jobs kept and the bytes of their results, the
        scratch folders not yet removed, resident memory, and the limits."""
        return {
            "jobs": jobs.status(),
            "scratch_folders": len(Scratch.live),
            "memory_bytes": _rss_bytes(),
            "limits": lim.to_json(),
        }

    summaries: Dict[str, Any] = {}  # run name -> (the files' stamps, its summary): reread only what changed
    cards: Dict[Path, Any] = {}  # built-in model's folder -> (its files' stamps, its summary)

    def builtin_models() -> List[Dict[str, Any]]:
        from ganforge import models

        out = []
        for name in models.names():
            where = models.folder(name)
            stamp = _stamp_model(where)
            if cards.get(where, (None,))[0] != stamp:
                cards[where] = (stamp, builtin_summary(name))
            out.append(cards[where][1])
        return out

    @app.get("/api/runs")
    def list_runs() -> Dict[str, Any]:
        out = []
        for name in folder.run_names():
            stamp = _stamp(folder.root / name)
            cached = summaries.get(name)
            if cached is None or cached[0] != stamp:
                summary = run_summary(folder, name)
                if "error" in summary:
                    summary["error"] = folder.clean(summary["error"])
                cached = summaries[name] = (stamp, summary)
            r = dict(cached[1])
            if "updated" in r:  # whether it is training depends on the clock, not only on the files
                r["live"] = _live(r["updated"], r["progress"])
            out.append(r)
        return {"runs_dir": str(folder.root), "runs": out, "builtin": builtin_models()}

    @app.get("/api/runs/{name:path}/options/{page}")
    def run_options(name: str, page: str):
        if page not in PAGES:
            return _error(404, f"error: no page {page!r}")
        p = PAGES.get(page)
        try:
            run = folder.model(name, p.tasks)  # the run's task checked first: a page's code sees only its own
            return {"options": p.run_options(run, cache) if p.run_options else {}}
        except GanforgeError as e:
            return _error(400, folder.clean(f"error: {e}"))

    @app.get("/files/{rel:path}")
    def files(rel: str):
        try:
            path = folder.inside(rel)
        except Forbidden:
            return _error(403, "error: that path is outside the runs folder")
        if not path.is_file() or path.suffix.lower() not in SERVED_SUFFIXES:
            return _error(404, f"error: no such image in the runs folder: {rel}")
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    def busy() -> JSONResponse:
        r = _error(
            429,
            f"error: the server is busy: {lim.max_queue} jobs are waiting, the most it queues "
            "(GANFORGE_WEB_MAX_QUEUE); try again when one has finished",
        )
        r.headers["Retry-After"] = "2"
        return r

    @app.post("/api/pages/{page}")
    async def submit(page: str, request: Request):
        if page not in PAGES:
            return _error(404, f"error: no page {page!r}")
        p = PAGES.get(page)
        if jobs.full():  # before the upload is read: nothing written for a request that cannot be queued
            return busy()
        length = request.headers.get("content-length")
        n_files = sum(f.kind in ("image", "mask") for f in p.fields)
        allowed = lim.max_bytes * max(n_files, 1) + 2**20
        if length is None or not length.isdigit():
            return _error(411, "error: the upload has no Content-Length")
        if int(length) > allowed:
            return _error(
                413,
                f"error: the upload is {mb(int(length))}; this server accepts at most "
                f"{mb(lim.max_bytes)} per file (ganforge serve --max-upload-mb)",
            )
        scratch = Scratch()
        job = Job(page, scratch)
        job.cache = cache

        def clean(msg: str) -> str:
            return folder.clean(scratch.clean_message(msg))

        job.clean = clean
        try:
            try:
                form = await request.form(max_files=n_files, max_fields=len(p.fields) + 4)
            except (HTTPException, ValueError, KeyError) as e:  # a malformed body: multipart's own errors
                raise UsageError(f"the form cannot be read ({getattr(e, 'detail', None) or e})") from None
            try:
                values = {}
                for f in p.fields:
                    v = f.parse(form.get(f.name), scratch, lim)
                    if f.kind == "run":
                        v = await run_in_threadpool(folder.model, str(v), p.tasks)  # its task checked here
                    elif f.kind in ("image", "mask") and v is not None:
                        v = await _save_upload(v, scratch, lim, "mask" if f.kind == "mask" else "image", f.name)
                    values[f.name] = v
            finally:
                await form.close()
            if p.check is not None:  # what the job would make, checked against the limits before it is queued
                await run_in_threadpool(p.check, values, cache, lim)
        except GanforgeError as e:
            scratch.close()
            return _error(400, clean(f"error: {e}"))
        except BaseException:
            scratch.close()
            raise

        def work(j: Job):
            return p.run(values, j)

        try:
            jobs.submit(job, work)
        except QueueFull:
            scratch.close()
            return busy()
        return {"job": job.id}

    @app.get("/api/jobs/{job_id}")
    def job_state(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            return _error(404, f"error: no such job (the server keeps the last {lim.max_jobs_kept} finished jobs)")
        return job.to_json()

    @app.post("/api/jobs/{job_id}/cancel")
    def job_cancel(job_id: str):
        job = jobs.cancel(job_id)
        if job is None:
            return _error(404, "error: no such job")
        return {"id": job.id, "state": job.state, "cancelling": job.cancelling and job.state == "running"}

    @app.get("/api/jobs/{job_id}/outputs/{index}/{name}")
    def job_output(job_id: str, index: int, name: str):
        job = jobs.get(job_id)
        if job is None or not 0 <= index < len(job.outputs):
            return _error(404, "error: no such output")
        o = job.outputs[index]
        disp = "attachment" if o.kind == "file" else "inline"
        return Response(
            o.data,
            media_type=o.mime,
            headers={"Content-Disposition": f'{disp}; filename="{o.name}"', "Cache-Control": "no-store"},
        )

    return app


async def _save_upload(upload, scratch: Scratch, limits: Limits, what: str, field: str) -> Path:
    """Write an uploaded file into the job's scratch folder, refusing more than the size limit, and
    check it is an image of at most ``limits.max_pixels`` pixels whose pixels can be read (decoded on a
    worker thread: the server keeps answering meanwhile)."""
    from ganforge.errors import ImageError
    from ganforge.web.core import safe_name

    name = safe_name(upload.filename, f"{what}.png")
    path = scratch.path(name, sub=field)
    size = 0
    with open(path, "wb") as f:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limits.max_bytes:
                raise ImageError(
                    f"{what} '{name}' is larger than {mb(limits.max_bytes)}, the most this "
                    "server accepts (ganforge serve --max-upload-mb)"
                )
            f.write(chunk)
    await run_in_threadpool(check_image_upload, path, limits, what)
    return path


def serve(runs_dir: Any = "runs", host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> None:
    """Serve :func:`create_app` with uvicorn until interrupted."""
    import uvicorn

    app = create_app(runs_dir, local=host in LOCAL_HOSTS, **kwargs)
    uvicorn.run(app, host=host, port=port, log_level="warning")


class BackgroundServer:
    """The app served by uvicorn on a thread (for tests and notebooks): ``with BackgroundServer(runs) as url:``."""

    def __init__(self, runs_dir: Any, host: str = "127.0.0.1", port: int = 0, **kwargs: Any):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self.app = create_app(runs_dir, **kwargs)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self.url
            time.sleep(0.05)
        raise RuntimeError("the web server did not start")

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
