"""What every page of the web app shares: the runs folder (read only, nothing outside it served) and the
built-in models beside it, uploads (size and pixel limits), the limits on what a job may ask for
(:class:`Limits`), background jobs with progress and cancellation in a bounded queue, and the declarative page.

A page (:class:`Page`) is a form and one function: its :class:`Field` list says what the browser shows
(a run picker, numbers, choices, an image upload, a mask drawn with the mouse), and ``run(form, job)``
calls the task's app functions and returns :class:`Output` items. The browser code (``static/app.js``)
draws any page from its fields, so a new page is a task's ``web.py`` registered in :data:`PAGES`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image

from ganforge.errors import GanforgeError, ImageError, RunError, UsageError

MAX_UPLOAD_MB = 20  # default limit of one uploaded file
SERVED_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".webp", ".mp4")  # what /files/ serves from a run folder
LIMITS_ENV = "GANFORGE_WEB_"  # GANFORGE_WEB_MAX_QUEUE=4 ...: each of Limits' fields but the upload's two


# ---- the runs folder ------------------------------------------------------------------------------


class Forbidden(Exception):
    """A path that leads outside the runs folder (answered with 403, never read)."""


class RunsFolder:
    """The folder of runs the app shows. Everything read from disk goes through :meth:`inside`, which
    refuses any path that resolves (symbolic links followed) outside it; nothing is ever written here."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()

    def inside(self, rel: str) -> Path:
        """``root/rel`` resolved, or :class:`Forbidden` when it leads outside the root."""
        if "\x00" in rel:
            raise Forbidden(rel)
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            raise Forbidden(rel)
        return p

    def run_names(self) -> List[str]:
        """The run folders (those with a config.yaml) in the root and in its subfolders, one level down
        (``runs/exp1/00003-mnist-dcgan``), as paths relative to the root, sorted."""
        from ganforge.runs import is_run_dir

        if not self.root.is_dir():
            return []
        names = []
        for p in sorted(self.root.iterdir()):
            if not p.is_dir() or p.name.startswith("."):
                continue
            if is_run_dir(p):
                names.append(p.name)
            else:
                try:
                    names += [f"{p.name}/{q.name}" for q in sorted(p.iterdir()) if q.is_dir() and is_run_dir(q)]
                except OSError:
                    continue
        return sorted(n for n in names if self._within(n))

    def _within(self, rel: str) -> bool:
        try:
            self.inside(rel)
            return True
        except Forbidden:  # a link to a folder elsewhere is not listed
            return False

    def run(self, name: str) -> Path:
        """The run folder ``name`` (as :meth:`run_names` lists it), or a one-line :class:`RunError`."""
        if not name:
            raise RunError("run: choose a run folder")
        if name not in self.run_names():  # only what the listing offers: no '..', no absolute paths
            raise RunError(f"run '{name}' is not a run folder of the runs folder (the Runs page lists them)")
        try:
            return self.inside(name)
        except Forbidden:  # a link to a run elsewhere
            raise RunError(f"run '{name}' leads outside the runs folder") from None

    def clean(self, msg: str) -> str:
        """``msg`` with the runs folder's absolute path taken out (paths relative to it, as the pages name
        runs) and a built-in model's folder named ``builtin:NAME``: an error line shows nothing of the
        server's file system."""
        from ganforge import models

        for root, prefix in ((self.root, ""), (models.ROOT, models.BUILTIN_PREFIX)):
            msg = msg.replace(f"{root}{os.sep}", prefix).replace(str(root), "the runs folder" if not prefix else "")
        return msg

    def model(self, name: str, tasks: Sequence[str] = ()) -> Path:
        """What a run picker's value means: ``builtin:NAME``, the folder of that built-in model (only a name
        :func:`ganforge.models.names` lists, of one of ``tasks`` when given), else the run folder ``name``
        (:meth:`run`). A run folder called like a built-in model stays a run: only the prefix picks the model."""
        from ganforge import models, runs

        if not name.startswith(models.BUILTIN_PREFIX):
            path = self.run(name)
            if tasks:  # checked here, before any page's code sees the run: a wrong task is one line, never a crash
                task = runs.run_task(path)
                if task not in tasks:
                    raise RunError(f"this page takes {' / '.join(tasks)} runs; '{name}' is a {task} run")
            return path
        bare = name[len(models.BUILTIN_PREFIX) :]
        have = models.names()
        if bare not in have:  # only the package's own models: no paths, no '..'
            raise RunError(
                f"no built-in model named {bare!r}"
                + (f"; built-in models: {', '.join(have)}" if have else "; this ganforge has no built-in models")
            )
        task = builtin_task(bare)
        if tasks and task not in tasks:
            raise RunError(f"built-in model {bare!r} is a {task} model; this page takes {' / '.join(tasks)} models")
        return models.folder(bare)


# ---- built-in models ----------------------------------------------------------------------------------


def builtin_task(name: str) -> str:
    """The task of the built-in model ``name``: its card's, else its config's."""
    from ganforge import models, runs

    return str(models.get(name).meta.get("task") or runs.run_task(models.folder(name)))


def builtin_summary(name: str) -> Dict[str, Any]:
    """One built-in model as the Runs page and the run pickers show it, from its model card alone: the name,
    the picker's value (``builtin:NAME``), task, summary, input -> output, headline figure, size, data."""
    from ganforge import models
    from ganforge.models.card import card_summary

    out: Dict[str, Any] = {"name": name, "value": models.BUILTIN_PREFIX + name}
    try:
        card = models.get(name)
        row = card_summary(card)
        return row | out | {"task": builtin_task(name), "summary": str(card.meta.get("summary") or "").strip()}
    except GanforgeError as e:
        return out | {"error": f"error: {e}"}


# ---- uploads -----------------------------------------------------------------------------------------


@dataclass
class Limits:
    """What a request may ask of the server. An upload: ``max_bytes`` per file (``ganforge serve
    --max-upload-mb``), ``max_pixels`` per image (``--max-pixels``, else ``GANFORGE_MAX_PIXELS``, else
    :data:`ganforge.imaging.MAX_PIXELS`). A job: the pixels it may produce (``max_output_pixels``: all images
    and frames together, e.g. an upscale's output), latent-search ``max_steps`` and ``max_restarts``,
    ``max_frames`` of a walk or clip, the largest upscaling ``max_tile``. The server: ``max_queue`` jobs
    waiting (more are refused with 429), finished jobs kept (``max_jobs_kept``, holding at most
    ``max_kept_mb`` of results). Each of these has the environment variable ``GANFORGE_WEB_<NAME>``
    (``GANFORGE_WEB_MAX_QUEUE=4``), read by :meth:`from_env`. The pages show them as their fields' maxima."""

    max_bytes: int = MAX_UPLOAD_MB * 2**20
    max_pixels: int = field(default_factory=lambda: _size_policy())
    max_output_pixels: int = 40_000_000  # x4 of a 1920x1080 photo
    max_steps: int = 1000
    max_restarts: int = 16
    max_frames: int = 64
    max_tile: int = 512
    max_queue: int = 8
    max_jobs_kept: int = 16
    max_kept_mb: float = 256

    @classmethod
    def from_env(cls, environ: Optional[Dict[str, str]] = None, **given: Any) -> "Limits":
        """The defaults, replaced by ``GANFORGE_WEB_<NAME>`` variables, replaced by ``given`` (None: not given).
        A value that is not a positive number is a one-line :class:`UsageError`."""
        environ = os.environ if environ is None else environ
        values: Dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            kind = float if f.type in (float, "float") else int
            raw = given.get(name)
            where = name
            if raw is None and name not in ("max_bytes", "max_pixels"):
                raw, where = environ.get(LIMITS_ENV + name.upper()), LIMITS_ENV + name.upper()
            if raw is None:
                continue
            try:
                v = kind(str(raw).strip().replace("_", "")) if isinstance(raw, str) else kind(raw)
            except ValueError:
                v = None
            if v is None or v <= 0:
                what = "number" if kind is float else "whole number"
                raise UsageError(f"{where}={raw!r}: expected a positive {what}")
            values[name] = v
        unknown = sorted(k for k in given if k not in cls.__dataclass_fields__)
        if unknown:
            raise UsageError(f"unknown web app limits: {', '.join(unknown)}")
        return cls(**values)

    def to_json(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    def check_output(self, pixels: int, what: str) -> None:
        """A one-line :class:`UsageError` when a job would produce more than ``max_output_pixels``."""
        if pixels > self.max_output_pixels:
            raise UsageError(
                f"{what} would be {pixels:,} pixels; this server makes at most {self.max_output_pixels:,} pixels "
                f"per job ({LIMITS_ENV}MAX_OUTPUT_PIXELS)"
            )


def _size_policy() -> int:
    """The image size policy the command line applies too (:func:`ganforge.imaging.max_pixels`: its
    ``MAX_PIXELS``, or ``GANFORGE_MAX_PIXELS``), read when the app starts (imaging imports torch)."""
    from ganforge import imaging

    return imaging.max_pixels()


def safe_name(name: str, default: str = "upload.png") -> str:
    """A file name without folders or odd characters (what the user's file is called in messages)."""
    name = re.sub(r"[\x00-\x1f\x7f/\\\\:]+", "-", (name or "").replace("\\", "/").split("/")[-1]).strip(" .")
    return name or default


class Scratch:
    """A private temporary folder for one job's uploads and outputs (never inside the runs folder);
    :meth:`clean_message` turns its paths back into the names the user knows."""

    live: set = set()  # the folders not yet removed (what /api/status reports)
    _lock = threading.Lock()

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ganforge-web-"))
        self._subs: List[Path] = []
        with Scratch._lock:
            Scratch.live.add(self.dir)

    def path(self, name: str, sub: str = "") -> Path:
        """``name`` (made safe) in the folder, or in its subfolder ``sub`` (one per upload field, so that
        two uploads of the same name do not meet)."""
        if not sub:
            return self.dir / safe_name(name)
        folder = self.dir / safe_name(sub)
        folder.mkdir(exist_ok=True)
        self._subs.append(folder)
        return folder / safe_name(name)

    def clean_message(self, msg: str) -> str:
        for folder in self._subs:
            msg = msg.replace(str(folder) + "/", "")
        return msg.replace(str(self.dir) + "/", "").replace(str(self.dir), "")

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        with Scratch._lock:
            Scratch.live.discard(self.dir)


def check_image_upload(path: Path, limits: Limits, what: str = "image") -> Tuple[int, int]:
    """(width, height) of an uploaded image, or a one-line :class:`ImageError`: not an image (the message
    ``ganforge`` prints for such a file), more pixels than allowed (from the header, before decoding), or
    pixels that cannot be decoded (a truncated or damaged file: found here, not by the job)."""
    import warnings

    from ganforge.imaging import READ_ERRORS, image_size

    w, h = image_size(path, what)
    if w * h > limits.max_pixels:
        raise ImageError(
            f"{what} '{path.name}' is {w}x{h} ({w * h:,} pixels); this server accepts at most "
            f"{limits.max_pixels:,} pixels (ganforge serve --max-pixels)"
        )
    try:
        with warnings.catch_warnings():  # PIL's DecompressionBombWarning: the limit above is the policy
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
    except READ_ERRORS as e:
        raise ImageError(f"cannot read {what} '{path.name}': {e} (a damaged or incomplete file?)") from None
    return w, h


# ---- pages -------------------------------------------------------------------------------------------


@dataclass
class Field:
    """One input of a page's form.

    kind: ``run`` (a run folder or built-in model of the page's tasks), ``int``, ``float``, ``text``, ``select``
    (``choices``), ``check`` (a box), ``image`` (an upload), ``mask`` (drawn with the mouse over the
    ``image`` field named in ``over``). ``depends``: the choices come from the chosen run
    (``Page.run_options``); a field with no choices for that run is hidden (e.g. the class of an
    unconditional GAN). ``limit``: the :class:`Limits` field that is this field's maximum (``max_steps``),
    shown by the page and checked by the server.
    """

    name: str
    kind: str
    label: str = ""
    default: Any = None
    choices: Sequence[Any] = ()
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None
    help: str = ""
    optional: bool = False  # an empty value means None
    over: str = ""  # mask: the image field it is drawn on
    depends: bool = False
    limit: str = ""  # the Limits field that is its maximum

    def max_for(self, limits: Limits) -> Optional[float]:
        """The largest value this server takes: its limit, else the field's own maximum."""
        return getattr(limits, self.limit) if self.limit else self.max

    def to_json(self, limits: Optional[Limits] = None) -> Dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (None, "", ())} | {
            "name": self.name,
            "kind": self.kind,
            "choices": list(self.choices),
        }
        if self.limit and limits is not None:
            out["max"] = self.max_for(limits)
        return out

    def parse(self, raw: Any, scratch: "Scratch", limits: Limits) -> Any:
        """The value of this field from the submitted form (strings and uploaded files), checked."""
        label = self.label or self.name
        if self.kind in ("image", "mask"):
            if raw is None or not getattr(raw, "filename", None):
                if self.optional:
                    return None
                raise ImageError(
                    f"{label}: choose an image file" if self.kind == "image" else f"{label}: draw the mask"
                )
            return raw  # saved and checked by the app (see App._save_upload)
        text = "" if raw is None else str(raw).strip()
        if self.kind == "check":
            return text.lower() in ("1", "true", "on", "yes")
        if text == "" or text.lower() == "none":
            if self.optional:
                return None
            if self.default is not None:
                return self.default
            raise UsageError(f"{label}: a value is needed")
        if self.kind in ("int", "float"):
            try:
                v = int(text) if self.kind == "int" else float(text)
            except ValueError:
                raise UsageError(
                    f"{label} {text!r}: expected {'a whole number' if self.kind == 'int' else 'a number'}"
                ) from None
            top = self.max_for(limits)
            if (self.min is not None and v < self.min) or (top is not None and v > top):
                lo = "" if self.min is None else f"{self.min:g}"
                hi = "" if top is None else f"{top:g}"
                why = f" (this server's limit, {LIMITS_ENV}{self.limit.upper()})" if self.limit and v > top else ""
                raise UsageError(f"{label} {v:g}: expected a value from {lo or '-inf'} to {hi or 'inf'}{why}")
            return v
        if self.kind == "select" and self.choices and not self.depends and text not in [str(c) for c in self.choices]:
            raise UsageError(f"{label} {text!r}: choose one of {', '.join(map(str, self.choices))}")
        return text


@dataclass
class Output:
    """One result shown on the page: ``image`` (shown, with its size), ``file`` (a download link) or
    ``text`` (a line). ``data`` is the file's bytes (PNG, GIF, npz ...), kept once: an image that is also
    offered as a download names the download's group in ``download`` (the link serves the same bytes)."""

    kind: str
    name: str
    data: bytes = b""
    mime: str = "application/octet-stream"
    text: str = ""
    size: Optional[Tuple[int, int]] = None  # (width, height) of an image
    group: str = ""  # images of one group are shown side by side
    download: str = ""  # an image: also a download link in this group


def png_output(img: Image.Image, name: str, group: str = "result", download: str = "") -> Output:
    """A PIL image as a PNG :class:`Output` (fast compression: a big result is encoded in a moment)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1 if img.width * img.height > 2**20 else 6)
    return Output("image", name, buf.getvalue(), "image/png", size=img.size, group=group, download=download)


def file_output(
    path: Path, name: Optional[str] = None, kind: str = "file", group: str = "result", download: str = ""
) -> Output:
    """A file written by an app (in the job's scratch folder) as an :class:`Output` (``download``: see there)."""
    data = Path(path).read_bytes()
    mime = {".png": "image/png", ".gif": "image/gif", ".npz": "application/zip"}.get(
        Path(path).suffix.lower(), "application/octet-stream"
    )
    size = None
    if kind == "image":
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
    return Output(kind, name or Path(path).name, data, mime, size=size, group=group, download=download)


@dataclass
class Page:
    """A page of the app: a form (``fields``), what it does (``run``), and the tasks whose runs it uses.

    ``run(form, job) -> [Output]``: ``form`` maps field names to parsed values (``run`` to the run
    folder's Path, or a built-in model's folder, images to their saved Path); report progress with
    ``job.progress(done, total, text)``.
    ``run_options(run_dir, cache) -> {field: [choices]}`` fills the fields marked ``depends`` for a run.
    ``check(form, cache, limits)``: called when the form is sent, before the job is queued, to refuse (with a
    one-line :class:`GanforgeError`, answered 400) what would exceed the limits, such as the pixels an
    upscale would make. The server checks the run's task (``tasks``) before either is called.
    ``job.progress`` is also where a cancelled job stops: call it between steps, tiles, images.
    """

    name: str
    title: str
    summary: str
    tasks: Tuple[str, ...]  # tasks whose runs the run picker offers (() = no run needed)
    fields: List[Field]
    run: Callable[[Dict[str, Any], "Job"], List[Output]]
    run_options: Optional[Callable[[Path, "HandleCache"], Dict[str, List[Any]]]] = None
    order: int = 100
    default_model: str = ""  # the built-in model the run picker starts with when the folder has no run of the tasks
    check: Optional[Callable[[Dict[str, Any], "HandleCache", Limits], None]] = None

    def to_json(self, limits: Optional[Limits] = None) -> Dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "summary": self.summary,
            "tasks": list(self.tasks),
            "default_model": self.default_model,
            "fields": [f.to_json(limits) for f in self.fields],
        }


# ---- loaded models -------------------------------------------------------------------------------------


class HandleCache:
    """Loaded handles, keyed by what was loaded and the checkpoint's identity, so a run that keeps
    training is reloaded when it writes a new checkpoint; the least recently used are dropped."""

    def __init__(self, size: int = 4, device: str = "cpu"):
        self.size, self.device = size, device
        self._items: "OrderedDict[tuple, Any]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def load(self, run_dir: Path, checkpoint: str = "last", ema: bool = True) -> Any:
        """``ganforge.load(run_dir, checkpoint, ema)``, cached by the checkpoint folder and its meta.json."""
        from ganforge import runs
        from ganforge.api import load

        folder = runs.find_checkpoint(run_dir, checkpoint)
        meta = folder / "meta.json"
        stamp = meta.stat().st_mtime_ns if meta.exists() else 0
        return self.get(
            ("handle", str(folder), stamp, bool(ema)),
            lambda: load(run_dir, checkpoint=str(folder), ema=ema, device=self.device),
        )


# ---- jobs ------------------------------------------------------------------------------------------------


class Cancelled(BaseException):
    """Raised in a job's thread by :meth:`Job.progress` once the job is cancelled (a BaseException, so
    that no ``except Exception`` of the code it runs can swallow it)."""


class QueueFull(Exception):
    """The queue holds :attr:`Limits.max_queue` jobs already (answered with 429)."""


class Job:
    """One page action running in the background: state, progress, outputs or the error line. It owns its
    scratch folder (uploads and files written), removed when it ends however it ends."""

    def __init__(self, page: str, scratch: Optional[Scratch] = None):
        self.id = uuid.uuid4().hex
        self.page = page
        self.state = "queued"  # queued | running | done | error | cancelled
        self.done: Optional[int] = None
        self.total: Optional[int] = None
        self.message = ""
        self.error = ""
        self.outputs: List[Output] = []
        self.started = time.time()
        self.finished: Optional[float] = None
        self.scratch = scratch
        self.cache: Optional[HandleCache] = None
        self.clean: Callable[[str], str] = lambda s: s  # turns scratch paths in messages into the user's names
        self._cancel = threading.Event()

    def progress(self, done: int, total: int, message: str = "") -> None:
        """Report progress; raises :class:`Cancelled` once the job is cancelled (the point where it stops)."""
        if self._cancel.is_set():
            raise Cancelled()
        self.done, self.total = int(done), int(total)
        if message:
            self.message = message

    def check(self) -> None:
        """Stop here (:class:`Cancelled`) if the job was cancelled."""
        if self._cancel.is_set():
            raise Cancelled()

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set()

    @property
    def nbytes(self) -> int:
        """The bytes of its results held in memory."""
        return sum(len(o.data) + len(o.text) for o in self.outputs)

    def close(self) -> None:
        """Remove its scratch folder (uploads, files written)."""
        if self.scratch is not None:
            self.scratch.close()

    def to_json(self) -> Dict[str, Any]:
        end = self.finished or time.time()
        outputs = []
        for i, o in enumerate(self.outputs):
            url = f"/api/jobs/{self.id}/outputs/{i}/{o.name}" if o.data else None
            outputs.append(
                {
                    "kind": o.kind,
                    "name": o.name,
                    "text": o.text,
                    "group": o.group,
                    "width": o.size[0] if o.size else None,
                    "height": o.size[1] if o.size else None,
                    "url": url,
                }
            )
            if o.download and url:  # the same bytes, offered as a download too (stored once)
                outputs.append({"kind": "file", "name": o.name, "text": "", "group": o.download, "url": url})
        return {
            "id": self.id,
            "page": self.page,
            "state": self.state,
            "cancelling": self.cancelling and self.state in ("queued", "running"),
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "error": self.error,
            "seconds": round(end - self.started, 2),
            "outputs": outputs,
        }


def _trim_memory() -> None:
    """Give the C heap's free pages back to the system (glibc), so that memory a big job used does not stay
    resident after it; nothing elsewhere."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        if sys.platform.startswith("linux"):
            try:
                _MALLOC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):
                pass
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


class Jobs:
    """Runs jobs one at a time on a worker thread (the models share the CPU threads torch was given) from a
    queue of at most ``limits.max_queue`` waiting jobs (:class:`QueueFull` beyond), keeping the last
    ``limits.max_jobs_kept`` finished jobs in memory, fewer when their results pass ``limits.max_kept_mb``.
    A :class:`GanforgeError` becomes the job's error line ``error: ...``, as the command line prints it; any
    other exception is reported as an internal error with its type. A job's scratch folder is removed when it
    ends (done, failed or cancelled)."""

    def __init__(self, limits: Optional[Limits] = None):
        self.limits = limits or Limits()
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._lock = threading.Lock()
        self._queue: List[Tuple[Job, Callable[[Job], List[Output]]]] = []
        self._running: Optional[Job] = None
        self._closed = False
        self._cv = threading.Condition(self._lock)
        self._worker = threading.Thread(target=self._loop, name="ganforge-web-jobs", daemon=True)
        self._worker.start()

    def full(self) -> bool:
        with self._lock:
            return len(self._queue) >= self.limits.max_queue

    def submit(self, job: Job, fn: Callable[[Job], List[Output]]) -> Job:
        """Queue ``job``; :class:`QueueFull` (nothing queued) when ``limits.max_queue`` jobs wait already."""
        with self._cv:
            if self._closed:
                raise QueueFull("error: the server is stopping")
            if len(self._queue) >= self.limits.max_queue:
                raise QueueFull(
                    f"error: the server is busy: {len(self._queue)} jobs are waiting, the most it queues "
                    f"({LIMITS_ENV}MAX_QUEUE); try again when one has finished"
                )
            self._jobs[job.id] = job
            self._queue.append((job, fn))
            self._cv.notify()
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Optional[Job]:
        """Cancel a job: a queued one is dropped at once (its uploads removed), a running one stops at its
        next progress report; a finished one stays as it is. None for an unknown job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state not in ("queued", "running"):
                return job
            job._cancel.set()
            queued = [i for i, (j, _) in enumerate(self._queue) if j is job]
            if queued:
                self._queue.pop(queued[0])
                self._finish(job, "cancelled")
        if queued:
            job.close()
        return job

    def shutdown(self, timeout: float = 10) -> None:
        """Stop: the waiting jobs are cancelled (their uploads removed), the running one is asked to stop, and
        the worker is given ``timeout`` seconds to finish (the server's shutdown)."""
        with self._cv:
            self._closed = True
            queued = [j for j, _ in self._queue]
            self._queue.clear()
            for j in queued:
                j._cancel.set()
                self._finish(j, "cancelled")
            if self._running is not None:
                self._running._cancel.set()
            self._cv.notify_all()
        for j in queued:
            j.close()
        self._worker.join(timeout)

    def status(self) -> Dict[str, Any]:
        """What the jobs hold: queued, running, kept (finished) and the bytes of their results."""
        with self._lock:
            finished = [j for j in self._jobs.values() if j.finished is not None]
            return {
                "queued": len(self._queue),
                "running": 0 if self._running is None else 1,
                "kept": len(finished),
                "bytes": sum(j.nbytes for j in finished),
                "max_queue": self.limits.max_queue,
                "max_kept": self.limits.max_jobs_kept,
                "max_kept_bytes": int(self.limits.max_kept_mb * 2**20),
            }

    def _finish(self, job: Job, state: str) -> None:
        """Mark ``job`` ended and drop the oldest finished jobs beyond the limits (lock held)."""
        job.state, job.finished = state, time.time()
        if state == "cancelled":
            job.message = "cancelled"
        finished = [j for j in self._jobs.values() if j.finished is not None]
        held = sum(j.nbytes for j in finished)
        cap = self.limits.max_kept_mb * 2**20
        while finished and (len(finished) > self.limits.max_jobs_kept or (held > cap and len(finished) > 1)):
            old = finished.pop(0)
            held -= old.nbytes
            self._jobs.pop(old.id, None)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    if self._closed:
                        return
                    self._cv.wait()
                job, fn = self._queue.pop(0)
                self._running = job
                job.state, job.started = "running", time.time()
            outputs: List[Output] = []
            state = "done"
            try:
                job.check()
                outputs = list(fn(job))
                job.check()  # cancelled at the last moment: no results
            except Cancelled:
                outputs, state = [], "cancelled"
            except GanforgeError as e:
                job.error, state = job.clean(f"error: {e}"), "error"
            except Exception as e:  # a bug, not the user's input: say so, and log the traceback
                traceback.print_exc()
                job.error, state = job.clean(f"internal error: {type(e).__name__}: {e}"), "error"
            finally:
                del fn  # the form's values: nothing of the job's input stays in memory
                job.close()
            with self._lock:
                job.outputs = outputs
                self._running = None
                self._finish(job, state)
            del outputs
            _trim_memory()


# ---- the registry of pages ----------------------------------------------------------------------------

from ganforge.registry import Registry  # noqa: E402


def _load_task_pages() -> None:
    """Import the ``web.py`` of every task that has one (each registers its page)."""
    import importlib
    import importlib.util

    from ganforge.tasks import NAMES

    for task in NAMES:
        if importlib.util.find_spec(f"ganforge.tasks.{task}.web") is not None:
            importlib.import_module(f"ganforge.tasks.{task}.web")


PAGES: "Registry[Page]" = Registry("page", loader=_load_task_pages)


def register(page: Page) -> Page:
    """Add ``page`` to :data:`PAGES` under its name (one call at the end of each page module)."""
    return PAGES.register(page.name)(page)


def checkpoint_field() -> Field:
    return Field(
        "checkpoint",
        "select",
        "checkpoint",
        "last",
        ("last", "best"),
        help="the newest checkpoint, or the one with the lowest FID",
    )


def ema_field() -> Field:
    return Field("ema", "check", "EMA weights", True, help="the moving average of the weights (else the trained ones)")


def model_fields(ema: bool = True) -> List[Field]:
    """The fields that pick the model every page starts with: the run, its checkpoint (and the EMA weights)."""
    return [Field("run", "run", "run"), checkpoint_field()] + ([ema_field()] if ema else [])
