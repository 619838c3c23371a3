"""Size, crop, resize filter and channel conversion, applied once when a dataset is loaded.

Every resize goes through PIL (per image, with the configured filter), for folder images
and for tensor datasets (MNIST, CIFAR-10) alike, so a given ``data.resize`` means the same
thing everywhere. Channel conversion: 1 -> 3 repeats the grey channel; 3 -> 1 is the
ITU-R 601-2 luma transform, bit-exact with PIL's ``convert("L")``.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ganforge.data.base import DataError, ImageData

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import DataConfig

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
CROPS = ("center", "stretch")

Box = Tuple[float, float, float, float]


# ---- config checks ------------------------------------------------------------------------


def target_size(size: Optional[Sequence[int]]) -> Optional[Tuple[int, int]]:
    """``cfg.size`` as ``(H, W)`` or None."""
    if size is None:
        return None
    if len(size) != 2 or any(int(s) < 1 for s in size):
        raise DataError(f"data.size: expected [height, width] with positive values, got {list(size)}")
    return (int(size[0]), int(size[1]))


def target_channels(channels: Optional[int]) -> Optional[int]:
    if channels is not None and channels not in (1, 3):
        raise DataError(f"data.channels: expected 1 or 3, got {channels!r}")
    return channels


def pil_filter(name: str) -> int:
    """The PIL resampling filter for a ``data.resize`` name."""
    try:
        return FILTERS[name]
    except KeyError:
        raise DataError(f"data.resize: {name!r} is not allowed; choose one of: {', '.join(FILTERS)}") from None


def check_crop(crop: str) -> str:
    if crop not in CROPS:
        raise DataError(f"data.crop: {crop!r} is not allowed; choose one of: {', '.join(CROPS)}")
    return crop


# ---- memory -------------------------------------------------------------------------------


def available_memory() -> Optional[int]:
    """MemAvailable from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(n: int, c: int, h: int, w: int, what: str) -> None:
    """Refuse to allocate ``n*c*h*w`` bytes when that exceeds half the available RAM."""
    avail = available_memory()
    need = n * c * h * w
    if avail is not None and need > avail // 2:
        gib = 1024**3
        raise DataError(
            f"{what}: {n} images of {c}x{h}x{w} need {need / gib:.2f} GiB in memory, more than half of "
            f"the available RAM ({avail / gib:.2f} GiB); set a smaller data.size or data.limit "
            "(datasets are held in memory; streaming data that does not fit is not supported yet)"
        )


# ---- geometry ------------------------------------------------------------------------------


def source_box(w: int, h: int, out_h: int, out_w: int, crop: str) -> Optional[Box]:
    """The region of a ``w x h`` source that maps onto the ``out_h x out_w`` output.

    ``center``: the largest centred region with the target aspect ratio (scale to cover,
    then centre-crop); ``stretch``: None, the whole image.
    """
    if crop == "stretch" or w * out_h == h * out_w:
        return None
    if w * out_h > h * out_w:  # source is wider than the target: crop left and right
        cw = h * out_w / out_h
        x0 = (w - cw) / 2
        return (x0, 0.0, x0 + cw, float(h))
    ch = w * out_h / out_w
    y0 = (h - ch) / 2
    return (0.0, y0, float(w), y0 + ch)


def resize_image(im: Image.Image, size: Optional[Tuple[int, int]], crop: str, resample: int) -> Image.Image:
    """Resize (and centre-crop) one PIL image to ``size`` = (H, W); no-op when already there."""
    if size is None:
        return im
    out_h, out_w = size
    w, h = im.size
    if (h, w) == (out_h, out_w):
        return im
    return im.resize((out_w, out_h), resample, box=source_box(w, h, out_h, out_w, crop))


def resize_array(x: np.ndarray, size: Optional[Tuple[int, int]], crop: str, resample: int) -> np.ndarray:
    """Resize uint8 ``[N, C, H, W]`` images with PIL, one image at a time."""
    n, c, h, w = x.shape
    if size is None or (h, w) == tuple(size):
        return x
    out_h, out_w = size
    box = source_box(w, h, out_h, out_w, crop)
    out = np.empty((n, out_h, out_w, c), dtype=np.uint8)
    src = x[:, 0] if c == 1 else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    dst = out[..., 0] if c == 1 else out

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            dst[i] = np.asarray(Image.fromarray(src[i]).resize((out_w, out_h), resample, box=box))

    in_chunks(work, n)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def in_chunks(work: Callable[[int, int], None], n: int, chunk: int = 256) -> None:
    """Run ``work(start, stop)`` over ``range(n)`` in chunks on a few threads.

    PIL releases the GIL while decoding and resizing, so threads give real parallelism;
    each chunk writes its own rows, so results do not depend on scheduling.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(8, cpus))
    starts = range(0, n, chunk)
    if workers == 1 or len(starts) <= 1:
        for s in starts:
            work(s, min(s + chunk, n))
        return
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(work, s, min(s + chunk, n)) for s in starts]:
            f.result()


# ---- channels ------------------------------------------------------------------------------


def luma(x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """RGB ``[N, 3, H, W]`` -> grey ``[N, 1, H, W]`` with PIL's integer ITU-R 601-2 formula."""
    n, _, h, w = x.shape
    out = np.empty((n, 1, h, w), dtype=np.uint8)
    for s in range(0, n, chunk):
        rgb = x[s : s + chunk].astype(np.uint32)
        y = rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000
        out[s : s + chunk, 0] = (y >> 16).astype(np.uint8)
    return out


def convert_channels(x: np.ndarray, channels: Optional[int]) -> np.ndarray:
    """Convert uint8 ``[N, C, H, W]`` to ``channels`` (1 or 3); None keeps C."""
    c = x.shape[1]
    if channels is None or channels == c:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=1)
    return luma(x)


# ---- whole datasets ------------------------------------------------------------------------


def prepare(data: ImageData, cfg: "DataConfig") -> ImageData:
    """Apply ``limit``, ``channels`` and ``size``/``crop``/``resize`` from ``cfg`` once.

    Steps that are already satisfied are skipped, so loaders that convert while reading
    (the folder loader) pass through unchanged.
    """
    size = target_size(cfg.size)
    channels = target_channels(cfg.channels)
    crop = check_crop(cfg.crop)
    resample = pil_filter(cfg.resize)

    x, y = data.images, data.labels
    if cfg.limit is not None and x.shape[0] > cfg.limit:
        x = x[: cfg.limit].clone()  # clone: drop the reference to the full storage
        y = None if y is None else y[: cfg.limit].clone()
    n, c, h, w = x.shape
    oc = channels or c
    oh, ow = size or (h, w)
    if (oc, oh, ow) != (c, h, w):
        check_memory(n, oc, oh, ow, f"dataset {data.name!r}")
        arr = x.numpy()
        if oc < c:  # 3 -> 1 before resizing: a third of the work
            arr = convert_channels(arr, oc)
        arr = resize_array(arr, size, crop, resample)
        arr = convert_channels(arr, oc)
        x = torch.from_numpy(np.ascontiguousarray(arr))
    return dataclasses.replace(data, images=x.contiguous(), labels=y)
