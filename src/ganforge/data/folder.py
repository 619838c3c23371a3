"""A folder of image files (:data:`ganforge.imaging.IMAGE_SUFFIXES`), optionally one subfolder per class.

Two passes: a cheap header scan (size, mode, EXIF orientation) that decides the channels, checks sizes and
estimates memory, then decoding straight into one preallocated uint8 array on a few threads, by index, so
the result does not depend on scheduling. Hidden files are ignored; transparency is composited onto
black, 16-bit images scaled to 8 bits, EXIF orientation applied.
"""

from __future__ import annotations

import math
import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ganforge.data.base import DataError, ImageData, resolve_root
from ganforge.data.transform import (
    check_crop,
    check_memory,
    in_chunks,
    pil_filter,
    resize_image,
    target_channels,
    target_size,
)
from ganforge.imaging import IMAGE_SUFFIXES

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import DataConfig

GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
# Errors PIL raises for unreadable, truncated or hostile files.
READ_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error,
    Image.DecompressionBombError,
)  # fmt: skip
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_CHUNK = 64  # images per thread task


@dataclass
class _Header:
    path: Path
    label: int
    width: int  # after EXIF orientation
    height: int
    gray: bool
    orientation: int


# ---- finding files ---------------------------------------------------------------------------


def list_images(root: Path) -> List[PurePosixPath]:
    """Image files under ``root`` (recursive, case-insensitive extensions), as sorted relative paths."""
    found: List[PurePosixPath] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(rel / name)
    return sorted(found, key=lambda p: p.parts)


def class_names_for(files: Sequence[PurePosixPath]) -> List[str]:
    """Sorted class names when every image sits in a subfolder of the root, else ``[]``."""
    if files and all(len(f.parts) == 2 for f in files):
        return sorted({f.parts[0] for f in files})
    return []


# ---- per-image helpers -------------------------------------------------------------------------


def _orientation(im: Image.Image) -> int:
    if "exif" not in im.info:  # only EXIF found in the header: never decode the image here
        return 1
    try:
        value = int(im.getexif().get(0x0112, 1))
    except READ_ERRORS:
        return 1
    return value if value in _TRANSPOSE else 1


def _is_gray(im: Image.Image) -> bool:
    if im.mode in GRAY_MODES:
        return True
    if im.mode not in ("P", "PA") or im.palette is None:
        return False
    pal = im.palette
    stride = {"RGB": 3, "BGR": 3, "RGBA": 4, "RGBX": 4, "BGRX": 4, "BGRA": 4}.get(pal.rawmode or pal.mode)
    if stride is None:
        return False
    data = np.frombuffer(bytes(pal.palette), dtype=np.uint8)
    rgb = data[: len(data) // stride * stride].reshape(-1, stride)[:, :3]
    return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    """Convert to "L" or "RGB": 16-bit scaled to 8 bits, transparency composited onto black."""
    if im.mode.startswith("I") or im.mode == "F":
        arr = np.asarray(im)
        if im.mode.startswith("I;16") or (im.mode == "I" and arr.max(initial=0) > 255):
            arr = np.clip(arr, 0, 65535).astype(np.uint32) >> 8
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        im = Image.new("RGB", rgba.size)
        im.paste(rgba, mask=rgba.getchannel("A"))
    return im if im.mode == mode else im.convert(mode)


def _draft_size(h: _Header, size: Tuple[int, int], crop: str) -> Tuple[int, int]:
    """The smallest (w, h) a JPEG may be decoded at (in file orientation) and still cover ``size``."""
    out_h, out_w = size
    if crop == "center":
        s = max(out_h / h.height, out_w / h.width)
        want = (math.ceil(h.width * s), math.ceil(h.height * s))
    else:
        want = (out_w, out_h)
    return (want[1], want[0]) if h.orientation in _SWAPS_AXES else want


# ---- the loader ---------------------------------------------------------------------------------


def load_folder(cfg: "DataConfig") -> ImageData:
    """All images under ``cfg.root``; class labels from one level of subfolders."""
    size = target_size(cfg.size)
    channels = target_channels(cfg.channels)
    crop = check_crop(cfg.crop)
    resample = pil_filter(cfg.resize)
    root = resolve_root(cfg.root, "folder", "a folder of image files")
    files = list_images(root)
    if not files:
        raise DataError(
            f"no images found in '{root}': looked recursively for files ending in "
            f"{', '.join(IMAGE_SUFFIXES)} (any case)"
        )
    class_names = class_names_for(files)
    class_index = {name: i for i, name in enumerate(class_names)}
    if cfg.limit is not None:
        files = files[: cfg.limit]
    skipped: List[str] = []

    def bad(path: Path, err: BaseException) -> None:
        if not cfg.skip_bad:
            reason = "not an image file PIL can identify" if isinstance(err, UnidentifiedImageError) else err
            raise DataError(f"cannot read image '{path}': {reason} (set data.skip_bad=true to skip unreadable files)")
        skipped.append(str(path))

    # pass 1: headers
    headers: List[_Header] = []
    for rel in files:
        path = root / rel
        try:
            with Image.open(path) as im:
                orient = _orientation(im)
                w, h = im.size
                if orient in _SWAPS_AXES:
                    w, h = h, w
                label = class_index[rel.parts[0]] if class_names else -1
                headers.append(_Header(path, label, w, h, _is_gray(im), orient))
        except READ_ERRORS as e:
            bad(path, e)
    if not headers:
        raise DataError(f"no readable images in '{root}': all {len(files)} image files were unreadable")

    c = channels or (1 if all(h.gray for h in headers) else 3)
    if size is None:
        sizes = Counter((h.height, h.width) for h in headers)
        if len(sizes) > 1:
            seen = ", ".join(f"{hh}x{ww} ({n} image{'s' if n > 1 else ''})" for (hh, ww), n in sizes.most_common(5))
            more = f" and {len(sizes) - 5} more sizes" if len(sizes) > 5 else ""
            (ch, cw), _ = sizes.most_common(1)[0]
            raise DataError(
                f"images in '{root}' have different sizes (HxW: {seen}{more}); set data.size=HxW to "
                f"resize them all to one size, e.g. data.size={ch}x{cw}"
            )
        size = next(iter(sizes))
    out_h, out_w = size
    check_memory(len(headers), c, out_h, out_w, f"image folder '{root}'")
    mode = "L" if c == 1 else "RGB"
    images = np.empty((len(headers), c, out_h, out_w), dtype=np.uint8)
    errors: List[Optional[BaseException]] = [None] * len(headers)

    def decode(start: int, stop: int) -> None:
        for i in range(start, stop):
            h = headers[i]
            try:
                with Image.open(h.path) as im:
                    if im.format == "JPEG" and (out_h < h.height / 2 or out_w < h.width / 2):
                        im.draft(None, _draft_size(h, size, crop))
                    im.load()
                    img = im.transpose(_TRANSPOSE[h.orientation]) if h.orientation != 1 else im
                    img = resize_image(_to_mode(img, mode), size, crop, resample)
                    arr = np.asarray(img)  # before the file (and a pass-through image) is closed
            except READ_ERRORS as e:
                errors[i] = e
                continue
            images[i] = arr[None] if c == 1 else arr.transpose(2, 0, 1)

    in_chunks(decode, len(headers), _CHUNK)

    keep = [i for i, e in enumerate(errors) if e is None]
    for i, e in enumerate(errors):
        if e is not None:
            bad(headers[i].path, e)
    if not keep:
        raise DataError(f"no readable images in '{root}': all {len(files)} image files were unreadable")
    if len(keep) < len(headers):
        images = images[keep]
        if channels is None and c == 3 and all(headers[i].gray for i in keep):
            images = images[:, :1]  # the colour files were all skipped: the readable ones are grey
    order = {str(root / rel): i for i, rel in enumerate(files)}
    skipped.sort(key=order.__getitem__)  # file order, whichever pass found the problem
    labels = torch.tensor([headers[i].label for i in keep], dtype=torch.int64) if class_names else None
    resolved = root.resolve()
    return ImageData(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=labels,
        class_names=class_names,
        name=resolved.name or str(resolved),
        source=str(resolved),
        skipped=skipped,
    )
