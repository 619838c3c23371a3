"""Clips from a trained video run, written the ways ``ganforge sample`` offers (GIF, MP4, NPZ, PNG).

    h = ganforge.load(run)  # a ClipHandle
    write_samples(h, "clips.gif", 16, seed=0)  # an animated grid: frame t of every clip at time t
    write_samples(h, "clips", 8)  # a folder per clip of numbered PNG frames

A folder written here is a clip folder again (``data.dataset=clips data.root=...``). Every function
takes a loaded handle (:class:`ganforge.tasks.video.handle.ClipHandle`) and prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np
import torch

from ganforge.errors import ImageError, LabelError, UsageError
from ganforge.imaging import save_png, writing
from ganforge.options import with_overrides
from ganforge.tasks.video.data import FRAME_MS, clip_grid_frames, clip_strip, gif_bytes

__all__ = [
    "SAMPLE_OUTPUTS",
    "ClipOptions",
    "sample_output_kind",
    "write_samples",
    "write_clips",
    "write_gif",
    "write_mp4",
]

SAMPLE_OUTPUTS = "a .gif or .mp4 file (animated grid), a .npz file, a .png file (strip), or a folder"
FPS = 1000 // FRAME_MS  # frames per second of written video (10)

PathLike = Union[str, Path]


@dataclass
class ClipOptions:
    """The video-only keywords of :func:`write_samples` (the other writer's keywords are shared with images)."""

    frames: Optional[int] = None  # clip length; None: the trained length
    scale: int = 1  # nearest-neighbour upscaling of every frame


def sample_output_kind(out: PathLike) -> Optional[str]:
    """How :func:`write_samples` writes to ``out``: ``gif``, ``mp4``, ``npz``, ``grid`` (a .png strip),
    ``folder`` (a path without suffix, or an existing folder), or None when it is none of these."""
    out = Path(out)
    suffix = out.suffix.lower()
    kinds = {".gif": "gif", ".mp4": "mp4", ".npz": "npz", ".png": "grid"}
    if suffix in kinds:
        return kinds[suffix]
    return "folder" if suffix == "" or out.is_dir() else None


def _upscale(frames: List[np.ndarray], scale: int) -> List[np.ndarray]:
    return frames if scale == 1 else [f.repeat(scale, 0).repeat(scale, 1) for f in frames]


def write_gif(frames: List[np.ndarray], out: PathLike, scale: int = 1) -> Path:
    """HxWxC uint8 frames as a looping GIF (Pillow), each pixel ``scale`` x ``scale``."""
    out = Path(out)
    data = gif_bytes(_upscale(frames, scale))
    with writing(out, "clips") as tmp:
        Path(tmp).write_bytes(data)
    return out


def write_mp4(frames: List[np.ndarray], out: PathLike, fps: int = FPS, scale: int = 1) -> Path:
    """HxWxC uint8 frames as H.264 video (yuv420p, through PyAV); odd sides are padded with black."""
    try:
        import av
    except ImportError:
        raise UsageError(f"'{out}': writing MP4 needs PyAV: pip install 'ganforge[video]' (or write a .gif)") from None
    out = Path(out)
    frames = _upscale(frames, scale)
    h, w = frames[0].shape[:2]
    hh, ww = h + h % 2, w + w % 2
    with writing(out, "clips") as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = ww, hh, "yuv420p"
            stream.options = {"crf": "18"}
            for f in frames:
                rgb = np.zeros((hh, ww, 3), np.uint8)
                rgb[:h, :w] = f if f.shape[2] == 3 else f.repeat(3, 2)
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return out


def write_clips(clips: torch.Tensor, out: PathLike, nrow: Optional[int] = None, scale: int = 1) -> Path:
    """Write uint8 clips [N, T, C, H, W] to ``out`` as :func:`sample_output_kind` says: ``.gif`` an animated
    grid (frame t of every clip at time t), ``.mp4`` the same as H.264 video (PyAV: ``pip install
    'ganforge[video]'``), ``.npz`` uint8 ``arr_0`` [N, T, H, W, C], ``.png`` a strip (a row per clip, frames
    left to right), a path without suffix a folder per clip of numbered PNG frames."""
    out = Path(out)
    kind = sample_output_kind(out)
    if kind is None:
        raise ImageError(f"'{out}': expected {SAMPLE_OUTPUTS}")
    if clips.dtype != torch.uint8 or clips.dim() != 5:
        raise ValueError(f"write_clips: expected uint8 clips [N, T, C, H, W], got {clips.dtype} {tuple(clips.shape)}")
    n = clips.shape[0]
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    if kind == "gif":
        write_gif(clip_grid_frames(clips, nrow), out, scale)
    elif kind == "mp4":
        write_mp4(clip_grid_frames(clips, nrow), out, scale=scale)
    elif kind == "npz":
        with writing(out, "clips"):
            np.savez(out, arr_0=clips.permute(0, 1, 3, 4, 2).numpy())  # [N, T, H, W, C] uint8
    elif kind == "grid":
        save_png(clip_strip(clips), out)
    else:
        for i, clip in enumerate(clips):
            for t, frame in enumerate(clip):
                save_png(frame.permute(1, 2, 0).numpy(), out / f"{i:06d}" / f"frame_{t:03d}.png")
    return out


def write_samples(
    h,
    out: PathLike,
    n: int,
    seed: int = 0,
    cls=None,
    nrow: Optional[int] = None,
    truncation: Optional[float] = None,
    mark=None,
    **clip: Any,
) -> int:
    """Sample ``n`` clips with ``seed`` and write them to ``out`` (see :func:`write_clips`); returns how many
    were written. The same seed gives the same clips in every form. ``clip``: the :class:`ClipOptions`
    keywords ``frames`` (default: the trained length) and ``scale``. ``cls``, ``truncation`` and ``mark``
    (a watermark) are options of image samples, refused here."""
    o = with_overrides(ClipOptions, None, clip, "write_samples")
    if mark is not None:
        raise UsageError("--watermark marks image samples; a video run's clips are written unmarked")
    if cls is not None:
        raise LabelError("this video generator is unconditional: it takes no class")
    if truncation is not None:
        raise UsageError("--truncation applies to image GANs; a video run samples its codes untruncated")
    if sample_output_kind(out) is None:
        raise ImageError(f"'{out}': expected {SAMPLE_OUTPUTS}")
    write_clips(h.sample_uint8(n, seed=seed, frames=o.frames), out, nrow=nrow, scale=o.scale)
    return n
