"""Images from a trained generator, written the ways ``ganforge sample`` and ``ganforge interpolate`` offer.

    g = ganforge.load_generator(run)
    write_samples(g, "grid.png", 64, seed=0)            # a .png grid, a .npz file or a folder of PNGs
    write_samples(g, "all.png", 10, cls="all")          # conditional: 10 per class, one labelled row each
    imgs = interpolation(g, rows=8, steps=10)           # uint8 [80, C, H, W]: 8 latent paths of 10 steps
    write_interpolation(imgs, 8, 10, "walk.gif")        # a .png grid (a path per row) or a there-and-back .gif

Every function takes a loaded generator (:class:`ganforge.api.GeneratorHandle`); none prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ganforge.errors import ImageError, LabelError, UsageError
from ganforge.imaging import labelled_rows, make_grid_uint8, save_png, to_pil, to_uint8, writing

__all__ = [
    "INTERPOLATION_SUFFIXES",
    "class_labels",
    "interpolation",
    "sample_output_kind",
    "slerp",
    "truncated_noise",
    "write_interpolation",
    "write_samples",
]

INTERPOLATION_SUFFIXES = (".png", ".gif")  # a grid, or an animation
FRAME_MS = 80  # how long each frame of an interpolation animation shows

PathLike = Union[str, Path]
ClassLike = Union[int, str, None]


# ---- samples -----------------------------------------------------------------------------------


def sample_output_kind(out: PathLike) -> Optional[str]:
    """How :func:`write_samples` writes to ``out``: ``grid`` (a .png file), ``npz`` (a .npz file),
    ``folder`` (a path without suffix, or an existing folder), or None when it is none of these."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".png":
        return "grid"
    if suffix == ".npz":
        return "npz"
    return "folder" if suffix == "" or out.is_dir() else None


SAMPLE_OUTPUTS = "a .png file (grid), a .npz file, or a folder"  # what write_samples writes, for messages


def class_labels(g, n: int, cls: ClassLike) -> Optional[torch.Tensor]:
    """The labels of ``n`` samples of class ``cls`` (an index or a name); for ``cls='all'``, ``n`` per
    class, class after class; None when no class is asked for."""
    if cls is None:
        return None
    if not g.num_classes:
        raise LabelError("this generator is unconditional: it takes no class")
    if cls == "all":
        return torch.arange(g.num_classes).repeat_interleave(n)
    return torch.full((n,), g.class_index(cls), dtype=torch.long)


def truncated_noise(g, n: int, seed: int = 0, truncation: Optional[float] = None) -> torch.Tensor:
    """``g.noise(n, seed)`` [n, z_dim], with every component whose magnitude exceeds ``truncation`` redrawn
    until it is within (the truncation trick of BigGAN, Brock et al. 2019: smaller values trade variety for
    typical-looking images). None leaves the noise as it is; the same seed gives the same latents."""
    z = g.noise(n, seed)
    if truncation is None:
        return z
    if isinstance(truncation, bool) or not float(truncation) > 0:
        raise UsageError(
            f"truncation {truncation!r}: expected a number > 0 (latent components larger than it are "
            "redrawn; leave it out for none)"
        )
    for k in range(1, 101):  # each round redraws the components still outside, from its own seeded draw
        out = z.abs() > truncation
        if not bool(out.any()):
            return z
        z = torch.where(out, g.noise(n, seed + k * 1_000_003), z)
    return z.clamp(-truncation, truncation)  # what 100 rounds left (tiny truncations only)


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s)


def write_samples(
    g,
    out: PathLike,
    n: int,
    seed: int = 0,
    cls: ClassLike = None,
    nrow: Optional[int] = None,
    truncation: Optional[float] = None,
    mark=None,
) -> int:
    """Sample ``n`` images (``n`` per class for ``cls='all'``) with ``seed`` and write them to ``out``
    (see :func:`sample_output_kind`); returns how many were written. The same seed gives the same
    images in every form; ``truncation`` draws the latents with :func:`truncated_noise`; ``mark`` (a function
    of the uint8 batch ``[N, C, H, W]``, e.g. :func:`ganforge.tasks.watermark.app.marker`) is applied before writing.

    * a .png grid of ``nrow`` images per row; for ``cls='all'`` one row per class, labelled;
    * a .npz file: uint8 ``arr_0`` [N, H, W, C] (the guided-diffusion layout), and for a conditional
      generator the class labels as ``arr_1``;
    * a folder of PNGs ``000000.png``, ... (``000000_<class name>.png`` for a conditional generator).
    """
    out = Path(out)
    kind = sample_output_kind(out)
    if kind is None:
        raise ImageError(f"'{out}': expected a .png file (grid), a .npz file, or a folder")
    labels = class_labels(g, n, cls)
    total = n if labels is None else labels.shape[0]
    if labels is None and g.num_classes:  # the default labels, once (a run on clusters draws them with the seed)
        labels = g.labels_for(total, None, seed=seed)
    if truncation is None:
        imgs = g.sample_uint8(total, seed=seed, labels=labels)  # [N, C, H, W]
    else:  # see truncated_noise
        imgs = to_uint8(g.generate(truncated_noise(g, total, seed, truncation), labels))
    if mark is not None:  # e.g. an invisible watermark (ganforge sample --watermark): uint8 [N, C, H, W] -> same
        imgs = mark(imgs)
    if kind == "grid":
        save_png(labelled_rows(imgs, g.class_names, n) if cls == "all" else make_grid_uint8(imgs, nrow=nrow), out)
    elif kind == "npz":
        arrays = {"arr_0": imgs.permute(0, 2, 3, 1).numpy()}  # [N, H, W, C] uint8
        if g.num_classes:
            arrays["arr_1"] = g.labels_for(total, labels).numpy()  # class labels, as guided-diffusion writes them
        with writing(out, "samples"):
            np.savez(out, **arrays)
    else:  # save_png makes the folder
        ys = g.labels_for(total, labels)
        for i, im in enumerate(imgs):
            suffix = f"_{g.class_names[int(ys[i])]}" if ys is not None else ""
            save_png(im.permute(1, 2, 0).numpy(), out / f"{i:06d}{_safe(suffix)}.png")
    return total


# ---- latent interpolation ------------------------------------------------------------------------


def slerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation between latent vectors ``a`` and ``b`` [..., z_dim] at ``t`` in [0, 1]."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolation(
    g, rows: int = 8, steps: int = 10, seed: int = 0, linear: bool = False, cls: ClassLike = None
) -> torch.Tensor:
    """uint8 [rows * steps, C, H, W], row-major: row r walks in ``steps`` steps from one random latent
    to another (spherically, or ``linear``). A conditional generator shows class r mod K in row r,
    or class ``cls`` in every row."""
    if cls is not None and not g.num_classes:
        raise LabelError("this generator is unconditional: it takes no class")
    ends = g.noise(2 * rows, seed)
    a, b = ends[:rows], ends[rows:]
    zs = [slerp(a, b, t) if not linear else torch.lerp(a, b, t) for t in torch.linspace(0, 1, steps)]  # [rows, z] per t
    z = torch.stack(zs, 1).reshape(rows * steps, -1)  # row-major: each row one path
    labels = None
    if g.num_classes:
        row_cls = (
            torch.arange(rows) % g.num_classes
            if cls is None
            else torch.full((rows,), g.class_index(cls), dtype=torch.long)
        )
        labels = row_cls.repeat_interleave(steps)
    return to_uint8(g.generate(z, labels))


def write_interpolation(imgs: torch.Tensor, rows: int, steps: int, out: PathLike, nrow: Optional[int] = None) -> Path:
    """Write :func:`interpolation`'s images to ``out``: a .png grid with one path per row, or a .gif
    whose frames go along all paths at once, there and back (the end points shown once), laid out
    ``nrow`` paths a row (default: all in one row)."""
    out = Path(out)
    if out.suffix.lower() == ".gif":
        per_t = imgs.view(rows, steps, *imgs.shape[1:]).transpose(0, 1)  # [steps, rows, C, H, W]
        seq = list(per_t) + list(per_t.flip(0))[1:-1]  # there and back, endpoints once
        frames = [to_pil(make_grid_uint8(f, nrow=nrow or rows)) for f in seq]
        with writing(out, "animation"):
            frames[0].save(out, save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0)
    elif out.suffix.lower() == ".png":
        save_png(make_grid_uint8(imgs, nrow=steps), out)
    else:
        raise ImageError(f"'{out}': expected a .png (grid) or .gif (animation) path")
    return out
