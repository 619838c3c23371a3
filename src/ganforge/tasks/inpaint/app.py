"""Image completion (inpainting): fill the missing region of an image with a trained model.

:func:`inpaint` has two methods: ``latent`` searches a GAN run's latent for the image that agrees with the
known pixels (Yeh et al. 2017, :mod:`ganforge.tasks.inpaint.latent`); ``network`` runs a completion network
trained with ``ganforge train task=inpaint`` (gated convolutions, Yu et al. 2019, or partial convolutions,
Liu et al. 2018) in one pass. :func:`inpaint_folder` completes a folder; bad inputs raise :class:`InpaintError`.
Python::

    from ganforge.apps import inpaint
    out = inpaint("runs/00003-mnist-dcgan", "digit.png", box=(7, 7, 14, 14))  # -> PIL.Image
    out = inpaint(run, "photo.png", mask="mask.png", options=InpaintOptions(steps=200, device="cuda"))
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge import runs
from ganforge.errors import ImageError, InpaintError
from ganforge.imaging import (
    IMAGE_SUFFIXES,
    FolderResults,
    ImageLike,
    box_mask,
    check_writable,
    compare_image,
    images_in,
    join_alpha,
    load_image,
    load_mask,
    match_channels,
    parse_box,
    save_image,
    source_name,
    split_alpha,
    usable_images,
)
from ganforge.options import with_overrides
from ganforge.tasks.inpaint.blend import blend as blend_fill
from ganforge.tasks.inpaint.latent import LatentInpainter, LatentResult, contextual_weights
from ganforge.tasks.inpaint.options import BLENDS, METHODS, InpaintOptions

__all__ = [
    "InpaintError",
    "InpaintOptions",
    "InpaintResult",
    "LatentInpainter",
    "LatentResult",
    "NetworkInpainter",
    "METHODS",
    "complete_batch",
    "contextual_weights",
    "inpaint",
    "inpaint_detailed",
    "inpaint_folder",
    "load_completer",
    "match_masks",
]


@contextmanager
def _as_inpaint_error() -> Iterator[None]:
    """An unusable image, mask or box met while completing is reported as :class:`InpaintError`,
    the one error callers of this module catch for bad inputs (the message is kept)."""
    try:
        yield
    except ImageError as e:
        raise InpaintError(str(e)) from None


# =============================================================================================
# The completers: latent optimisation (ganforge.tasks.inpaint.latent) or a trained completion network
# =============================================================================================


class NetworkInpainter:
    """Adapter around a trained completion network's handle (``ganforge.load(run)`` of a task=inpaint
    run): its ``complete(uint8 images, masks 1=missing) -> uint8`` gives the fill."""

    kind = "network"

    def __init__(self, handle):
        self.handle = handle
        self.img_shape: Tuple[int, int, int] = tuple(handle.img_shape)
        self.config = getattr(handle, "config", None)
        self.checkpoint_path = getattr(handle, "checkpoint_path", None)
        self.num_classes = 0

    @torch.no_grad()
    def fill(self, images: torch.Tensor, holes: torch.Tensor, **options: Any) -> Tuple[torch.Tensor, Dict[str, Any]]:
        """uint8 [N, C, H, W], holes [N, 1, H, W] -> (fill float [N, C, H, W] in [0, 255], details)."""
        t0 = time.perf_counter()
        out = self.handle.complete(images.to(torch.uint8), holes.to(torch.uint8))
        return out.float().cpu(), {"seconds": time.perf_counter() - t0}


Completer = Union[LatentInpainter, NetworkInpainter]


def load_completer(model: Any, method: str = "auto", checkpoint: str = "last", device: str = "cpu") -> Completer:
    """A completer for ``model``: a run folder (or checkpoint folder) path, a GeneratorHandle,
    an inpainter handle (``.complete``), or a completer already made.

    ``method``: ``auto`` (the network for a task=inpaint run, latent optimisation for a GAN run),
    ``latent`` or ``network``; asking for a method the model cannot do is an error.
    """
    if method not in METHODS:
        raise InpaintError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    path = None
    if isinstance(model, (str, Path)):  # the run's handle, whatever its task
        from ganforge.api import load

        path = runs.resolve(model)
        if runs.is_checkpoint_dir(path):  # a checkpoint folder: it names itself as the checkpoint
            checkpoint = str(path)
        model = load(path, checkpoint=checkpoint, device=device)
    if isinstance(model, (LatentInpainter, NetworkInpainter)):
        comp: Completer = model
    elif hasattr(model, "complete") and hasattr(model, "img_shape"):
        comp = NetworkInpainter(model)
    elif hasattr(model, "module") and hasattr(model, "z_dim"):  # a GeneratorHandle
        comp = LatentInpainter.from_generator(model)
    elif path is not None:
        raise InpaintError(
            f"'{path}' trained task {model.task!r}, which does not complete images; use a GAN run or "
            "a completion network ('ganforge train task=inpaint')"
        )
    else:
        raise InpaintError(
            f"model: expected a run folder, a GeneratorHandle or an inpainter handle, got {type(model).__name__}"
        )
    if method != "auto" and comp.kind != method:
        if path is None:
            raise InpaintError(
                f"method {method!r} asked for, but the model is a {comp.kind} completer "
                f"({'GAN: use method=latent' if comp.kind == 'latent' else 'completion network: use method=network'})"
            )
        if comp.kind == "network":
            raise InpaintError(
                f"'{path}' is a completion-network run (task={model.task}); latent optimisation needs "
                "a GAN run from 'ganforge train' (use method=network or auto)"
            )
        raise InpaintError(
            f"'{path}' is a GAN run (task={model.task}); the network method needs a completion network "
            "trained with 'ganforge train task=inpaint' (use method=latent or auto)"
        )
    return comp


# =============================================================================================
# Batches at the model's size (the benchmark's entry point)
# =============================================================================================


def complete_batch(
    completer: Completer, images: torch.Tensor, holes: torch.Tensor, blend: str = "poisson", **options: Any
) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Complete uint8 images [N, C, H, W] at the model's size; holes [N, 1, H, W] (True = missing).

    Returns (uint8 [N, C, H, W] equal to the input outside the holes, details).
    """
    if blend not in BLENDS:
        raise InpaintError(f"blend {blend!r}: choose one of {', '.join(BLENDS)}")
    holes = holes.bool()
    fill, info = completer.fill(images, holes, **options)
    out = blend_fill(fill, images.float(), holes, blend)
    out = out.round().clamp(0, 255).to(torch.uint8)
    return torch.where(holes.expand_as(images), out, images), info


# =============================================================================================
# The public call
# =============================================================================================


@dataclass
class InpaintResult:
    """The completed image and how it was made."""

    image: Image.Image
    method: str  # "latent" | "network"
    blend: str
    model_size: Tuple[int, int]  # (height, width) the completion ran at
    resized: bool  # the image was resized to the model's size and the fill back
    hole_fraction: float
    seconds: float
    details: Dict[str, Any] = field(default_factory=dict)  # context_loss, prior_loss, class, history ...
    compare_path: Optional[Path] = None
    path: Optional[Path] = None  # where inpaint_folder wrote the image

    def describe(self) -> str:
        """One line for people: method, size, losses, time."""
        bits = [f"{self.method}"]
        if self.method == "latent":
            cl = self.details.get("context_loss")
            if cl:
                bits.append(f"contextual loss {cl[0]:.3g}")
            if self.details.get("class"):
                bits.append(f"class {self.details['class'][0]}")
        h, w = self.model_size
        bits.append(f"at {w}x{h}" + (" (resized)" if self.resized else ""))
        bits.append(f"hole {100 * self.hole_fraction:.1f}%")
        bits.append(f"blend {self.blend}")
        bits.append(f"{self.seconds:.1f} s")
        return ", ".join(bits)


@_as_inpaint_error()
def inpaint_detailed(
    model: Any,
    image: ImageLike,
    mask: Optional[ImageLike] = None,
    box: Union[str, Sequence[int], None] = None,
    *,
    options: Optional[InpaintOptions] = None,
    compare: Union[str, Path, None] = None,
    original: Union[bool, None, ImageLike] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    **overrides: Any,
) -> InpaintResult:
    """:func:`inpaint`, returning an :class:`InpaintResult` (the image plus how it was made);
    ``progress(step, steps)`` is called after each step of a latent search."""
    t0 = time.perf_counter()
    o = with_overrides(InpaintOptions, options, overrides, "inpaint")
    comp = load_completer(model, o.method, checkpoint=o.checkpoint, device=o.device)
    opts = _fill_options(comp, o)
    if progress is not None and comp.kind == "latent":
        opts["progress"] = progress
    job = _prepare(comp, image, mask, box)
    fill_small, details = comp.fill(job.small, job.small_hole, **opts)  # float [1, c, mh, mw] 0..255
    res = _finish(comp, job, fill_small, details, o.blend, compare, original)
    res.seconds = time.perf_counter() - t0
    return res


def inpaint(
    model: Any,
    image: ImageLike,
    mask: Optional[ImageLike] = None,
    box: Union[str, Sequence[int], None] = None,
    *,
    options: Optional[InpaintOptions] = None,
    compare: Union[str, Path, None] = None,
    **kwargs: Any,
) -> Image.Image:
    """Fill the missing region of ``image`` and return the completed image (PIL, same size and mode).

    Whatever the method, the image is resized (stretched) to the model's size and completed there; the
    fill is upsampled to the image's own size and blended into the hole at full resolution (Poisson
    blending by default, Pérez et al. 2003, as in Yeh et al. Sec. 3.3; see :mod:`ganforge.tasks.inpaint.blend`).
    Pixels outside the hole are returned exactly as they were; an alpha channel is passed through.

    model    a run folder from ``ganforge train`` (a GAN run or a ``task=inpaint`` run), a checkpoint
             folder, a :class:`ganforge.api.GeneratorHandle`, or an inpainter handle.
    image    a path, a PIL image or a uint8 array (H x W, H x W x 3, H x W x 4 ...); L, LA, RGB, RGBA.
    mask     a path, PIL image or array of the image's size, white (or True) = missing; or
    box      (x, y, w, h): the rectangle to fill.
    options  an :class:`InpaintOptions`: ``method`` (``auto``: the network for a task=inpaint run, latent
             optimisation for a GAN run; ``latent``, Yeh et al. 2017; ``network``), the latent search's
             ``steps``, ``restarts``, ``seed``, ``class_`` (None: every class is tried), ``lr``,
             ``prior_weight``, ``window``; ``blend`` (``poisson``, ``feather``, ``none``), ``checkpoint``,
             ``device``. Each may also be given as a keyword (``steps=50``), replacing the options' value.
    compare  a path: also write masked input | completion | original (when known) side by side.

    ``original`` (keyword): None: the input shows in the comparison when it still holds pixels under
    the hole; True/False; or the original image itself.
    Raises :class:`InpaintError` for unusable inputs, ``RunError`` for an unusable run folder.
    """
    return inpaint_detailed(model, image, mask, box, options=options, compare=compare, **kwargs).image


# =============================================================================================
# Helpers of the public call
# =============================================================================================


@dataclass
class _Job:
    """One image read, checked and brought to the model's size, waiting for its fill."""

    im: Image.Image  # the input as given (its size and mode are the result's)
    hole: np.ndarray  # bool [H, W], True = missing
    px: np.ndarray  # uint8 [H, W, c]: its pixels with the model's channel count
    alpha: Optional[np.ndarray]  # [H, W] or None, passed through
    small: torch.Tensor  # uint8 [1, c, mh, mw]: the image stretched to the model's size
    small_hole: torch.Tensor  # bool [1, 1, mh, mw]: a model pixel is missing when any of its footprint is


def _fill_options(comp: Completer, o: InpaintOptions) -> Dict[str, Any]:
    """The checked options of ``comp.fill``: the latent search's for a GAN, none for a network."""
    if o.blend not in BLENDS:
        raise InpaintError(f"blend {o.blend!r}: choose one of {', '.join(BLENDS)}")
    if comp.kind == "network":
        if o.class_ is not None:
            raise InpaintError(
                "a class applies to conditional GAN runs (latent method); the completion network takes none"
            )
        return {}
    return {k: getattr(o, k) for k in ("steps", "restarts", "seed", "class_", "lr", "prior_weight", "window")}


def _prepare(
    comp: Completer, image: ImageLike, mask: Optional[ImageLike], box: Union[str, Sequence[int], None]
) -> _Job:
    """Read ``image`` and its hole, check them against the model, and shrink both to the model's size."""
    im = load_image(image)
    hole = _hole_of(mask, box, im.size)
    base, alpha = split_alpha(im)
    c, mh, mw = comp.img_shape
    px = match_channels(base, c, im.mode, source_name(image))  # [H, W, c]
    H, W = hole.shape
    full = torch.from_numpy(px).permute(2, 0, 1)[None].float()  # [1, c, H, W] 0..255
    small = _resize(full, (mh, mw)).round().clamp(0, 255).to(torch.uint8)  # [1, c, mh, mw]
    small_hole = _resize(torch.from_numpy(hole)[None, None].float(), (mh, mw)) > 1e-4  # [1, 1, mh, mw]
    if bool(small_hole.all()):
        raise InpaintError(
            f"at the model's size {mw}x{mh} the hole covers every pixel (the image is {W}x{H}): nothing "
            "known is left to complete from; use a smaller mask"
        )
    return _Job(im, hole, px, alpha, small, small_hole)


def _finish(
    comp: Completer,
    job: _Job,
    fill_small: torch.Tensor,
    details: Dict[str, Any],
    blend: str,
    compare: Union[str, Path, None],
    original: Union[bool, None, ImageLike],
) -> InpaintResult:
    """Upsample the fill (float [1, c, mh, mw], 0..255) to the image's size, blend it into the hole, put
    the known pixels back exactly, and write the comparison picture when asked."""
    _, mh, mw = comp.img_shape
    H, W = job.hole.shape
    resized = (mh, mw) != (H, W)
    fill = (
        F.interpolate(fill_small, size=(H, W), mode="bicubic", align_corners=False).clamp(0, 255)
        if resized
        else fill_small
    )
    full = torch.from_numpy(job.px).permute(2, 0, 1)[None].float()  # [1, c, H, W]
    out = blend_fill(fill, full, torch.from_numpy(job.hole)[None, None], blend).round().clamp(0, 255).to(torch.uint8)
    out_np = np.where(job.hole[..., None], out[0].permute(1, 2, 0).numpy(), job.px)  # known pixels: the input's
    result_img = join_alpha(out_np, job.alpha, job.im.mode)
    res = InpaintResult(
        image=result_img,
        method=comp.kind,
        blend=blend,
        model_size=(mh, mw),
        resized=resized,
        hole_fraction=float(job.hole.mean()),
        seconds=0.0,
        details=details,
    )
    if compare is not None:
        res.compare_path = Path(compare)
        save_image(
            compare_image(job.im, job.hole, result_img, _original_for_compare(original, job.im, job.hole)),
            res.compare_path,
        )
    return res


def _hole_of(mask: Optional[ImageLike], box: Union[str, Sequence[int], None], size: Tuple[int, int]) -> np.ndarray:
    if mask is not None and box is not None:
        raise InpaintError("give either a mask or a box, not both")
    if mask is None and box is None:
        raise InpaintError("nothing to fill: give a mask (white = missing) or a box x,y,w,h")
    hole = box_mask(box, size) if box is not None else load_mask(mask, size)  # type: ignore[arg-type]
    if not hole.any():
        raise InpaintError(f"the mask {source_name(mask)} marks no pixel as missing (white = missing): nothing to fill")
    if hole.all():
        raise InpaintError(
            f"the mask {source_name(mask) if mask is not None else 'box'} marks every pixel as missing: "
            "there is nothing known to complete from; leave part of the image known"
        )
    return hole


def _original_for_compare(
    original: Union[bool, None, ImageLike], im: Image.Image, hole: np.ndarray
) -> Optional[Image.Image]:
    """The original to show, or None. Auto: the input itself when its pixels under the hole are not
    all one colour (it still holds the original there rather than a painted-over hole)."""
    if original is False:
        return None
    if original is True:
        return im
    if original is None:
        base, _ = split_alpha(im)
        inside = base[hole]  # [n, C]
        return im if inside.size and bool((inside != inside[:1]).any()) else None
    orig = load_image(original)
    if orig.size != im.size:
        raise InpaintError(f"the original is {orig.width}x{orig.height} but the image is {im.width}x{im.height}")
    return orig


def _resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking): float [N, C, H, W] -> [N, C, *size]."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


# =============================================================================================
# Folders
# =============================================================================================


@_as_inpaint_error()
def match_masks(image_dir: Union[str, Path], mask_dir: Union[str, Path]) -> List[Tuple[Path, Path]]:
    """Pair every image of ``image_dir`` with the mask of the same file name (stem) in ``mask_dir``.

    Images without a mask, or stems with two masks, are an error that lists them.
    """
    images = images_in(Path(image_dir).expanduser(), "image")
    if not images:
        raise InpaintError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{image_dir}'")
    masks: Dict[str, Path] = {}
    dupes: List[str] = []
    for m in images_in(Path(mask_dir).expanduser(), "mask"):
        if m.stem in masks:
            dupes.append(m.stem)
        masks[m.stem] = m
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise InpaintError(f"images with the same name in '{image_dir}' (outputs would collide): {', '.join(twice)}")
    ambiguous = sorted(set(dupes) & set(stems))
    if ambiguous:
        raise InpaintError(f"more than one mask for {', '.join(ambiguous)} in '{mask_dir}'; keep one per image")
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing) - 20} more)" if len(missing) > 20 else "")
        raise InpaintError(
            f"{len(missing)} of {len(images)} image(s) in '{image_dir}' have no mask in '{mask_dir}' "
            f"(masks are matched by file name without extension): {shown}"
        )
    return [(p, masks[p.stem]) for p in images]


@_as_inpaint_error()
def inpaint_folder(
    model: Any,
    image_dir: Union[str, Path],
    mask_dir: Union[str, Path, None],
    out_dir: Union[str, Path],
    compare_dir: Union[str, Path, None] = None,
    *,
    box: Union[str, Sequence[int], None] = None,
    options: Optional[InpaintOptions] = None,
    progress: Optional[Callable[[int, int, InpaintResult], None]] = None,
    **overrides: Any,
) -> FolderResults:
    """Complete every image of ``image_dir`` with its mask from ``mask_dir`` (same file name, any
    image extension), or with one ``box`` for all; write ``out_dir/<name>.png`` (PNG, so the known
    pixels stay exact) and, with ``compare_dir``, the side-by-side pictures there.

    Everything is checked (masks present, output folders writable, then every image and mask decoded,
    of equal sizes and usable by the model) before the first image is completed: an unusable pair is an
    error before anything is written, or with ``skip_bad`` (an option) is left out and listed in the result's
    ``skipped`` (the image's path and the reason). The model is loaded once. Images are completed
    ``options.batch_size`` at a time (images of any size: each is stretched to the model's size first), in
    one latent search or one network pass per batch. Each image's result is the one :func:`inpaint_detailed`
    gives it alone with the same options (the latent search starts every image from the same
    ``seed``-determined latents, whatever else is in its batch), up to floating-point rounding.
    ``progress(i, n, result)`` is called after each image is written. ``options`` and keyword overrides are
    :func:`inpaint`'s. Returns the results in file order (a list, with ``.skipped``).
    """
    o = with_overrides(InpaintOptions, options, overrides, "inpaint_folder")
    batch_size = o.batch_size
    image_dir, out_dir = Path(image_dir).expanduser(), Path(out_dir).expanduser()
    if batch_size < 1:
        raise InpaintError(f"batch size: expected at least 1 image, got {batch_size}")
    if mask_dir is not None and box is not None:
        raise InpaintError("give either a mask folder or a box, not both")
    if mask_dir is None and box is None:
        raise InpaintError("folder mode needs a mask folder (masks named like the images) or a box x,y,w,h")
    if mask_dir is not None:
        pairs: List[Tuple[Path, Optional[Path]]] = list(match_masks(image_dir, mask_dir))
    else:
        imgs = images_in(image_dir, "image")
        if not imgs:
            raise InpaintError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{image_dir}'")
        pairs = [(p, None) for p in imgs]
    if out_dir.exists() and out_dir.resolve() == image_dir.resolve():
        raise InpaintError(f"the output folder is the image folder '{image_dir}': choose another so inputs are kept")
    if box is not None:
        parse_box(box)  # a malformed box fails before the model is loaded
    check_writable(out_dir, "output folder", folder=True)
    cmp_dir = None if compare_dir is None else check_writable(compare_dir, "comparison folder", folder=True)
    comp = load_completer(model, o.method, checkpoint=o.checkpoint, device=o.device)
    opts = _fill_options(comp, o)
    mask_of = dict(pairs)
    # every image and its mask decoded, of equal sizes and usable by the model, before any is completed
    usable, skipped = usable_images(
        [p for p, _ in pairs], o.skip_bad, lambda p, im: _prepare(comp, p, mask_of[p], box), "image"
    )
    pairs = [(p, mask_of[p]) for p in usable]
    results = FolderResults(skipped=skipped)
    for start in range(0, len(pairs), batch_size):
        t0 = time.perf_counter()
        batch = pairs[start : start + batch_size]
        jobs = [_prepare(comp, img_p, mask_p, box) for img_p, mask_p in batch]
        fill, details = comp.fill(torch.cat([j.small for j in jobs]), torch.cat([j.small_hole for j in jobs]), **opts)
        share = (time.perf_counter() - t0) / len(jobs)  # each image's part of the batch's time
        for i, ((img_p, _), job) in enumerate(zip(batch, jobs)):
            t1 = time.perf_counter()
            res = _finish(
                comp,
                job,
                fill[i : i + 1],
                _details_of(details, i),
                o.blend,
                None if cmp_dir is None else cmp_dir / f"{img_p.stem}.png",
                None,
            )
            res.path = save_image(res.image, out_dir / f"{img_p.stem}.png")
            res.seconds = share + time.perf_counter() - t1
            results.append(res)
            if progress is not None:
                progress(len(results) - 1, len(pairs), res)
    return results


def _details_of(details: Dict[str, Any], i: int) -> Dict[str, Any]:
    """Image ``i``'s part of the details of a batch's fill: lists hold one entry per image, tensors
    [steps + 1, N] one column per image (the latent search's history), anything else is shared."""
    out: Dict[str, Any] = {}
    for k, v in details.items():
        if isinstance(v, list):
            out[k] = v[i : i + 1]
        elif torch.is_tensor(v) and v.dim() == 2:
            out[k] = v[:, i : i + 1]
        else:
            out[k] = v
    return out
