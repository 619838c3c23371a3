"""Image-to-image translation: turn an image of domain A into domain B (or back) with a trained
``task=translate`` run (pix2pix or CycleGAN). Images of any size are translated at their own size.

    from ganforge.tasks.translate.app import translate, translate_folder
    out = translate("runs/00004-digits2mnist-cyclegan-resnet", "digit.png")  # -> PIL.Image
    out = translate(run, "mnist.png", direction="b2a", compare="side_by_side.png")
    results = translate_folder(run, "photos/", "styled/", compare_dir="cmp/")  # same file names
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from ganforge import runs
from ganforge.errors import ImageError, TranslateError
from ganforge.imaging import (
    IMAGE_SUFFIXES,
    FolderResults,
    ImageLike,
    check_writable,
    compare_layout,
    images_in,
    join_alpha,
    load_image,
    save_image,
    source_name,
    split_alpha,
    usable_images,
)
from ganforge.options import with_overrides
from ganforge.tasks.translate.config import DIRECTIONS
from ganforge.tasks.translate.handle import TranslatorHandle

__all__ = [
    "TranslateError",
    "TranslateOptions",
    "TranslateResult",
    "compare_panels",
    "load_translator",
    "translate",
    "translate_detailed",
    "translate_folder",
    "translate_array",
]

DEFAULT_TILE = None  # None: the model's own (translate.tile when it was trained, 512 by default)
DEFAULT_OVERLAP = None  # None: min(32, tile // 4)


@dataclass
class TranslateOptions:
    """How :func:`translate` and :func:`translate_folder` run the model: which weights, where, and tiling."""

    checkpoint: str = "last"  # last | best | a step | a checkpoint folder
    device: str = "cpu"
    ema: bool = True  # the EMA weights (or the raw ones)
    tile: Optional[int] = DEFAULT_TILE  # largest side translated in one pass; None: the model's translate.tile
    overlap: Optional[int] = DEFAULT_OVERLAP  # of the tiles; None: min(32, tile // 4)
    skip_bad: bool = False  # folder mode: leave out unusable images (listed in .skipped) instead of stopping


def load_translator(model: Any, checkpoint: str = "last", device: str = "cpu", ema: bool = True) -> TranslatorHandle:
    """A :class:`TranslatorHandle` from a run folder, a checkpoint folder, or a handle already loaded."""
    if isinstance(model, TranslatorHandle):
        return model
    if isinstance(model, (str, Path)):
        from ganforge.api import load

        path = runs.resolve(model)
        if runs.is_checkpoint_dir(path):
            checkpoint = str(path)
        handle = load(path, checkpoint=checkpoint, ema=ema, device=device)
        if not isinstance(handle, TranslatorHandle):
            raise TranslateError(
                f"'{path}' trained task {handle.task!r}, which does not translate images; train a "
                "translator with 'ganforge train task=translate'"
            )
        return handle
    raise TranslateError(f"model: expected a run folder or a TranslatorHandle, got {type(model).__name__}")


def translate_array(
    handle: TranslatorHandle,
    pixels: np.ndarray,
    direction: str = "a2b",
    tile: Optional[int] = DEFAULT_TILE,
    overlap: Optional[int] = DEFAULT_OVERLAP,
    label: str = "the image",
) -> np.ndarray:
    """uint8 ``[H, W, C_in]`` -> uint8 ``[H, W, C_out]`` with ``direction``'s network."""
    pixels = _input_pixels(handle, direction, pixels, label)
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]  # [1, C_in, H, W]
    return handle.translate(x, direction, tile=tile, overlap=overlap)[0].permute(1, 2, 0).numpy()


def _input_pixels(handle: TranslatorHandle, direction: str, pixels: np.ndarray, label: str) -> np.ndarray:
    """The pixels [H, W, C] with the channel count ``direction``'s network takes, or a one-line error
    when that would lose colour."""
    c_in, _ = handle.channels(direction)
    c = pixels.shape[2]
    if c == c_in:
        return pixels
    if c_in == 1 and c == 3 and (pixels == pixels[..., :1]).all():
        return pixels[..., :1]  # grey stored as RGB: lossless
    kind = lambda n: "grayscale (1 channel)" if n == 1 else "colour (3 channels)"  # noqa: E731
    raise TranslateError(
        f"wrong channel count: the model's {direction} direction takes {kind(c_in)} images but "
        f"{label} is {kind(c)}; convert it first (PIL: image.convert({'L' if c_in == 1 else 'RGB'!r}))"
    )


@dataclass
class TranslateResult:
    """The translated image and how it was made."""

    image: Image.Image
    direction: str
    size: tuple  # (width, height)
    seconds: float
    compare_path: Optional[Path] = None
    path: Optional[Path] = None  # where translate_folder wrote it

    def describe(self) -> str:
        return f"{self.direction} at {self.size[0]}x{self.size[1]}, {self.seconds:.2f} s"


def _check_direction(handle: TranslatorHandle, direction: str) -> None:
    if direction not in DIRECTIONS:
        raise TranslateError(f"direction {direction!r}: choose a2b or b2a")
    handle.network(direction)  # a direction the model was not trained for: one clear line


def translate_detailed(
    model: Any,
    image: ImageLike,
    direction: str = "a2b",
    compare: Union[str, Path, None] = None,
    target: Optional[ImageLike] = None,
    *,
    options: Optional[TranslateOptions] = None,
    **overrides: Any,
) -> TranslateResult:
    """:func:`translate`, returning a :class:`TranslateResult`."""
    t0 = time.perf_counter()
    o = with_overrides(TranslateOptions, options, overrides, "translate")
    handle = load_translator(model, checkpoint=o.checkpoint, device=o.device, ema=o.ema)
    _check_direction(handle, direction)
    try:
        im = load_image(image)
        tgt = load_image(target) if target is not None else None
    except ImageError as e:
        raise TranslateError(str(e)) from None
    base, alpha = split_alpha(im)
    out = translate_array(handle, base, direction, o.tile, o.overlap, source_name(image))
    grey = out.shape[2] == 1
    result = join_alpha(out, alpha, ("L" if grey else "RGB") + ("A" if alpha is not None else ""))  # input's alpha kept
    res = TranslateResult(result, direction, im.size, time.perf_counter() - t0)
    if compare is not None:
        if tgt is not None and tgt.size != im.size:
            raise TranslateError(
                f"the target {source_name(target)} is {tgt.width}x{tgt.height} but the image is "
                f"{im.width}x{im.height} (width x height)"
            )
        res.compare_path = save_image(compare_panels(im, result, tgt), Path(compare))
    return res


def translate(
    model: Any,
    image: ImageLike,
    direction: str = "a2b",
    compare: Union[str, Path, None] = None,
    target: Optional[ImageLike] = None,
    *,
    options: Optional[TranslateOptions] = None,
    **kwargs: Any,
) -> Image.Image:
    """Translate ``image`` and return the result (PIL, the input's size, the output domain's mode).

    model      a ``task=translate`` run folder, a checkpoint folder, or a :class:`TranslatorHandle`.
    image      a path, a PIL image or a uint8 array (H x W, H x W x 3, ...).
    direction  ``a2b`` (default) or ``b2a`` (CycleGAN runs only).
    compare    a path: also write input | output | target (``target``, when given) side by side.
    options    a :class:`TranslateOptions`: ``checkpoint``, ``device``, ``ema``, ``tile`` (the largest side
               translated in one pass, default the model's ``translate.tile``, 512 unless set in training),
               ``overlap`` (of the tiles, default ``min(32, tile // 4)``). Each may also be given as a
               keyword (``tile=256``), replacing the options' value.

    Raises :class:`TranslateError` for unusable inputs and ``RunError`` for an unusable run folder.

    The networks are fully convolutional: the image is reflect-padded to the network's multiple and
    cropped back; images with a side above ``tile`` pixels go through in overlapping tiles. The result's
    mode is the output domain's (L or RGB), with the input's alpha channel passed through. A colour image
    given to a grayscale model (or the reverse) is an error, as is a direction the model was not trained
    for (pix2pix learns a2b only).
    """
    return translate_detailed(model, image, direction, compare, target, options=options, **kwargs).image


def compare_panels(image: Image.Image, output: Image.Image, target: Optional[Image.Image] = None) -> Image.Image:
    """input | output | target (when given), side by side and labelled; RGB when any of them is colour."""
    panels = [("input", image), ("output", output)] + ([("target", target)] if target is not None else [])
    colour = any(p.mode in ("RGB", "RGBA") for _, p in panels)
    mode = "RGB" if colour else "L"
    g = compare_layout(image.width, image.height, len(panels))
    canvas = Image.new(mode, (g["width"], g["height"]), (255, 255, 255) if colour else 255)
    draw = ImageDraw.Draw(canvas)
    for i, (name, p) in enumerate(panels):
        x = i * (g["panel_w"] + g["gap"])
        canvas.paste(p.convert(mode).resize((g["panel_w"], g["panel_h"]), Image.NEAREST), (x, g["label"]))
        draw.text((x + 2, 1), name, fill=(0, 0, 0) if colour else 0)
    return canvas


def translate_folder(
    model: Any,
    image_dir: Union[str, Path],
    out_dir: Union[str, Path],
    direction: str = "a2b",
    compare_dir: Union[str, Path, None] = None,
    target_dir: Union[str, Path, None] = None,
    *,
    options: Optional[TranslateOptions] = None,
    progress: Optional[Callable[[int, int, TranslateResult], None]] = None,
    **overrides: Any,
) -> FolderResults:
    """Translate every image directly in ``image_dir`` into ``out_dir``, keeping each file's name; with
    ``compare_dir`` also write the side-by-side pictures there (as PNG), with the image of the same name
    (without extension) from ``target_dir`` as the target when given. Inputs are checked (folders, a target
    for every image, every image and target decoded and usable, outputs writable) before the first image is
    translated: an unusable one is an error before anything is written, or with ``skip_bad`` (an option) is left out and
    listed in the result's ``skipped`` (path and reason). The model is loaded once. ``options`` and keyword
    overrides are :func:`translate`'s. Returns the results in file order (a list, with ``.skipped``)."""
    o = with_overrides(TranslateOptions, options, overrides, "translate_folder")
    image_dir, out_dir = Path(image_dir).expanduser(), Path(out_dir).expanduser()
    try:
        files = images_in(image_dir, "image")
    except ImageError as e:
        raise TranslateError(str(e)) from None
    if not files:
        raise TranslateError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{image_dir}'")
    if out_dir.exists() and out_dir.resolve() == image_dir.resolve():
        raise TranslateError(f"the output folder is the image folder '{image_dir}': choose another so inputs are kept")
    targets = {}
    if target_dir is not None:
        try:
            targets = {p.stem: p for p in images_in(Path(target_dir).expanduser(), "target")}
        except ImageError as e:
            raise TranslateError(str(e)) from None
        missing = [p.name for p in files if p.stem not in targets]
        if missing:
            raise TranslateError(
                f"missing pair: {len(missing)} image(s) of '{image_dir}' have no target in '{target_dir}' "
                f"(matched by file name without extension): {', '.join(missing[:10])}"
            )
    check_writable(out_dir, "output folder", folder=True)
    cmp_dir = None if compare_dir is None else check_writable(compare_dir, "comparison folder", folder=True)
    handle = load_translator(model, checkpoint=o.checkpoint, device=o.device, ema=o.ema)
    _check_direction(handle, direction)

    def usable(p: Path, im: Image.Image) -> None:
        _input_pixels(handle, direction, split_alpha(im)[0], f"'{p}'")
        if p.stem in targets:
            tgt = load_image(targets[p.stem])
            if cmp_dir is not None and tgt.size != im.size:  # the comparison puts them side by side
                raise TranslateError(
                    f"the target '{targets[p.stem]}' is {tgt.width}x{tgt.height} but the image '{p}' is "
                    f"{im.width}x{im.height} (width x height)"
                )

    try:
        files, skipped = usable_images(files, o.skip_bad, usable)
    except ImageError as e:
        raise TranslateError(str(e)) from None
    results = FolderResults(skipped=skipped)
    for i, p in enumerate(files):
        res = translate_detailed(
            handle, p, direction, None if cmp_dir is None else cmp_dir / f"{p.stem}.png", targets.get(p.stem), options=o
        )
        res.path = save_image(res.image, out_dir / p.name)
        results.append(res)
        if progress is not None:
            progress(i, len(files), res)
    return results
