"""Images in and out: the one place that reads and writes image files, masks and boxes, and lays
images out as grids and comparison panels.

Tensors to pictures (:func:`to_uint8`, :func:`make_grid_uint8`, :func:`completion_grid`), files
(:data:`IMAGE_SUFFIXES`, the one list of image extensions; :func:`load_image`, :func:`save_png`, atomic;
:func:`check_writable`, asked before any work), the size policy (:func:`max_pixels`: at most
:data:`MAX_PIXELS` pixels, or ``$GANFORGE_MAX_PIXELS``, for the CLI and the web app alike), the first step of
every folder mode (:func:`usable_images`: each input decoded before any output is written, unusable ones
skipped with ``skip_bad``), masks and boxes (white / True = missing), alpha and channels. A bad file,
image, mask or box raises :class:`~ganforge.errors.ImageError`, an output that cannot be written
:class:`~ganforge.errors.WriteError`, each one line naming the path.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ganforge.errors import GanforgeError, ImageError, WriteError

__all__ = [
    "IMAGE_SUFFIXES",
    "LOSSY_SUFFIXES",
    "MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageLike",
    "Box",
    "FolderResults",
    "Skipped",
    "box_mask",
    "check_writable",
    "compare_image",
    "compare_layout",
    "completion_grid",
    "image_size",
    "images_in",
    "join_alpha",
    "labelled_rows",
    "load_image",
    "load_mask",
    "make_grid_uint8",
    "match_channels",
    "max_pixels",
    "parse_box",
    "save_image",
    "save_png",
    "source_name",
    "split_alpha",
    "to_pil",
    "to_uint8",
    "usable_images",
    "writing",
]

# every file suffix PIL reads that ganforge treats as an image (lower case; compare with .lower())
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")  # formats whose pixels are not stored exactly
MODES = ("L", "LA", "RGB", "RGBA")  # the modes load_image accepts
HOLE_GREY = 128  # how the hole is drawn in the comparison picture
# what PIL raises for a file it cannot read
READ_ERRORS = (OSError, ValueError, Image.DecompressionBombError)
# the largest image (width x height) ganforge decodes, the CLI and the web app alike (4000 x 4000): a file
# that claims more (a decompression bomb, a scan at full resolution) is refused before its pixels are read
MAX_PIXELS = 16_000_000
MAX_PIXELS_ENV = "GANFORGE_MAX_PIXELS"  # set it to a number of pixels to change the limit

ImageLike = Union[str, Path, Image.Image, np.ndarray, torch.Tensor]
Box = Tuple[int, int, int, int]


# ---- tensors and grids -------------------------------------------------------------------------


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 [0, 255] (round half up, clamped)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)


def make_grid_uint8(
    images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2, pad_value: int = 0
) -> np.ndarray:
    """uint8 [N, C, H, W] -> HxWxC uint8 grid (C = 1 or 3)."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = np.full((ncol * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y : y + h, x : x + w] = arr[i]
    return grid


def to_pil(array_hwc: np.ndarray) -> Image.Image:
    """An HxWxC uint8 array (C = 1 or 3) as a PIL image (L or RGB)."""
    return Image.fromarray(array_hwc[..., 0] if array_hwc.shape[2] == 1 else array_hwc)


def labelled_rows(imgs: torch.Tensor, names: Sequence[Any], per_row: int) -> np.ndarray:
    """A grid with one row per class and the class name written at the left of each row:
    uint8 [K * per_row, C, H, W] (class after class) -> HxWx3 uint8."""
    from PIL import ImageDraw

    grid = make_grid_uint8(imgs, nrow=per_row)
    h = imgs.shape[2]
    margin = max(8 * max(len(str(n)) for n in names) + 8, 24)
    canvas = Image.new("RGB", (grid.shape[1] + margin, grid.shape[0]), (255, 255, 255))
    canvas.paste(to_pil(grid).convert("RGB"), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(names):
        draw.text((4, 2 + r * (h + 2) + h // 2 - 5), str(name), fill=(0, 0, 0))
    return np.asarray(canvas)


def completion_grid(masked: torch.Tensor, completed: torch.Tensor, original: torch.Tensor, ncol: int = 8) -> np.ndarray:
    """uint8 [N, C, H, W] x 3 -> HxWxC grid: for each group of ``ncol`` images, a row of masked inputs,
    a row of completions and a row of originals."""
    n = masked.shape[0]
    ncol = max(1, min(ncol, n))
    rows = []
    for i in range(0, n, ncol):
        group = [t[i : i + ncol] for t in (masked, completed, original)]
        k = group[0].shape[0]
        if k < ncol:  # pad the last group with black images so the rows stay aligned
            group = [torch.cat([g, torch.zeros(ncol - k, *g.shape[1:], dtype=g.dtype)]) for g in group]
        rows += group
    return make_grid_uint8(torch.cat(rows), nrow=ncol)


# ---- files -------------------------------------------------------------------------------------


def check_writable(path: Union[str, Path], what: str = "output", folder: bool = False) -> Path:
    """``path`` (a file, or with ``folder=True`` a folder) as a Path, after making sure an output can be
    written there, so that a command fails before its work and not after it: the nearest existing
    folder on the way must be a folder (not a file) in which a file can be created (a probe file is
    made and removed at once; nothing else is created). Raises :class:`WriteError` naming ``what``,
    the path and the cause."""
    p = Path(path).expanduser()
    if p.exists() and p.is_dir() != folder:
        raise WriteError(
            f"cannot write {what} '{p}': it is a {'folder' if p.is_dir() else 'file'}; expected "
            f"{'a folder' if folder else 'a file path'}"
        )
    where = p if folder and p.is_dir() else p.parent
    while not where.exists() and where != where.parent:  # the folders that do not exist yet are made later
        where = where.parent
    if not where.is_dir():
        raise WriteError(f"cannot write {what} '{p}': '{where}' is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ganforge-probe-", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise WriteError(
            f"cannot write {what} '{p}': files cannot be created in '{where}' ({e.strerror or e})"
        ) from None
    if p.is_file() and not os.access(p, os.W_OK):
        raise WriteError(f"cannot write {what} '{p}': the file exists and is read-only")
    return p


@contextmanager
def writing(path: Union[str, Path], what: str = "output") -> Iterator[Path]:
    """Write ``path`` inside this block (its folder is made first): an ``OSError`` (a full disk, a
    missing permission, a path under /proc) becomes one :class:`WriteError` that names ``what``, the
    path and the cause in the system's words ("No space left on device")."""
    p = Path(path).expanduser()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        yield p
    except OSError as e:
        raise WriteError(f"cannot write {what} '{p}': {e.strerror or e}") from None


FAST_PNG_PIXELS = 1_000_000  # larger PNGs are written with zlib level 1: 4x faster than PIL's 6, ~20% larger


def _save_options(img: Image.Image, path: Path) -> dict:
    """PIL save options: large PNGs compressed fast (a 2048x2048 photo: 0.7 s instead of 3 s on one core)."""
    png = path.suffix.lower() in (".png", "")
    return {"compress_level": 1} if png and img.width * img.height > FAST_PNG_PIXELS else {}


def save_png(array_hwc: np.ndarray, path: Union[str, Path]) -> None:
    """Write an HxWxC uint8 array as PNG atomically (temp file + rename), creating the folder."""
    with writing(path, "image") as path:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            img = to_pil(array_hwc)
            img.save(tmp, format="PNG", **_save_options(img, path))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


def save_image(img: Image.Image, path: Union[str, Path]) -> Path:
    """Write ``img`` (PNG unless the suffix says otherwise), creating the folder."""
    path = Path(path).expanduser()
    if path.exists() and path.is_dir():
        raise ImageError(f"output '{path}' is a folder; expected an image file path")
    with writing(path, "image"):
        try:
            img.save(path, format=None if path.suffix else "PNG", **_save_options(img, path))
        except (ValueError, KeyError) as e:  # a suffix PIL cannot write, a mode the format cannot hold
            raise ImageError(f"cannot write '{path}': {e}") from None
    return path


def images_in(folder: Path, what: str = "image") -> List[Path]:
    """The image files (:data:`IMAGE_SUFFIXES`, any case) directly in ``folder``, sorted by name;
    ``what`` names the folder in errors ("image", "mask")."""
    if not folder.exists():
        raise ImageError(f"{what} folder '{folder}' does not exist")
    if not folder.is_dir():
        raise ImageError(f"{what} '{folder}' is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_size(path: Path, what: str = "image") -> Tuple[int, int]:
    """(width, height) from the file's header, or a clear error for a file that is not an image."""
    try:
        with warnings.catch_warnings():  # PIL's DecompressionBombWarning: callers apply max_pixels()
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except READ_ERRORS as e:
        raise ImageError(f"cannot read {what} '{path}': {e}") from None


def max_pixels() -> int:
    """The size policy: the most pixels (width x height) an image that ganforge reads may have,
    :data:`MAX_PIXELS` unless the environment variable ``GANFORGE_MAX_PIXELS`` says otherwise (``ganforge
    serve --max-pixels N`` sets it for the web app). Raises :class:`ImageError` for a value that is not a
    positive integer."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return MAX_PIXELS
    if not raw.isdigit() or int(raw) < 1:
        raise ImageError(f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r}: expected a positive number of pixels")
    n = int(raw)
    if Image.MAX_IMAGE_PIXELS is not None and n > Image.MAX_IMAGE_PIXELS:  # PIL's own bomb check must not
        Image.MAX_IMAGE_PIXELS = n  # refuse (or warn about) what the limit allows
    return n


def _too_large(path: Path, what: str, w: int, h: int, limit: int) -> ImageError:
    return ImageError(
        f"{what} '{path}' is {w}x{h} ({w * h:,} pixels), more than the limit of {limit:,} pixels; "
        f"set {MAX_PIXELS_ENV}={w * h} (or more) to read it"
    )


def _open_image(src: Union[str, Path], what: str) -> Image.Image:
    path = Path(src).expanduser()
    if not path.exists():
        raise ImageError(f"{what} file '{path}' does not exist")
    if path.is_dir():
        raise ImageError(f"{what} '{path}' is a folder; expected an image file")
    limit = max_pixels()
    try:
        with warnings.catch_warnings():  # PIL's DecompressionBombWarning: the limit below is the policy
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if im.width * im.height > limit:  # from the header, before the pixels are decoded
                raise _too_large(path, what, im.width, im.height, limit)
            im.load()
            return im.copy()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # beyond PIL's own limit (twice 89 megapixels)
        raise ImageError(
            f"{what} '{path}' has more than the limit of {limit:,} pixels ({e}); set {MAX_PIXELS_ENV} to read it"
        ) from None
    except READ_ERRORS as e:
        raise ImageError(f"cannot read {what} '{path}': {e}") from None


def source_name(x: Any) -> str:
    """How an image given as ``x`` is named in messages: its path in quotes, or its type."""
    return f"'{x}'" if isinstance(x, (str, Path)) else f"the {type(x).__name__}"


def _to_numpy(x: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def load_image(image: ImageLike) -> Image.Image:
    """A path, PIL image or uint8 array (H x W, H x W x 1/2/3/4) -> PIL image in L, LA, RGB or RGBA."""
    if isinstance(image, (str, Path)):
        im = _open_image(image, "image")
    elif isinstance(image, Image.Image):
        im = image
    elif isinstance(image, (np.ndarray, torch.Tensor)):
        a = _to_numpy(image)
        if a.dtype != np.uint8:
            raise ImageError(f"image array: expected uint8 values 0..255, got {a.dtype}")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim == 2:
            im = Image.fromarray(a, "L")
        elif a.ndim == 3 and a.shape[2] in (2, 3, 4):
            im = Image.fromarray(a, {2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[2]])
        else:
            raise ImageError(f"image array: expected H x W or H x W x C with C in 1..4, got shape {list(a.shape)}")
    else:
        raise ImageError(f"image: expected a file path, a PIL image or a uint8 array, got {type(image).__name__}")
    if im.mode not in MODES:
        raise ImageError(
            f"image {source_name(image)} has mode {im.mode!r}, which is not supported: convert it to "
            f"L, LA, RGB or RGBA first (e.g. Image.open(path).convert('RGB'))"
        )
    if im.width < 1 or im.height < 1:
        raise ImageError(f"image {source_name(image)} is empty ({im.width}x{im.height})")
    return im


# ---- folder modes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """An input a folder mode left out with ``skip_bad``: the file and why (a one-line error naming it)."""

    path: Path
    reason: str


class FolderResults(list):
    """What a folder mode returns: its results in file order (a list), and ``skipped``, the files it left
    out with ``skip_bad`` (:class:`Skipped`, empty without it)."""

    def __init__(self, results: Iterable[Any] = (), skipped: Iterable[Skipped] = ()):
        super().__init__(results)
        self.skipped: List[Skipped] = list(skipped)


def usable_images(
    files: Sequence[Path],
    skip_bad: bool = False,
    check: Optional[Callable[[Path, Image.Image], None]] = None,
    what: str = "image",
) -> Tuple[List[Path], List[Skipped]]:
    """The shared first step of every folder mode, before any output is written: decode each file
    (:func:`load_image`: the size policy, the modes, a damaged or truncated file) and run ``check(path,
    image)`` on it (the task's own conditions: channels, size, a matching mask), which raises a
    :class:`~ganforge.errors.GanforgeError` for an unusable input. Returns (the usable files, the skipped
    ones). Without ``skip_bad`` the first unusable file is an :class:`ImageError` (nothing has been written
    yet); with it, every unusable file is skipped with its reason, and a folder with none left is an error."""
    good: List[Path] = []
    skipped: List[Skipped] = []
    for p in files:
        try:
            im = load_image(p)
            if check is not None:
                check(p, im)
        except GanforgeError as e:
            if not skip_bad:
                why = f"no {what} was processed; --skip-bad / skip_bad=True skips unusable ones"
                raise ImageError(f"{e} ({why})") from None
            skipped.append(Skipped(Path(p), str(e)))
        else:
            good.append(p)
    if files and not good:
        folder = Path(files[0]).parent
        raise ImageError(f"no usable {what} in '{folder}': all {len(files)} skipped, e.g. {skipped[0].reason}")
    return good, skipped


# ---- masks and boxes ---------------------------------------------------------------------------


def load_mask(mask: ImageLike, size: Tuple[int, int]) -> np.ndarray:
    """A mask (path, PIL image or array; white / True / >= 0.5 = missing) -> bool [H, W].

    ``size`` is the image's (width, height); a mask of another size is an error.
    """
    if isinstance(mask, (str, Path)):
        a = np.asarray(_open_image(mask, "mask").convert("L")) >= 128
    elif isinstance(mask, Image.Image):
        a = np.asarray(mask.convert("L")) >= 128
    elif isinstance(mask, (np.ndarray, torch.Tensor)):
        a = _to_numpy(mask)
        if a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
            a = a[..., :3].mean(axis=2) if a.shape[2] >= 3 else a[..., 0]
        if a.ndim != 2:
            raise ImageError(f"mask array: expected H x W (or H x W x C), got shape {list(_to_numpy(mask).shape)}")
        if a.dtype == bool:
            pass
        elif np.issubdtype(a.dtype, np.floating):
            a = a >= 0.5
        elif np.issubdtype(a.dtype, np.integer):
            a = a >= 128 if a.max(initial=0) > 1 else a >= 1
        else:
            raise ImageError(f"mask array: expected bool, integer or float values, got {a.dtype}")
    else:
        raise ImageError(f"mask: expected a file path, a PIL image or an array, got {type(mask).__name__}")
    h, w = a.shape
    if (w, h) != tuple(size):
        raise ImageError(
            f"the mask {source_name(mask)} is {w}x{h} but the image is {size[0]}x{size[1]} "
            "(width x height); the mask must have the image's size"
        )
    return a.astype(bool)


def parse_box(box: Union[str, Sequence[int]]) -> Box:
    """'x,y,w,h' or a 4-sequence -> (x, y, w, h) as ints."""
    if isinstance(box, str):
        parts = [p.strip() for p in box.split(",")]
    else:
        parts = list(box)
    try:
        vals = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 4:
        raise ImageError(f"box {box!r}: expected four integers x,y,w,h (left, top, width, height)")
    return vals  # type: ignore[return-value]


def box_mask(box: Union[str, Sequence[int]], size: Tuple[int, int]) -> np.ndarray:
    """bool [H, W] with the box (x, y, w, h) missing; a box not inside the image is an error."""
    x, y, w, h = parse_box(box)
    W, H = size
    if w < 1 or h < 1:
        raise ImageError(f"box x={x},y={y},w={w},h={h}: width and height must be at least 1")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise ImageError(
            f"box x={x},y={y},w={w},h={h} is out of bounds of the {W}x{H} image (width x height): "
            f"it needs 0 <= x, x + w <= {W}, 0 <= y, y + h <= {H}"
        )
    m = np.zeros((H, W), dtype=bool)
    m[y : y + h, x : x + w] = True
    return m


# ---- pixels ------------------------------------------------------------------------------------


def split_alpha(im: Image.Image) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """PIL image (L, LA, RGB, RGBA) -> (colour/grey uint8 [H, W, C] with C in {1, 3}, alpha [H, W] or None)."""
    a = np.asarray(im)
    if im.mode == "L":
        return a[..., None].copy(), None
    if im.mode == "LA":
        return a[..., :1].copy(), a[..., 1].copy()
    if im.mode == "RGB":
        return a.copy(), None
    return a[..., :3].copy(), a[..., 3].copy()


def join_alpha(base: np.ndarray, alpha: Optional[np.ndarray], mode: str) -> Image.Image:
    """The inverse of :func:`split_alpha`: pixels [H, W, C] and alpha -> a PIL image in ``mode``."""
    if mode in ("L", "LA"):
        base = base[..., :1]
    elif base.shape[2] == 1:  # a grey result for an image stored as RGB with equal channels
        base = np.repeat(base, 3, axis=2)
    arr = base if alpha is None else np.concatenate([base, alpha[..., None]], axis=2)
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode)


def match_channels(base: np.ndarray, model_c: int, mode: str, label: str) -> np.ndarray:
    """The image's pixels [H, W, C] with the model's channel count, or a clear error when that would
    lose data; ``label`` names the image in the message."""
    c = base.shape[2]
    if c == model_c:
        return base
    if model_c == 1 and c == 3:
        if np.array_equal(base[..., 0], base[..., 1]) and np.array_equal(base[..., 0], base[..., 2]):
            return base[..., :1]  # grey stored as RGB: converting is lossless
        raise ImageError(
            f"the model works on 1-channel (grayscale) images but the image {label} is a colour "
            f"({mode}) image; convert it to grayscale first (PIL: image.convert('L')) or use a model "
            "trained on colour images (data.channels=3)"
        )
    raise ImageError(
        f"the model works on {model_c}-channel (colour) images but the image {label} is grayscale "
        f"({mode}); convert it to RGB first (PIL: image.convert('RGB'); the completion is then in "
        "colour) or use a model trained on grayscale images (data.channels=1)"
    )


# ---- the comparison picture ----------------------------------------------------------------------


def compare_layout(width: int, height: int, panels: int) -> Dict[str, int]:
    """Geometry of the comparison picture: each panel is the image scaled by an integer ``scale``
    (small images are enlarged to at least 128 px), ``gap`` pixels between panels and a
    ``label`` strip on top."""
    scale = max(1, min(8, math.ceil(128 / max(width, height))))
    gap, label = 4, 14
    return {
        "scale": scale,
        "gap": gap,
        "label": label,
        "panel_w": width * scale,
        "panel_h": height * scale,
        "width": panels * width * scale + (panels - 1) * gap,
        "height": height * scale + label,
    }


def compare_image(
    im: Image.Image, hole: np.ndarray, completed: Image.Image, original: Optional[Image.Image] = None
) -> Image.Image:
    """Masked input (hole in grey) | completion | original (if given), side by side, labelled."""
    from PIL import ImageDraw

    colour = im.mode in ("RGB", "RGBA")
    mode = "RGB" if colour else "L"

    def flat(x: Image.Image) -> Image.Image:
        return x.convert(mode)

    masked = np.array(flat(im))
    masked[hole] = HOLE_GREY
    panels = [("masked", Image.fromarray(masked, mode)), ("completed", flat(completed))]
    if original is not None:
        panels.append(("original", flat(original)))
    g = compare_layout(im.width, im.height, len(panels))
    canvas = Image.new(mode, (g["width"], g["height"]), (255, 255, 255) if colour else 255)
    draw = ImageDraw.Draw(canvas)
    for i, (name, p) in enumerate(panels):
        x = i * (g["panel_w"] + g["gap"])
        canvas.paste(p.resize((g["panel_w"], g["panel_h"]), Image.NEAREST), (x, g["label"]))
        draw.text((x + 2, 1), name, fill=(0, 0, 0) if colour else 0)
    return canvas
