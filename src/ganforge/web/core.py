"""What every page of the web app shares: the runs folder (read only, nothing outside it served) and the
built-in models beside it, uploads (size and pixel limits), background jobs with progress, and the
declarative page.

A page (:class:`Page`) is a form and one function: its :class:`Field` list says what the browser shows
(a run picker, numbers, choices, an image upload, a mask drawn with the mouse), and ``run(form, job)``
calls the task's app functions and returns :class:`Output` items. The browser code (``static/app.js``)
draws any page from its fields, so a new page is a task's ``web.py`` registered in :data:`PAGES`.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image

from ganforge.errors import GanforgeError, ImageError, RunError, UsageError

MAX_UPLOAD_MB = 20  # default limit of one uploaded file
MAX_PIXELS = 16_000_000  # default limit of an uploaded image's width x height (4000 x 4000)
SERVED_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".webp", ".mp4")  # what /files/ serves from a run folder
MAX_JOBS_KEPT = 32  # finished jobs whose results stay in memory


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
            raise RunError(f"run '{name}' is not a run folder in '{self.root}'")
        try:
            return self.inside(name)
        except Forbidden:  # a link to a run elsewhere
            raise RunError(f"run '{name}' leads outside '{self.root}'") from None

    def model(self, name: str, tasks: Sequence[str] = ()) -> Path:
        """What a run picker's value means: ``builtin:NAME``, the folder of that built-in model (only a name
        :func:`ganforge.models.names` lists, of one of ``tasks`` when given), else the run folder ``name``
        (:meth:`run`). A run folder called like a built-in model stays a run: only the prefix picks the model."""
        from ganforge import models

        if not name.startswith(models.BUILTIN_PREFIX):
            return self.run(name)
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
    """What an upload may be: ``max_bytes`` per file, ``max_pixels`` per image."""

    max_bytes: int = MAX_UPLOAD_MB * 2**20
    max_pixels: int = MAX_PIXELS


def safe_name(name: str, default: str = "upload.png") -> str:
    """A file name without folders or odd characters (what the user's file is called in messages)."""
    name = re.sub(r"[\x00-\x1f\x7f/\\\\:]+", "-", (name or "").replace("\\", "/").split("/")[-1]).strip(" .")
    return name or default


class Scratch:
    """A private temporary folder for one job's uploads and outputs (never inside the runs folder);
    :meth:`clean_message` turns its paths back into the names the user knows."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ganforge-web-"))
        self._subs: List[Path] = []

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


def check_image_upload(path: Path, limits: Limits, what: str = "image") -> Tuple[int, int]:
    """(width, height) of an uploaded image read from its header, or a one-line :class:`ImageError`:
    not an image (the message ``ganforge`` prints for such a file), or more pixels than allowed."""
    from ganforge.imaging import image_size

    w, h = image_size(path, what)
    if w * h > limits.max_pixels:
        raise ImageError(
            f"{what} '{path.name}' is {w}x{h} ({w * h:,} pixels); this server accepts at most "
            f"{limits.max_pixels:,} pixels (ganforge serve --max-pixels)"
        )
    return w, h


# ---- pages -------------------------------------------------------------------------------------------


@dataclass
class Field:
    """One input of a page's form.

    kind: ``run`` (a run folder or built-in model of the page's tasks), ``int``, ``float``, ``text``, ``select``
    (``choices``), ``check`` (a box), ``image`` (an upload), ``mask`` (drawn with the mouse over the
    ``image`` field named in ``over``). ``depends``: the choices come from the chosen run
    (``Page.run_options``); a field with no choices for that run is hidden (e.g. the class of an
    unconditional GAN).
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

    def to_json(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "", ())} | {
            "name": self.name,
            "kind": self.kind,
            "choices": list(self.choices),
        }

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
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                lo = "" if self.min is None else f"{self.min:g}"
                hi = "" if self.max is None else f"{self.max:g}"
                raise UsageError(f"{label} {v:g}: expected a value from {lo or '-inf'} to {hi or 'inf'}")
            return v
        if self.kind == "select" and self.choices and not self.depends and text not in [str(c) for c in self.choices]:
            raise UsageError(f"{label} {text!r}: choose one of {', '.join(map(str, self.choices))}")
        return text


@dataclass
class Output:
    """One result shown on the page: ``image`` (shown, with its size), ``file`` (a download link) or
    ``text`` (a line). ``data`` is the file's bytes (PNG, GIF, npz ...)."""

    kind: str
    name: str
    data: bytes = b""
    mime: str = "application/octet-stream"
    text: str = ""
    size: Optional[Tuple[int, int]] = None  # (width, height) of an image
    group: str = ""  # images of one group are shown side by side


def png_output(img: Image.Image, name: str, group: str = "result") -> Output:
    """A PIL image as a PNG :class:`Output`."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return Output("image", name, buf.getvalue(), "image/png", size=img.size, group=group)


def file_output(path: Path, name: Optional[str] = None, kind: str = "file", group: str = "result") -> Output:
    """A file written by an app (in the job's scratch folder) as an :class:`Output`."""
    data = Path(path).read_bytes()
    mime = {".png": "image/png", ".gif": "image/gif", ".npz": "application/zip"}.get(
        Path(path).suffix.lower(), "application/octet-stream"
    )
    size = None
    if kind == "image":
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
    return Output(kind, name or Path(path).name, data, mime, size=size, group=group)


@dataclass
class Page:
    """A page of the app: a form (``fields``), what it does (``run``), and the tasks whose runs it uses.

    ``run(form, job) -> [Output]``: ``form`` maps field names to parsed values (``run`` to the run
    folder's Path, or a built-in model's folder, images to their saved Path); report progress with
    ``job.progress(done, total, text)``.
    ``run_options(run_dir, cache) -> {field: [choices]}`` fills the fields marked ``depends`` for a run.
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

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "summary": self.summary,
            "tasks": list(self.tasks),
            "default_model": self.default_model,
            "fields": [f.to_json() for f in self.fields],
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


class Job:
    """One page action running in the background: state, progress, outputs or the error line."""

    def __init__(self, page: str):
        self.id = uuid.uuid4().hex
        self.page = page
        self.state = "queued"  # queued | running | done | error
        self.done: Optional[int] = None
        self.total: Optional[int] = None
        self.message = ""
        self.error = ""
        self.outputs: List[Output] = []
        self.started = time.time()
        self.finished: Optional[float] = None
        self.clean: Callable[[str], str] = lambda s: s  # turns scratch paths in messages into the user's names

    def progress(self, done: int, total: int, message: str = "") -> None:
        self.done, self.total = int(done), int(total)
        if message:
            self.message = message

    def to_json(self) -> Dict[str, Any]:
        end = self.finished or time.time()
        return {
            "id": self.id,
            "page": self.page,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "error": self.error,
            "seconds": round(end - self.started, 2),
            "outputs": [
                {
                    "kind": o.kind,
                    "name": o.name,
                    "text": o.text,
                    "group": o.group,
                    "width": o.size[0] if o.size else None,
                    "height": o.size[1] if o.size else None,
                    "url": f"/api/jobs/{self.id}/outputs/{i}/{o.name}" if o.data else None,
                }
                for i, o in enumerate(self.outputs)
            ],
        }


class Jobs:
    """Runs jobs one at a time on a worker thread (the models share the CPU threads torch was given),
    keeping the last :data:`MAX_JOBS_KEPT` in memory. A :class:`GanforgeError` becomes the job's error
    line ``error: ...``, as the command line prints it; any other exception is reported as an internal
    error with its type."""

    def __init__(self):
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._lock = threading.Lock()
        self._queue: List[Tuple[Job, Callable[[Job], List[Output]]]] = []
        self._cv = threading.Condition(self._lock)
        self._worker = threading.Thread(target=self._loop, name="ganforge-web-jobs", daemon=True)
        self._worker.start()

    def submit(self, job: Job, fn: Callable[[Job], List[Output]]) -> Job:
        with self._cv:
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_JOBS_KEPT:
                old = next(iter(self._jobs))
                if self._jobs[old].state in ("done", "error"):
                    self._jobs.pop(old)
                else:
                    break
            self._queue.append((job, fn))
            self._cv.notify()
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                job, fn = self._queue.pop(0)
            job.state, job.started = "running", time.time()
            try:
                job.outputs = list(fn(job))
                job.state = "done"
            except GanforgeError as e:
                job.error, job.state = job.clean(f"error: {e}"), "error"
            except Exception as e:  # a bug, not the user's input: say so, and log the traceback
                traceback.print_exc()
                job.error, job.state = job.clean(f"internal error: {type(e).__name__}: {e}"), "error"
            finally:
                job.finished = time.time()


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
