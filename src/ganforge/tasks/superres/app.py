"""Super-resolution: upscale an image (or a folder of images) with a trained ``task=superres`` run.

Any size and mode (L, LA, RGB, RGBA) works: large images go through in tiles whose overlap makes the
result equal untiled inference, so memory stays bounded. Problems with the inputs raise
:class:`UpscaleError` with one line naming the file and what was expected. Python::

    from ganforge.tasks.superres.app import upscale
    big = upscale("runs/00004-mnist-sr4x-srresnet", "digit.png")  # -> PIL.Image, 4x larger
    big = upscale(run, "photo.png", compare="side_by_side.png", tile=128)  # tiled, with a comparison
    h = ganforge.load(run); h.upscale(uint8_images)  # the handle: tensors in, tensors out
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from ganforge import runs
from ganforge.errors import ImageError, UpscaleError
from ganforge.imaging import (
    FolderResults,
    ImageLike,
    check_writable,
    images_in,
    load_image,
    save_image,
    source_name,
    split_alpha,
    usable_images,
)
from ganforge.options import with_overrides

__all__ = [
    "DEFAULT_TILE",
    "MIN_TILE",
    "UpscaleError",
    "UpscaleOptions",
    "UpscaleResult",
    "compare_picture",
    "load_upscaler",
    "upscale",
    "upscale_detailed",
    "upscale_folder",
]

DEFAULT_TILE = 256  # input pixels a side per tile: ~0.2 GB peak for the width-32 photo network at x4
MIN_TILE = 8  # smallest tile accepted


@dataclass
class UpscaleOptions:
    """How :func:`upscale` and :func:`upscale_folder` run the model: tiling and which weights, where."""

    tile: Optional[int] = DEFAULT_TILE  # input pixels a side per tile; 0 or None: the image whole
    overlap: Optional[int] = None  # context pixels around each tile; None: the network's receptive radius
    checkpoint: str = "last"  # last | best | a step | a checkpoint folder
    device: str = "cpu"
    ema: bool = True  # the EMA weights (or the raw ones)
    skip_bad: bool = False  # folder mode: leave out unusable images (listed in .skipped) instead of stopping


def load_upscaler(model: Any, checkpoint: str = "last", device: str = "cpu", ema: bool = True):
    """The :class:`~ganforge.tasks.superres.handle.UpscalerHandle` of ``model``: a run folder, a checkpoint folder
    (``RUN/checkpoints/pixel`` for the pixel-loss model) or a handle already loaded."""
    if isinstance(model, (str, Path)):
        from ganforge.api import load

        path = runs.resolve(model)
        if runs.is_checkpoint_dir(path):
            checkpoint = str(path)
        model = load(path, checkpoint=checkpoint, device=device, ema=ema)
        if not hasattr(model, "upscale"):
            raise UpscaleError(
                f"'{path}' trained task {model.task!r}, which does not upscale images; train a "
                "super-resolution model with 'ganforge train task=superres' (preset mnist-sr or photo-sr)"
            )
        return model
    if hasattr(model, "upscale") and hasattr(model, "scale"):
        return model
    raise UpscaleError(f"model: expected a super-resolution run folder or its handle, got {type(model).__name__}")


def _check_tile(tile: Optional[int], overlap: Optional[int], handle) -> Tuple[Optional[int], int]:
    """(tile or None for whole images, overlap), or a one-line error for values the model cannot take."""
    radius = handle.receptive_radius
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, (int, np.integer))):
        raise UpscaleError(f"tile {tile!r}: expected a whole number of input pixels (0 = no tiling)")
    if tile is not None and tile != 0 and tile < MIN_TILE:
        raise UpscaleError(
            f"tile {tile}: tiles must be at least {MIN_TILE} input pixels a side (or 0 for no tiling); "
            f"each tile also reads {radius} pixels of context around it, so tiles of "
            f"{max(4 * radius, DEFAULT_TILE)} or more waste little"
        )
    ov = radius if overlap is None else overlap
    if isinstance(ov, bool) or not isinstance(ov, (int, np.integer)) or ov < 0:
        raise UpscaleError(
            f"overlap {overlap!r}: expected a whole number of input pixels >= 0 "
            f"(the network's receptive radius, {radius}, makes tiles seamless)"
        )
    return (None if not tile else int(tile)), int(ov)


def _pixels_for(handle, im: Image.Image, label: str) -> Tuple[np.ndarray, bool]:
    """The image's colour/grey pixels [H, W, C] with the model's channel count, and whether the result
    must go back to grey; a one-line error when the channels cannot be matched without loss."""
    base, _ = split_alpha(im)
    c, mc = base.shape[2], handle.channels
    if c == mc:
        return base, False
    if mc == 3 and c == 1:  # a grey image on a colour model: equal channels in, grey out
        return np.repeat(base, 3, axis=2), True
    if mc == 1 and c == 3:
        if np.array_equal(base[..., 0], base[..., 1]) and np.array_equal(base[..., 0], base[..., 2]):
            return base[..., :1], False
        raise UpscaleError(
            f"the model upscales 1-channel (grayscale) images but the image {label} is a colour "
            f"({im.mode}) image; convert it to grayscale first (PIL: image.convert('L')) or use a model "
            "trained on colour images (data.channels=3, preset photo-sr)"
        )
    raise UpscaleError(f"the model upscales {mc}-channel images but the image {label} has {c} channels ({im.mode})")


@dataclass
class UpscaleResult:
    """The upscaled image and how it was made."""

    image: Image.Image
    scale: int
    input_size: Tuple[int, int]  # (width, height)
    output_size: Tuple[int, int]
    tile: Optional[int]  # input pixels a side per tile (None: whole image)
    overlap: int
    tiles: int  # how many tiles the image took
    seconds: float
    compare_path: Optional[Path] = None
    path: Optional[Path] = None  # where upscale_folder wrote it

    def describe(self) -> str:
        (w, h), (W, H) = self.input_size, self.output_size
        how = f"{self.tiles} tiles of {self.tile} (+{self.overlap} overlap)" if self.tiles > 1 else "whole"
        return f"x{self.scale}: {w}x{h} -> {W}x{H}, {how}, {self.seconds:.1f} s"


def upscale_detailed(
    model: Any,
    image: ImageLike,
    compare: Union[str, Path, None] = None,
    original: Optional[ImageLike] = None,
    *,
    options: Optional[UpscaleOptions] = None,
    **overrides: Any,
) -> UpscaleResult:
    """:func:`upscale`, returning an :class:`UpscaleResult` (the image plus how it was made)."""
    o = with_overrides(UpscaleOptions, options, overrides, "upscale")
    t0 = time.perf_counter()
    handle = load_upscaler(model, checkpoint=o.checkpoint, device=o.device, ema=o.ema)
    tile_, ov = _check_tile(o.tile, o.overlap, handle)
    try:
        im = load_image(image)
    except ImageError as e:
        raise UpscaleError(str(e)) from None
    label = source_name(image)
    px, to_grey = _pixels_for(handle, im, label)
    s = handle.scale
    W, H = im.width * s, im.height * s
    orig = None
    if original is not None:
        try:
            orig = load_image(original)
        except ImageError as e:
            raise UpscaleError(str(e)) from None
        if orig.size != (W, H):
            raise UpscaleError(
                f"the original {source_name(original)} is {orig.width}x{orig.height}, but the upscaled "
                f"image is {W}x{H} ({im.width}x{im.height} x{s}); give the image the input was made from"
            )
    x = torch.from_numpy(px).permute(2, 0, 1)[None]  # uint8 [1, C, h, w]
    out = handle.upscale(x, tile=tile_, overlap=ov)[0].permute(1, 2, 0).numpy()  # uint8 [H, W, C]
    if to_grey:  # equal channels in: their mean is the grey result
        out = np.round(out.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    elif im.mode in ("RGB", "RGBA") and out.shape[2] == 1:  # a grey model on a colour image of equal channels
        out = np.repeat(out, 3, axis=2)
    _, alpha = split_alpha(im)
    result = _join(out, alpha, im.mode, (W, H))
    n_tiles = 1 if tile_ is None else len(_tile_grid(im.height, im.width, tile_))
    res = UpscaleResult(result, s, im.size, (W, H), tile_, ov, n_tiles, 0.0)
    if compare is not None:
        res.compare_path = save_image(compare_picture(im, result, s, orig), compare)
    res.seconds = time.perf_counter() - t0
    return res


def upscale(
    model: Any,
    image: ImageLike,
    compare: Union[str, Path, None] = None,
    *,
    options: Optional[UpscaleOptions] = None,
    **kwargs: Any,
) -> Image.Image:
    """Upscale ``image`` by the model's scale and return it (PIL, the input's mode).

    model    a run folder of ``ganforge train task=superres`` (its last checkpoint), a checkpoint folder
             (``RUN/checkpoints/pixel``: the pixel-loss model), or a handle from ``ganforge.load``.
    image    a path, a PIL image or a uint8 array (H x W, H x W x 1/2/3/4): L, LA, RGB or RGBA.
    compare  a path: also write input (nearest) | bicubic | ganforge | original side by side.
    options  an :class:`UpscaleOptions`: ``tile`` (input pixels a side per tile, default 128; 0 = whole
             image), ``overlap`` (context pixels around each tile; default: the network's receptive
             radius, which makes tiling exact), ``checkpoint``, ``device``, ``ema``. Each may also be
             given as a keyword (``tile=0``), replacing the options' value.

    ``original`` (keyword): the high-resolution image of the output's size, shown in the comparison.
    Raises :class:`UpscaleError` for unusable inputs, ``RunError`` for an unusable run folder.

    Colour or grey pixels go through the network; an alpha channel is upscaled bicubically (PIL), since
    the network never learnt transparency. A grey image on a colour model is upscaled as RGB with equal
    channels and returned as grey; a colour image on a grey model is an error (the colour would be lost),
    unless its three channels are equal.
    """
    return upscale_detailed(model, image, compare, options=options, **kwargs).image


def upscale_folder(
    model: Any,
    image_dir: Union[str, Path],
    out_dir: Union[str, Path],
    compare_dir: Union[str, Path, None] = None,
    *,
    options: Optional[UpscaleOptions] = None,
    progress: Optional[Callable[[int, int, UpscaleResult], None]] = None,
    **overrides: Any,
) -> FolderResults:
    """Upscale every image of ``image_dir`` into ``out_dir/<name>.png`` (the input's file name, as PNG) and,
    with ``compare_dir``, the comparison pictures there. The model is loaded once and everything is
    checked (every image decoded and of a usable channel count, the folders writable, no two outputs
    collide) before the first image is upscaled: an unusable image is an error before anything is
    written, or with ``skip_bad`` (an option) is left out and listed in the result's ``skipped`` (path and reason).
    ``progress(i, n, result)`` is called after each image; ``options`` and keyword overrides are
    :func:`upscale`'s. Returns the results in file order (a list, with ``.skipped``)."""
    o = with_overrides(UpscaleOptions, options, overrides, "upscale_folder")
    image_dir, out_dir = Path(image_dir).expanduser(), Path(out_dir).expanduser()
    try:
        files = images_in(image_dir, "image")
    except ImageError as e:
        raise UpscaleError(str(e)) from None
    if not files:
        raise UpscaleError(
            f"no images in '{image_dir}' (expected files ending in .png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff or .gif)"
        )
    if out_dir.exists() and out_dir.resolve() == image_dir.resolve():
        raise UpscaleError(
            f"the output folder is the image folder '{image_dir}': choose another so the inputs are kept"
        )
    handle = load_upscaler(model, checkpoint=o.checkpoint, device=o.device, ema=o.ema)
    tile_, ov = _check_tile(o.tile, o.overlap, handle)
    each = replace(o, tile=tile_ or 0, overlap=ov)
    try:  # every image readable and of a usable channel count, before any work
        files, skipped = usable_images(files, o.skip_bad, lambda p, im: _pixels_for(handle, im, f"'{p}'"))
    except ImageError as e:
        raise UpscaleError(str(e)) from None
    stems = [p.stem for p in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise UpscaleError(
            f"images with the same name in '{image_dir}' (their outputs would collide): {', '.join(twice)}"
        )
    check_writable(out_dir, "output folder", folder=True)
    cmp_dir = None if compare_dir is None else check_writable(compare_dir, "comparison folder", folder=True)
    results = FolderResults(skipped=skipped)
    for i, p in enumerate(files):
        res = upscale_detailed(handle, p, None if cmp_dir is None else cmp_dir / f"{p.stem}.png", options=each)
        res.path = save_image(res.image, out_dir / f"{p.stem}.png")
        results.append(res)
        if progress is not None:
            progress(i, len(files), res)
    return results


# ---- helpers ---------------------------------------------------------------------------------


def _tile_grid(h: int, w: int, tile: int) -> list:
    from ganforge.tasks.superres.networks import tiles

    return list(tiles(h, w, tile))


def _join(out: np.ndarray, alpha: Optional[np.ndarray], mode: str, size: Tuple[int, int]) -> Image.Image:
    """Upscaled pixels [H, W, C] and the input's alpha (upscaled bicubically here) -> a PIL image in ``mode``."""
    if alpha is not None:
        a = np.asarray(Image.fromarray(alpha, "L").resize(size, Image.BICUBIC))
        out = np.concatenate([out, a[..., None]], axis=2)
    return Image.fromarray(out[..., 0] if out.shape[2] == 1 else out, mode)


def compare_picture(
    im: Image.Image, result: Image.Image, scale: int, original: Optional[Image.Image] = None
) -> Image.Image:
    """Input (nearest-neighbour upscaled) | bicubic | ganforge | original (when given), side by side and
    labelled, at the output's size (small outputs enlarged by an integer factor to at least 128 px)."""
    colour = im.mode in ("RGB", "RGBA")
    mode = "RGB" if colour else "L"
    W, H = result.size
    flat = im.convert(mode)
    panels = [
        ("input (nearest)", flat.resize((W, H), Image.NEAREST)),
        ("bicubic", flat.resize((W, H), Image.BICUBIC)),
        ("ganforge", result.convert(mode)),
    ]
    if original is not None:
        panels.append(("original", original.convert(mode)))
    k = max(1, -(-128 // max(W, H)))  # enlarge small outputs (digits) so they can be seen
    gap, label = 4, 14
    pw, ph = W * k, H * k
    canvas = Image.new(
        mode, (len(panels) * pw + (len(panels) - 1) * gap, ph + label), (255, 255, 255) if colour else 255
    )
    draw = ImageDraw.Draw(canvas)
    for i, (name, p) in enumerate(panels):
        x = i * (pw + gap)
        canvas.paste(p.resize((pw, ph), Image.NEAREST) if k > 1 else p, (x, label))
        draw.text((x + 2, 1), name, fill=(0, 0, 0) if colour else 0)
    return canvas
