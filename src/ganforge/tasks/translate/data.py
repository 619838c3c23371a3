"""Two image domains for translation (``task=translate``): paired, unpaired, or derived from one dataset.

:func:`load_translation` makes a :class:`TranslationData` (domains A and B as uint8 tensors, grey or colour
on each side, whether image ``i`` of A pairs with image ``i`` of B) from a data config:
``data.dataset=paired``, ``unpaired``, or any other dataset with pairs derived from its images.
``data.size`` and ``data.channels`` apply once at load time; random crops and flips are the trainer's.
``paired`` and ``unpaired`` are registered in :data:`ganforge.data.DATASETS` so ``data.dataset`` knows them;
loading one for a single-domain task (a GAN) is an error that says how to use one side.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image, ImageFilter

from ganforge.data import DATASETS, load_dataset
from ganforge.data.base import DataError, ImageData, resolve_root
from ganforge.data.folder import READ_ERRORS, _is_gray, _to_mode, list_images, load_folder
from ganforge.data.transform import (
    check_crop,
    check_memory,
    convert_channels,
    pil_filter,
    resize_image,
    target_channels,
    target_size,
)

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import DataConfig

PAIRED, UNPAIRED = "paired", "unpaired"
DERIVE = ("edges", "invert", "grey")


@dataclass
class TranslationData:
    """Domain A ``a`` uint8 ``[N_a, C_a, H, W]`` and domain B ``b`` uint8 ``[N_b, C_b, H, W]``; with
    ``paired``, ``a[i]`` and ``b[i]`` are two views of one thing (and ``N_a == N_b``)."""

    a: torch.Tensor
    b: torch.Tensor
    paired: bool
    name: str
    source: str
    skipped: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for side, x in (("A", self.a), ("B", self.b)):
            if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
                raise ValueError(
                    f"TranslationData.{side.lower()}: expected uint8 [N, C, H, W] with C in (1, 3), "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
        if self.a.shape[2:] != self.b.shape[2:]:
            ha, wa = self.a.shape[2:]
            hb, wb = self.b.shape[2:]
            raise DataError(
                f"{self.name}: domain A images are {ha}x{wa} but domain B images are {hb}x{wb} (HxW); "
                f"set data.size=HxW to bring both to one size"
            )
        if self.paired and self.a.shape[0] != self.b.shape[0]:
            raise ValueError(
                f"TranslationData: paired data needs as many A as B images, got {self.a.shape[0]} and {self.b.shape[0]}"
            )

    def domain_a(self) -> ImageData:
        """Domain A as an :class:`ImageData` (what the shared training loop batches)."""
        return ImageData(self.a, None, [], self.name, self.source, list(self.skipped))


# ---- derived pairs ---------------------------------------------------------------------------


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> uint8 ``[N, 1, H, W]``: PIL's FIND_EDGES filter on the luma, stretched so each
    image's strongest edge is white."""
    grey = convert_channels(images.numpy(), 1)[:, 0]  # [N, H, W]
    out = np.empty_like(grey)
    for i, g in enumerate(grey):
        e = np.asarray(Image.fromarray(g).filter(ImageFilter.FIND_EDGES), dtype=np.float32)
        top = e.max()
        out[i] = np.round(e * (255.0 / top)).astype(np.uint8) if top > 0 else 0
    return torch.from_numpy(out[:, None])


def derive_pairs(data: ImageData, how: str) -> TranslationData:
    """Pairs made from one dataset's images: ``edges`` (A = the :func:`edge_map`, B = the image),
    ``invert`` (A = the image, B = its negative) or ``grey`` (A = the luma of a colour image, B = the image)."""
    x = data.images
    if how == "edges":
        a, b = edge_map(x), x
    elif how == "invert":
        a, b = x, 255 - x
    elif how == "grey":
        if x.shape[1] != 3:
            raise DataError(
                f"translate.derive=grey makes grey -> colour pairs and needs colour images; {data.name!r} "
                "is grayscale (use data.channels=3 with a colour dataset, or translate.derive=edges|invert)"
            )
        a, b = torch.from_numpy(convert_channels(x.numpy(), 1)), x
    else:
        raise DataError(f"translate.derive: {how!r} is not allowed; choose one of: {', '.join(DERIVE)}")
    return TranslationData(a.contiguous(), b.contiguous(), True, f"{data.name}-{how}", data.source, list(data.skipped))


# ---- folders -----------------------------------------------------------------------------------


def _domain_dirs(root: Path, kind: str) -> Optional[Tuple[Path, Path]]:
    a, b = root / "A", root / "B"
    if a.is_dir() and b.is_dir():
        return a, b
    if a.is_dir() or b.is_dir():
        have, lack = ("A", "B") if a.is_dir() else ("B", "A")
        raise DataError(
            f"data.root '{root}' has a '{have}/' folder but no '{lack}/' folder: {kind} data needs both A/ and B/"
        )
    return None


def _read(
    path: Path,
    mode: str,
    size: Optional[Tuple[int, int]],
    crop: str,
    resample: int,
    box: Optional[Tuple[int, int, int, int]] = None,
) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        if box is not None:
            im = im.crop(box)
        img = resize_image(_to_mode(im, mode), size, crop, resample)
        arr = np.asarray(img)
    return arr[None] if mode == "L" else arr.transpose(2, 0, 1)


def _key(rel: PurePosixPath) -> str:
    return str(rel.with_suffix(""))


def load_paired(cfg: "DataConfig") -> TranslationData:
    """``data.root`` with ``A/`` and ``B/`` matched by file name, or side-by-side AB images."""
    size = target_size(cfg.size)
    channels = target_channels(cfg.channels)
    crop, resample = check_crop(cfg.crop), pil_filter(cfg.resize)
    root = resolve_root(cfg.root, PAIRED, "A/ and B/ folders of images matched by file name, or side-by-side AB images")
    dirs = _domain_dirs(root, "paired")
    # every pair: (path of A, box in it or None, path of B, box in it or None, name)
    jobs: List[Tuple[Path, Optional[tuple], Path, Optional[tuple], str]] = []
    sizes: Dict[str, Tuple[int, int]] = {}
    skipped: List[str] = []

    def header(path: Path) -> Optional[Tuple[Tuple[int, int], bool]]:
        try:
            with Image.open(path) as im:
                return im.size, _is_gray(im)
        except READ_ERRORS as e:
            if not cfg.skip_bad:
                raise DataError(
                    f"cannot read image '{path}': {e} (set data.skip_bad=true to skip unreadable pairs)"
                ) from None
            skipped.append(str(path))
            return None

    gray_a: List[bool] = []
    gray_b: List[bool] = []
    if dirs is not None:
        da, db = dirs
        files_a, files_b = list_images(da), list_images(db)
        for side, d, files in (("A", da, files_a), ("B", db, files_b)):
            if not files:
                raise DataError(f"domain {side} folder '{d}' has no images (looked recursively for image files)")
        by_key_b: Dict[str, PurePosixPath] = {}
        for f in files_b:
            if _key(f) in by_key_b:
                raise DataError(
                    f"two images in '{db}' share the name {_key(f)!r} ({by_key_b[_key(f)]}, {f}); "
                    "pairs are matched by file name without extension"
                )
            by_key_b[_key(f)] = f
        keys_a = [_key(f) for f in files_a]
        missing = [str(f) for f in files_a if _key(f) not in by_key_b]
        extra = sorted(set(by_key_b) - set(keys_a))
        if missing or extra:
            what = (
                f"{len(missing)} image(s) of '{da}' have no partner in '{db}' (e.g. {', '.join(missing[:3])})"
                if missing
                else f"{len(extra)} image(s) of '{db}' have no partner in '{da}' (e.g. "
                f"{', '.join(str(by_key_b[k]) for k in extra[:3])})"
            )
            raise DataError(
                f"missing pair: {what}; paired images are matched by file name without extension "
                "(use data.dataset=unpaired for unmatched collections)"
            )
        if cfg.limit is not None:
            files_a = files_a[: cfg.limit]
        for f in files_a:
            pa, pb = da / f, db / by_key_b[_key(f)]
            ha, hb = header(pa), header(pb)
            if ha is None or hb is None:
                continue
            if ha[0] != hb[0]:
                raise DataError(
                    f"mismatched pair: '{pa}' is {ha[0][0]}x{ha[0][1]} but '{pb}' is {hb[0][0]}x{hb[0][1]} "
                    "(width x height); the two images of a pair must have the same size"
                )
            jobs.append((pa, None, pb, None, _key(f)))
            sizes[_key(f)] = ha[0]
            gray_a.append(ha[1])
            gray_b.append(hb[1])
    else:
        files = list_images(root)
        if not files:
            raise DataError(
                f"no images found in '{root}': paired data needs A/ and B/ folders matched by file name, "
                "or side-by-side AB images (left half A, right half B)"
            )
        if cfg.limit is not None:
            files = files[: cfg.limit]
        for f in files:
            p = root / f
            h = header(p)
            if h is None:
                continue
            (w, hh), gray = h
            if w % 2:
                raise DataError(
                    f"mismatched pair: side-by-side image '{p}' is {w} pixels wide, an odd width that "
                    "cannot be split into two halves of one size (A | B)"
                )
            jobs.append((p, (0, 0, w // 2, hh), p, (w // 2, 0, w, hh), _key(f)))
            sizes[_key(f)] = (w // 2, hh)
            gray_a.append(gray)
            gray_b.append(gray)
    if not jobs:
        raise DataError(f"no readable image pairs in '{root}'")
    if size is None:
        seen = sorted(set(sizes.values()))
        if len(seen) > 1:
            shown = ", ".join(f"{h}x{w}" for w, h in seen[:5])
            raise DataError(
                f"pairs in '{root}' have different sizes (HxW: {shown}); set data.size=HxW to resize them "
                f"all to one size, e.g. data.size={seen[0][1]}x{seen[0][0]}"
            )
        size = (seen[0][1], seen[0][0])
    ca = channels or (1 if all(gray_a) else 3)
    cb = channels or (1 if all(gray_b) else 3)
    check_memory(len(jobs), ca + cb, size[0], size[1], f"paired folder '{root}'")
    a = np.empty((len(jobs), ca, *size), dtype=np.uint8)
    b = np.empty((len(jobs), cb, *size), dtype=np.uint8)
    keep = []
    for i, (pa, boxa, pb, boxb, _) in enumerate(jobs):
        try:
            a[i] = _read(pa, "L" if ca == 1 else "RGB", size, crop, resample, boxa)
            b[i] = _read(pb, "L" if cb == 1 else "RGB", size, crop, resample, boxb)
        except READ_ERRORS as e:
            if not cfg.skip_bad:
                raise DataError(
                    f"cannot read the pair {jobs[i][4]!r} in '{root}': {e} (set data.skip_bad=true to "
                    "skip unreadable pairs)"
                ) from None
            skipped.append(str(pa))
            continue
        keep.append(i)
    if not keep:
        raise DataError(f"no readable image pairs in '{root}'")
    resolved = root.resolve()
    return TranslationData(
        torch.from_numpy(a[keep]),
        torch.from_numpy(b[keep]),
        True,
        resolved.name or str(resolved),
        str(resolved),
        skipped,
    )


def load_unpaired(cfg: "DataConfig") -> TranslationData:
    """``data.root/A/`` and ``data.root/B/``, any counts, each read by the folder loader."""
    root = resolve_root(cfg.root, UNPAIRED, "a folder with A/ and B/ subfolders of images")
    dirs = _domain_dirs(root, "unpaired")
    if dirs is None:
        raise DataError(
            f"data.root '{root}' has no A/ and B/ folders: unpaired data needs one folder of images per "
            "domain, ROOT/A/ and ROOT/B/ (any number of images in each)"
        )
    sides = []
    for side, d in zip("AB", dirs):
        if not list_images(d):
            raise DataError(f"domain {side} folder '{d}' has no images (looked recursively for image files)")
        sides.append(load_folder(dataclasses.replace(cfg, root=str(d))))
    a, b = sides
    resolved = root.resolve()
    return TranslationData(
        a.images, b.images, False, resolved.name or str(resolved), str(resolved), a.skipped + b.skipped
    )


def load_translation(cfg: "DataConfig", derive: str = "edges") -> TranslationData:
    """The two domains a ``task=translate`` run trains on.

    ``paired``: ``ROOT/A/`` and ``ROOT/B/`` matched by path without extension (``A/cats/x.png`` with
    ``B/cats/x.jpg``), or side-by-side AB images in ``ROOT`` (left half A), as the pix2pix datasets ship;
    a missing partner or a size mismatch is an error naming the files. ``unpaired``: ``ROOT/A/`` and
    ``ROOT/B/``, any counts. Any other dataset: pairs from :func:`derive_pairs`. ``data.size`` resizes both
    sides (``data.crop``, ``data.resize``); ``data.channels`` forces 1 or 3 channels, otherwise a side is grey
    when all its images are."""
    if cfg.dataset == PAIRED:
        return load_paired(cfg)
    if cfg.dataset == UNPAIRED:
        return load_unpaired(cfg)
    return derive_pairs(load_dataset(cfg), derive)


def _two_domains(name: str):
    def refuse(cfg: "DataConfig") -> ImageData:
        raise DataError(
            f"data.dataset={name} holds two image domains (A and B) for task=translate; to use one side "
            f"alone, set data.dataset=folder data.root=ROOT/A (or ROOT/B)"
        )

    refuse.__doc__ = f"``{name}`` data is read by task=translate (:func:`load_translation`); alone it is refused."
    return refuse


DATASETS.register(PAIRED)(_two_domains(PAIRED))
DATASETS.register(UNPAIRED)(_two_domains(UNPAIRED))
