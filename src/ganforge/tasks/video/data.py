"""Video clips: :class:`ClipData` (uint8 [N, T, C, H, W] in memory) and the two clip datasets.

``moving-mnist``: seeded clips of MNIST digits moving in straight lines and bouncing off the edges
(Srivastava et al. 2015), made on the fly from the embedded digits, so a seed gives the same clips on every
machine, offline. ``clips``: a folder of GIF or video files (PyAV) or subfolders of numbered frames, cut
into windows of T frames. Both are also registered in :data:`ganforge.data.DATASETS` as image datasets
(every frame of every clip), so an image GAN can train on single frames of the same data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence

from ganforge.data import DATASETS
from ganforge.data.base import DataError, ImageData, resolve_root
from ganforge.imaging import IMAGE_SUFFIXES

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import DataConfig

CLIP_DATASETS = ("moving-mnist", "clips")  # the data.dataset names that hold clips
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi")  # decoded with PyAV
GIF_SUFFIX = ".gif"
DEFAULT_FRAMES = 16
DEFAULT_CLIPS = 4096
DEFAULT_CANVAS = 64
SPEED = (1.0, 2.0)  # Moving MNIST: pixels per frame at a 32-pixel canvas (scaled with the canvas)


@dataclass
class ClipData:
    """A whole clip dataset in memory: ``clips`` uint8 [N, T, C, H, W] (C in {1, 3}); ``labels`` int64
    [N, digits] (the digit classes of Moving MNIST) or None."""

    clips: torch.Tensor
    labels: Optional[torch.Tensor]
    name: str
    source: str
    skipped: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        x = self.clips
        if x.dtype != torch.uint8 or x.dim() != 5 or x.shape[2] not in (1, 3):
            raise ValueError(
                f"ClipData.clips: expected uint8 [N, T, C, H, W] with C in (1, 3), got {x.dtype} {tuple(x.shape)}"
            )

    def __len__(self) -> int:
        return int(self.clips.shape[0])

    @property
    def images(self) -> torch.Tensor:
        """The clips, under the name the shared training loop reads (it batches along the first axis)."""
        return self.clips

    @property
    def frames(self) -> int:
        return int(self.clips.shape[1])

    @property
    def frame_shape(self) -> Tuple[int, int, int]:
        return tuple(int(s) for s in self.clips.shape[2:])  # type: ignore[return-value]

    def as_images(self) -> ImageData:
        """Every frame of every clip as an image dataset [N * T, C, H, W] (labels: the first digit's class)."""
        n, t = self.clips.shape[:2]
        labels = None if self.labels is None else self.labels[:, 0].repeat_interleave(t)
        names = [str(i) for i in range(10)] if labels is not None else []
        return ImageData(
            self.clips.reshape(n * t, *self.clips.shape[2:]).contiguous(),
            labels,
            names,
            f"{self.name}-frames",
            self.source,
            self.skipped,
        )


# ---- Moving MNIST -----------------------------------------------------------------------------


def default_digit_size(canvas: int) -> int:
    """The classic 28-pixel digits on a 64-pixel canvas; half the canvas on smaller ones."""
    return min(28, canvas // 2)


def moving_mnist(
    n: int = DEFAULT_CLIPS,
    frames: int = DEFAULT_FRAMES,
    size: int = DEFAULT_CANVAS,
    digits: int = 1,
    digit_size: int = 0,
    seed: int = 0,
    channels: int = 1,
) -> ClipData:
    """``n`` seeded Moving-MNIST clips of ``frames`` frames on a ``size`` x ``size`` canvas.

    Each shows ``digits`` digits of the packaged test split, resized to ``digit_size``, that start at random
    places and move at random speeds; digits over each other combine by a per-pixel maximum. Everything is
    drawn from one seeded generator."""
    from ganforge.data.idx import load_embedded_mnist

    ds = digit_size or default_digit_size(size)
    if not 4 <= ds <= size:
        raise DataError(f"video.digit_size={ds}: expected 4 to the canvas size ({size})")
    if n < 1 or frames < 1 or digits < 1:
        raise DataError(f"moving-mnist: expected at least one clip, frame and digit (got {n}, {frames}, {digits})")
    mnist = load_embedded_mnist(None)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(mnist), size=(n, digits))  # [N, D] digit indices
    glyphs = mnist.images[:, 0].float()[:, None]  # [10000, 1, 28, 28]
    if ds != 28:
        glyphs = F.interpolate(glyphs, size=(ds, ds), mode="bilinear", align_corners=False, antialias=True)
    glyphs = glyphs.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()  # [10000, ds, ds]
    span = size - ds  # positions run over [0, span]
    pos = rng.uniform(0, span, size=(n, digits, 2))  # [N, D, (y, x)]
    angle = rng.uniform(0, 2 * np.pi, size=(n, digits))
    speed = rng.uniform(*SPEED, size=(n, digits)) * size / 32
    vel = np.stack([np.sin(angle), np.cos(angle)], -1) * speed[..., None]  # [N, D, 2]
    track = np.empty((n, frames, digits, 2), dtype=np.int64)
    for t in range(frames):
        track[:, t] = np.rint(pos).astype(np.int64)
        pos = pos + vel
        low, high = pos < 0, pos > span  # bounce off the edges
        pos = np.where(low, -pos, np.where(high, 2 * span - pos, pos))
        vel = np.where(low | high, -vel, vel)
    track = np.clip(track, 0, span)
    out = np.zeros((n, frames, size, size), dtype=np.uint8)
    for i in range(n):
        for d in range(digits):
            g = glyphs[which[i, d]]
            for t in range(frames):
                y, x = track[i, t, d]
                view = out[i, t, y : y + ds, x : x + ds]
                np.maximum(view, g, out=view)
    clips = torch.from_numpy(out)[:, :, None]  # [N, T, 1, H, W]
    if channels == 3:
        clips = clips.expand(-1, -1, 3, -1, -1).contiguous()
    labels = mnist.labels[torch.from_numpy(which)]  # [N, D]
    return ClipData(clips, labels, "moving-mnist", f"seeded Moving MNIST (seed {seed}) from the packaged MNIST")


# ---- clip folders -----------------------------------------------------------------------------


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", p.name)]


def clip_sources(root: Path) -> List[Path]:
    """The clips in ``root``: GIF and video files and subfolders holding image files, sorted by name."""
    out = []
    for p in sorted(root.iterdir(), key=_natural_key):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in (GIF_SUFFIX, *VIDEO_SUFFIXES):
            out.append(p)
        elif p.is_dir() and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir() if not q.name.startswith(".")):
            out.append(p)
    return out


def _constant_rate(frames: List[np.ndarray], durations: List[int]) -> List[np.ndarray]:
    """GIF frames at a constant rate, the GIF's fastest or ganforge's (``FRAME_MS``) if that is faster: each
    frame repeated (duration / that step) times, so frames a GIF writer merged because they were identical
    (Pillow does, even all of them) come back; durations of 0 count as one step."""
    nonzero = [d for d in durations if d > 0]
    if not nonzero:
        return frames
    base = min(min(nonzero), FRAME_MS)
    out: List[np.ndarray] = []
    for f, d in zip(frames, durations):
        out.extend([f] * max(1, int(round(d / base))))
    return out


def read_clip(path: Path) -> List[np.ndarray]:
    """The frames of one clip as RGB uint8 [H, W, 3] arrays; a :class:`DataError` naming the file otherwise."""
    path = Path(path)
    try:
        if path.is_dir():
            files = sorted(
                (q for q in path.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and not q.name.startswith(".")),
                key=_natural_key,
            )
            frames = []
            for q in files:
                with Image.open(q) as im:
                    frames.append(np.asarray(im.convert("RGB")))
            return frames
        if path.suffix.lower() == GIF_SUFFIX:
            with Image.open(path) as im:
                frames, durations = [], []
                for f in ImageSequence.Iterator(im):
                    frames.append(np.asarray(f.convert("RGB")))
                    durations.append(int(f.info.get("duration") or 0))
            return _constant_rate(frames, durations)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"cannot read clip '{path}': {e}") from None
    try:
        import av
    except ImportError:
        raise DataError(
            f"reading '{path}' needs PyAV: pip install 'ganforge[video]' (or convert it to a GIF)"
        ) from None
    try:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        raise DataError(f"cannot read video '{path}': {e}") from None


def load_clip_folder(cfg: "DataConfig", frames: int = DEFAULT_FRAMES) -> ClipData:
    """The clips of the folder ``cfg.root`` cut into windows of ``frames`` frames.

    Entries are GIF files, MP4/MOV/WebM/MKV/AVI files (PyAV: ``pip install ganforge[video]``) or subfolders of
    numbered frames (sorted by the number in the name); GIFs are read at a constant rate
    (:func:`_constant_rate`). A clip of L frames gives ``L // frames`` clips; a shorter one is an error naming
    it (skipped with ``data.skip_bad=true``). Frames are grey when every frame is (R = G = B), else RGB,
    unless ``data.channels`` says; all are resized to ``data.size`` when given, else must share one size."""
    root = resolve_root(cfg.root, "clips", "a folder of GIF/MP4 clips or of folders of numbered frames")
    sources = clip_sources(root)
    if not sources:
        raise DataError(
            f"data.root: '{root}' holds no clips (GIF or {'/'.join(s[1:].upper() for s in VIDEO_SUFFIXES)} files, "
            "or folders of numbered frames)"
        )
    size = tuple(cfg.size) if cfg.size else None
    windows: List[np.ndarray] = []
    skipped: List[str] = []
    grey = True
    for p in sources:
        try:
            clip = read_clip(p)
            if len(clip) < frames:
                raise DataError(f"clip '{p}' has {len(clip)} frames; clips need at least video.frames={frames}")
            if size is None:
                size = clip[0].shape[:2]
            for i, f in enumerate(clip):
                if f.shape[:2] != tuple(size):
                    if cfg.size is None:
                        raise DataError(
                            f"clip '{p}' frame {i} is {f.shape[1]}x{f.shape[0]}, other frames are "
                            f"{size[1]}x{size[0]}; set data.size=HxW to resize every frame"
                        )
                    from ganforge.data.transform import pil_filter

                    clip[i] = np.asarray(Image.fromarray(f).resize((size[1], size[0]), pil_filter(cfg.resize)))
        except DataError as e:
            if not cfg.skip_bad:
                raise
            skipped.append(f"{p} ({e})")
            continue
        arr = np.stack(clip[: len(clip) // frames * frames])  # [L', H, W, 3]
        grey = grey and bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())
        windows.extend(arr.reshape(-1, frames, *arr.shape[1:]))
        if cfg.limit is not None and len(windows) >= cfg.limit:
            break
    if not windows:
        raise DataError(f"data.root: no clip in '{root}' could be read ({len(skipped)} skipped, e.g. {skipped[0]})")
    windows = windows[: cfg.limit] if cfg.limit is not None else windows
    x = torch.from_numpy(np.stack(windows)).permute(0, 1, 4, 2, 3)  # [N, T, 3, H, W]
    channels = cfg.channels or (1 if grey else 3)
    if channels == 1:
        x = (
            (0.299 * x[:, :, 0:1].float() + 0.587 * x[:, :, 1:2].float() + 0.114 * x[:, :, 2:3].float())
            .round()
            .to(torch.uint8)
        )
    return ClipData(x.contiguous(), None, root.name or "clips", str(root), skipped)


def load_clips(
    cfg: "DataConfig",
    frames: int = DEFAULT_FRAMES,
    clips: int = DEFAULT_CLIPS,
    digits: int = 1,
    digit_size: int = 0,
    seed: int = 0,
) -> ClipData:
    """The clip dataset ``cfg.dataset`` names (one of :data:`CLIP_DATASETS`)."""
    if cfg.dataset == "moving-mnist":
        if cfg.size is not None and cfg.size[0] != cfg.size[1]:
            raise DataError(
                f"data.size={cfg.size}: the moving-mnist canvas is square; use e.g. data.size={cfg.size[0]}"
            )
        size = int(cfg.size[0]) if cfg.size else DEFAULT_CANVAS
        n = min(clips, cfg.limit) if cfg.limit is not None else clips
        return moving_mnist(n, frames, size, digits, digit_size, seed, cfg.channels or 1)
    if cfg.dataset == "clips":
        return load_clip_folder(cfg, frames)
    raise DataError(
        f"data.dataset={cfg.dataset!r} holds images, not clips; the video task needs one of: {', '.join(CLIP_DATASETS)}"
    )


# image views for DATASETS (every frame of the default clips)


def _clips_for(cfg: "DataConfig") -> "DataConfig":
    """``cfg`` with ``limit`` counting clips, enough for ``limit`` frames (which the loader then keeps)."""
    import dataclasses

    return cfg if cfg.limit is None else dataclasses.replace(cfg, limit=-(-cfg.limit // DEFAULT_FRAMES))


def load_moving_mnist_frames(cfg: "DataConfig") -> ImageData:
    """Every frame of the default Moving-MNIST clips (seed 0) as images (``data.limit`` counts frames)."""
    return load_clips(_clips_for(cfg)).as_images()


def load_clip_folder_frames(cfg: "DataConfig") -> ImageData:
    """Every frame of the clips of ``data.root`` (windows of the default length) as images (``data.limit``
    counts frames)."""
    return load_clip_folder(_clips_for(cfg)).as_images()


# registered as image datasets too (every frame): importing the video task (ganforge.tasks) registers them
DATASETS.register("moving-mnist")(load_moving_mnist_frames)
DATASETS.register("clips")(load_clip_folder_frames)


# ---- writing clips (used by the trainer's animated samples and by apps/video.py) ----------------

FRAME_MS = 100  # how long each frame of a written GIF shows (10 frames/s)


def clip_grid_frames(clips: torch.Tensor, nrow: Optional[int] = None) -> List[np.ndarray]:
    """uint8 clips [N, T, C, H, W] -> T grids (HxWxC uint8), grid t showing frame t of every clip (one clip:
    its frames)."""
    from ganforge.imaging import make_grid_uint8

    pad = 0 if clips.shape[0] == 1 else 2  # one clip: its own frames, no border
    return [make_grid_uint8(clips[:, t], nrow=nrow, padding=pad) for t in range(clips.shape[1])]


def gif_bytes(frames: List[np.ndarray], ms: int = FRAME_MS) -> bytes:
    """HxWxC uint8 frames as the bytes of a looping GIF (Pillow)."""
    import io

    from ganforge.imaging import to_pil

    pics = [to_pil(f) for f in frames]
    buf = io.BytesIO()
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=ms, loop=0, optimize=False)
    return buf.getvalue()


def clip_strip(clips: torch.Tensor, padding: int = 2) -> np.ndarray:
    """uint8 clips [N, T, C, H, W] -> one HxWxC picture: a row per clip, its frames left to right."""
    from ganforge.imaging import make_grid_uint8

    n, t = clips.shape[:2]
    return make_grid_uint8(clips.reshape(n * t, *clips.shape[2:]), nrow=t, padding=padding)
