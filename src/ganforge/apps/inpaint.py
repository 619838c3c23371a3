"""Image completion (inpainting): fill the missing region of an image with a trained model.

Two methods behind one call, :func:`inpaint`:

* ``latent`` -- **semantic inpainting by latent optimisation** with any GAN run (Yeh, Chen, Lim,
  Schwing, Hasegawa-Johnson & Do 2017, "Semantic image inpainting with deep generative models",
  CVPR). The generator G is fixed; we search its latent space for the ``z`` whose image agrees
  with the known pixels y::

      z* = argmin_z  L_c(z) + lambda * L_p(z)
      L_c(z) = || W * (G(z) - y) ||_1                     contextual loss (Sec. 3.2, eq. 2)
      L_p(z) = generator loss of the run on D(G(z))        prior loss (Sec. 3.2, eq. 3)

  where W weights a known pixel by the fraction of missing pixels in a ``window`` x ``window``
  neighbourhood around it (hole pixels weigh 0), so the pixels next to the hole count most.
  The prior keeps G(z) realistic in the eyes of the run's discriminator (lambda = 0.003 as in
  the paper). Several restarts are optimised at once as one batch (Adam) and the one with the
  lowest contextual loss is kept. Conditional runs take a class (``class_``) or, when it is not
  known, every class gets its own restarts and the best over all of them wins.
* ``network`` -- a completion network trained with ``ganforge train task=inpaint`` (gated
  convolutions, Yu et al. 2019, or partial convolutions, Liu et al. 2018): one forward pass,
  ``ganforge.models.inpaint.load_inpainter(run).complete(images, masks)``.

Whatever the method, the image is resized (stretched) to the model's size, completed there,
and the fill is upsampled to the image's own size and blended into the hole at full resolution
(Poisson blending by default, Pérez et al. 2003, as in Yeh et al. Sec. 3.3; see
:mod:`ganforge.apps.blend`). Pixels outside the hole are returned exactly as they were, and the
result has the input's size and mode (L, LA, RGB, RGBA; alpha is passed through).

Python::

    from ganforge.apps import inpaint
    out = inpaint("runs/00003-mnist-dcgan", "digit.png", box=(7, 7, 14, 14))   # -> PIL.Image
    out = inpaint(run, "photo.png", mask="mask.png", compare="side_by_side.png")
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ganforge.apps.blend import BLENDS, blend as blend_fill

__all__ = [
    "InpaintError",
    "InpaintResult",
    "LatentInpainter",
    "LatentResult",
    "NetworkInpainter",
    "METHODS",
    "IMAGE_SUFFIXES",
    "box_mask",
    "complete_batch",
    "compare_image",
    "compare_layout",
    "contextual_weights",
    "inpaint",
    "inpaint_detailed",
    "inpaint_folder",
    "load_completer",
    "load_image",
    "load_mask",
    "match_masks",
    "save_image",
]

METHODS = ("auto", "latent", "network")
MODES = ("L", "LA", "RGB", "RGBA")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
DEFAULT_STEPS = 500
DEFAULT_RESTARTS = 8
DEFAULT_LR = 0.05
DEFAULT_PRIOR = 0.003  # lambda of Yeh et al. 2017
DEFAULT_WINDOW = 7  # neighbourhood of the contextual weights (Yeh et al. 2017 use 7)
HOLE_GREY = 128  # how the hole is drawn in the comparison picture

ImageLike = Union[str, Path, Image.Image, np.ndarray, torch.Tensor]
Box = Tuple[int, int, int, int]


from ganforge.errors import InpaintError  # noqa: E402,F401  (re-exported)


# =============================================================================================
# Method 1: latent optimisation (Yeh et al. 2017)
# =============================================================================================


def contextual_weights(hole: torch.Tensor, window: int = DEFAULT_WINDOW) -> torch.Tensor:
    """Yeh et al. 2017 eq. (2): W_i = (number of missing pixels in the window around i) / |window|
    for a known pixel i, and 0 for a missing one. hole: [N, 1, H, W] bool -> float [N, 1, H, W].

    Windows are cut at the image border (only pixels inside the image are counted).
    """
    if window < 1 or window % 2 == 0:
        raise InpaintError(f"window: expected an odd size >= 1, got {window}")
    m = hole.float()
    frac = F.avg_pool2d(m, window, stride=1, padding=window // 2, count_include_pad=False)  # [N, 1, H, W]
    return frac * (1.0 - m)


def _per_sample_g_loss(loss_name: str):
    """The run's generator loss applied to each logit on its own: logits [B] -> [B]."""
    from ganforge.losses import LOSSES

    g = LOSSES.get(loss_name).g
    return torch.func.vmap(lambda t: g(t.unsqueeze(0)))


@dataclass
class LatentResult:
    """What :meth:`LatentInpainter.optimise` found, per image."""

    fill: torch.Tensor  # [N, C, H, W] in [-1, 1]: G(z*) of the best restart
    z: torch.Tensor  # [N, z_dim]: the best latent
    labels: Optional[torch.Tensor]  # [N] class of the best restart (conditional runs), else None
    context_loss: torch.Tensor  # [N]: contextual loss of the best restart (after the last step)
    prior_loss: torch.Tensor  # [N]: prior loss of the best restart
    restart_losses: torch.Tensor  # [N, K * R]: final contextual loss of every restart (class-major)
    history: torch.Tensor  # [steps + 1, N]: lowest contextual loss over the restarts at each step
    seconds: float = 0.0


class LatentInpainter:
    """Completion by searching a GAN's latent space (Yeh et al. 2017).

    ``generator`` is a :class:`ganforge.api.GeneratorHandle`; ``discriminator`` the run's D (for
    the prior loss) or None to search with the contextual loss alone; ``loss_name`` the run's
    ``loss.name`` (its generator loss is the prior).
    """

    kind = "latent"

    def __init__(self, generator, discriminator: Optional[nn.Module], loss_name: str = "non-saturating"):
        self.generator = generator
        self.discriminator = None if discriminator is None else discriminator.eval().requires_grad_(False)
        self.loss_name = loss_name
        self.img_shape: Tuple[int, int, int] = tuple(generator.img_shape)
        self.num_classes: int = int(generator.num_classes)
        self.config = generator.config
        self.checkpoint_path = generator.checkpoint_path
        self._prior = _per_sample_g_loss(loss_name)

    @classmethod
    def from_run(cls, run: Union[str, Path], checkpoint: str = "last", device: str = "cpu") -> "LatentInpainter":
        """The EMA generator and the discriminator of a GAN run's checkpoint."""
        from ganforge.api import load_generator

        return cls.from_generator(load_generator(run, checkpoint=checkpoint, device=device))

    @classmethod
    def from_generator(cls, handle) -> "LatentInpainter":
        """Wrap a loaded generator; its discriminator is read from the same checkpoint folder."""
        from ganforge.models import build_models
        from ganforge.training import checkpoint as ckpt

        folder = Path(handle.checkpoint_path)
        d: Optional[nn.Module] = None
        if (folder / ckpt.WEIGHT_FILES["d"]).is_file():
            _, d = build_models(handle.config.model, handle.img_shape)
            try:
                d.load_state_dict(ckpt.load_weights(folder, "d"))
            except RuntimeError as e:
                raise ckpt.RunError(f"discriminator weights in '{folder}' do not match its config.json: {e}") from None
            d = d.to(handle.device)
        else:
            warnings.warn(f"checkpoint '{folder}' has no discriminator: latent search without the prior loss",
                          stacklevel=2)
        return cls(handle, d, handle.config.loss.name)

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def _initial_latents(self, n: int, restarts: int, seed: int) -> torch.Tensor:
        """[n, restarts, z_dim]: restart r of every image drawn from its own seeded generator, so the
        first R restarts are the same whatever the total number of restarts."""
        zs = [torch.randn(n, self.generator.z_dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + r))
              for r in range(restarts)]
        return torch.stack(zs, 1)

    def optimise(
        self,
        images: torch.Tensor,
        holes: torch.Tensor,
        steps: int = DEFAULT_STEPS,
        restarts: int = DEFAULT_RESTARTS,
        seed: int = 0,
        class_: Union[int, str, None] = None,
        lr: float = DEFAULT_LR,
        prior_weight: float = DEFAULT_PRIOR,
        window: int = DEFAULT_WINDOW,
    ) -> LatentResult:
        """Find the latent of every image whose sample fits its known pixels.

        images: float [N, C, H, W] in [-1, 1] at the model's size; holes: [N, 1, H, W], True = missing.
        All N x K x R latents (K classes when conditional and ``class_`` is None, else 1) are
        optimised together as one batch; the networks are in eval mode, so each latent's path is
        independent of the others (Adam's update is per coordinate).
        """
        c, h, w = self.img_shape
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, h, w):
            raise InpaintError(f"images: expected [N, {c}, {h}, {w}] at the model's size, got {list(images.shape)}")
        if steps < 0 or restarts < 1:
            raise InpaintError(f"steps must be >= 0 and restarts >= 1 (got steps={steps}, restarts={restarts})")
        t0 = time.perf_counter()
        dev = self.device
        n = images.shape[0]
        classes = self._classes(class_)  # [K] or None
        k = 1 if classes is None else len(classes)
        b = n * k * restarts
        y = images.to(dev, torch.float32)
        hole = holes.to(dev).bool()
        wts = contextual_weights(hole, window)  # [N, 1, H, W]
        # latents laid out [N, K, R]: restarts of one image (and class) are contiguous
        z0 = self._initial_latents(n, k * restarts, seed).view(n, k, restarts, -1)
        z = z0.reshape(b, -1).to(dev).requires_grad_(True)
        labels = None if classes is None else classes.view(1, k, 1).expand(n, k, restarts).reshape(b).to(dev)
        target = y.repeat_interleave(k * restarts, 0)  # [B, C, H, W]
        weight = wts.repeat_interleave(k * restarts, 0)  # [B, 1, H, W]
        g = self.generator.module
        opt = torch.optim.Adam([z], lr=lr)
        history: List[torch.Tensor] = []

        def losses(zz: torch.Tensor, need_prior: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x = g(zz) if labels is None else g(zz, labels)  # [B, C, H, W]
            ctx = (weight * (x - target)).abs().flatten(1).sum(1)  # [B]
            if need_prior and self.discriminator is not None and prior_weight > 0:
                logits = self.discriminator(x) if labels is None else self.discriminator(x, labels)  # [B]
                prior = self._prior(logits.float())
            else:
                prior = torch.zeros_like(ctx)
            return x, ctx, prior

        was_training = g.training
        g.eval()
        g.requires_grad_(False)
        try:
            for _ in range(steps):
                _, ctx, prior = losses(z, True)
                history.append(ctx.detach().view(n, k * restarts).min(1).values.cpu())
                opt.zero_grad(set_to_none=True)
                (ctx + prior_weight * prior).sum().backward()
                opt.step()
            with torch.no_grad():
                x, ctx, prior = losses(z, True)
        finally:
            g.train(was_training)
        ctx_nr = ctx.view(n, k * restarts)
        history.append(ctx_nr.min(1).values.cpu())
        best = ctx_nr.argmin(1)  # [N]
        flat = torch.arange(n, device=best.device) * (k * restarts) + best
        return LatentResult(
            fill=x[flat].detach().float().cpu(),
            z=z.detach()[flat].cpu(),
            labels=None if labels is None else labels[flat].cpu(),
            context_loss=ctx[flat].cpu(),
            prior_loss=prior.view(-1)[flat].cpu(),
            restart_losses=ctx_nr.cpu(),
            history=torch.stack(history),
            seconds=time.perf_counter() - t0,
        )

    def _classes(self, class_: Union[int, str, None]) -> Optional[torch.Tensor]:
        if not self.num_classes:
            if class_ is not None:
                raise InpaintError(f"class {class_!r}: this GAN run is unconditional; it takes no class "
                                   "(leave the class out)")
            return None
        if class_ is None:
            return torch.arange(self.num_classes)
        try:
            return torch.tensor([self.generator.class_index(class_)])
        except ValueError as e:
            raise InpaintError(str(e)) from None

    def fill(self, images: torch.Tensor, holes: torch.Tensor, **options: Any) -> Tuple[torch.Tensor, Dict[str, Any]]:
        """uint8 [N, C, H, W] at the model's size, holes [N, 1, H, W] -> (fill float [N, C, H, W]
        in [0, 255], details). ``options`` go to :meth:`optimise`."""
        res = self.optimise(images.float() / 127.5 - 1.0, holes, **options)
        info: Dict[str, Any] = {
            "context_loss": res.context_loss.tolist(),
            "prior_loss": res.prior_loss.tolist(),
            "history": res.history,
            "seconds": res.seconds,
        }
        if res.labels is not None:
            info["class"] = [self.generator.class_names[int(v)] for v in res.labels]
        return (res.fill.clamp(-1, 1) + 1.0) * 127.5, info


# =============================================================================================
# Method 2: a trained completion network (ganforge train task=inpaint)
# =============================================================================================


class NetworkInpainter:
    """Adapter around ``ganforge.models.inpaint.load_inpainter(run)``: its ``complete(uint8 images,
    masks 1=missing) -> uint8`` gives the fill."""

    kind = "network"

    def __init__(self, handle):
        self.handle = handle
        self.img_shape: Tuple[int, int, int] = tuple(handle.img_shape)
        self.config = getattr(handle, "config", None)
        self.checkpoint_path = getattr(handle, "checkpoint_path", None)
        self.num_classes = 0

    @classmethod
    def from_run(cls, run: Union[str, Path], checkpoint: str = "last", device: str = "cpu") -> "NetworkInpainter":
        try:
            from ganforge.models.inpaint import load_inpainter
        except ImportError as e:
            raise InpaintError(
                f"'{run}' is a completion-network run (task=inpaint), but this installation of ganforge has no "
                f"completion network module (ganforge.models.inpaint: {e}); use a GAN run with method=latent"
            ) from None
        return cls(load_inpainter(run, checkpoint=checkpoint, device=device))

    @torch.no_grad()
    def fill(self, images: torch.Tensor, holes: torch.Tensor, **options: Any) -> Tuple[torch.Tensor, Dict[str, Any]]:
        """uint8 [N, C, H, W], holes [N, 1, H, W] -> (fill float [N, C, H, W] in [0, 255], details)."""
        t0 = time.perf_counter()
        out = self.handle.complete(images.to(torch.uint8), holes.to(torch.uint8))
        return out.float().cpu(), {"seconds": time.perf_counter() - t0}


Completer = Union[LatentInpainter, NetworkInpainter]


def _run_task(path: Path) -> str:
    """``task`` of a run folder (config.yaml) or checkpoint folder (config.json); 'gan' when absent."""
    import json

    import yaml

    from ganforge.training import checkpoint as ckpt

    if (path / "meta.json").is_file() and (path / "config.json").is_file():
        try:
            return str(json.loads((path / "config.json").read_text()).get("config", {}).get("task", "gan"))
        except (OSError, json.JSONDecodeError) as e:
            raise ckpt.RunError(f"cannot read '{path / 'config.json'}': {e}") from None
    if not path.exists():
        raise ckpt.RunError(f"run folder '{path}' does not exist")
    if not ckpt.is_run_dir(path):
        raise ckpt.RunError(f"'{path}' is not a ganforge run folder (no config.yaml); pass a folder made by "
                            "'ganforge train'")
    try:
        d = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ckpt.RunError(f"cannot read '{path / 'config.yaml'}': {e}") from None
    return str(d.get("task", "gan")) if isinstance(d, dict) else "gan"


def load_completer(
    model: Any,
    method: str = "auto",
    checkpoint: str = "last",
    device: str = "cpu",
) -> Completer:
    """A completer for ``model``: a run folder (or checkpoint folder) path, a GeneratorHandle,
    an inpainter handle (``.complete``), or a completer already made.

    ``method``: ``auto`` (the network for a task=inpaint run, latent optimisation for a GAN run),
    ``latent`` or ``network``; asking for a method the model cannot do is an error.
    """
    if method not in METHODS:
        raise InpaintError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    if isinstance(model, (LatentInpainter, NetworkInpainter)):
        comp: Completer = model
    elif isinstance(model, (str, Path)):
        path = Path(model).expanduser()
        task = _run_task(path)
        run = path
        if (path / "meta.json").is_file():  # a checkpoint folder: it names itself as the checkpoint
            checkpoint = str(path)
        if task == "inpaint":
            if method == "latent":
                raise InpaintError(f"'{path}' is a completion-network run (task=inpaint); latent optimisation needs a "
                                   "GAN run from 'ganforge train' (use method=network or auto)")
            comp = NetworkInpainter.from_run(run, checkpoint=checkpoint, device=device)
        else:
            if method == "network":
                raise InpaintError(f"'{path}' is a GAN run (task={task}); the network method needs a completion "
                                   "network trained with 'ganforge train task=inpaint' (use method=latent or auto)")
            comp = LatentInpainter.from_run(run, checkpoint=checkpoint, device=device)
    elif hasattr(model, "complete") and hasattr(model, "img_shape"):
        comp = NetworkInpainter(model)
    elif hasattr(model, "module") and hasattr(model, "z_dim"):  # a GeneratorHandle
        comp = LatentInpainter.from_generator(model)
    else:
        raise InpaintError(f"model: expected a run folder, a GeneratorHandle or an inpainter handle, "
                           f"got {type(model).__name__}")
    if method != "auto" and comp.kind != method:
        raise InpaintError(f"method {method!r} asked for, but the model is a {comp.kind} completer "
                           f"({'GAN: use method=latent' if comp.kind == 'latent' else 'completion network: use method=network'})")
    return comp


# =============================================================================================
# Batches at the model's size (the benchmark's entry point)
# =============================================================================================


def complete_batch(
    completer: Completer,
    images: torch.Tensor,
    holes: torch.Tensor,
    blend: str = "poisson",
    **options: Any,
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
# Reading images, masks and boxes
# =============================================================================================


def _label(x: Any) -> str:
    return f"'{x}'" if isinstance(x, (str, Path)) else f"the {type(x).__name__}"


def _open_image(src: Union[str, Path], what: str) -> Image.Image:
    path = Path(src).expanduser()
    if not path.exists():
        raise InpaintError(f"{what} file '{path}' does not exist")
    if path.is_dir():
        raise InpaintError(f"{what} '{path}' is a folder; expected an image file")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InpaintError(f"cannot read {what} '{path}': {e}") from None


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
            raise InpaintError(f"image array: expected uint8 values 0..255, got {a.dtype}")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim == 2:
            im = Image.fromarray(a, "L")
        elif a.ndim == 3 and a.shape[2] in (2, 3, 4):
            im = Image.fromarray(a, {2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[2]])
        else:
            raise InpaintError(f"image array: expected H x W or H x W x C with C in 1..4, got shape {list(a.shape)}")
    else:
        raise InpaintError(f"image: expected a file path, a PIL image or a uint8 array, got {type(image).__name__}")
    if im.mode not in MODES:
        raise InpaintError(f"image {_label(image)} has mode {im.mode!r}, which is not supported: convert it to L, LA, "
                           f"RGB or RGBA first (e.g. Image.open(path).convert('RGB'))")
    if im.width < 1 or im.height < 1:
        raise InpaintError(f"image {_label(image)} is empty ({im.width}x{im.height})")
    return im


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
            raise InpaintError(f"mask array: expected H x W (or H x W x C), got shape {list(_to_numpy(mask).shape)}")
        if a.dtype == bool:
            pass
        elif np.issubdtype(a.dtype, np.floating):
            a = a >= 0.5
        elif np.issubdtype(a.dtype, np.integer):
            a = a >= 128 if a.max(initial=0) > 1 else a >= 1
        else:
            raise InpaintError(f"mask array: expected bool, integer or float values, got {a.dtype}")
    else:
        raise InpaintError(f"mask: expected a file path, a PIL image or an array, got {type(mask).__name__}")
    h, w = a.shape
    if (w, h) != tuple(size):
        raise InpaintError(f"the mask {_label(mask)} is {w}x{h} but the image is {size[0]}x{size[1]} (width x height); "
                           "the mask must have the image's size")
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
        raise InpaintError(f"box {box!r}: expected four integers x,y,w,h (left, top, width, height)")
    return vals  # type: ignore[return-value]


def box_mask(box: Union[str, Sequence[int]], size: Tuple[int, int]) -> np.ndarray:
    """bool [H, W] with the box (x, y, w, h) missing; a box not inside the image is an error."""
    x, y, w, h = parse_box(box)
    W, H = size
    if w < 1 or h < 1:
        raise InpaintError(f"box x={x},y={y},w={w},h={h}: width and height must be at least 1")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise InpaintError(f"box x={x},y={y},w={w},h={h} is out of bounds of the {W}x{H} image (width x height): "
                           f"it needs 0 <= x, x + w <= {W}, 0 <= y, y + h <= {H}")
    m = np.zeros((H, W), dtype=bool)
    m[y : y + h, x : x + w] = True
    return m


def _hole_of(mask: Optional[ImageLike], box: Union[str, Sequence[int], None], size: Tuple[int, int]) -> np.ndarray:
    if mask is not None and box is not None:
        raise InpaintError("give either a mask or a box, not both")
    if mask is None and box is None:
        raise InpaintError("nothing to fill: give a mask (white = missing) or a box x,y,w,h")
    hole = box_mask(box, size) if box is not None else load_mask(mask, size)  # type: ignore[arg-type]
    if not hole.any():
        raise InpaintError(f"the mask {_label(mask)} marks no pixel as missing (white = missing): nothing to fill")
    if hole.all():
        raise InpaintError(f"the mask {_label(mask) if mask is not None else 'box'} marks every pixel as missing: "
                           "there is nothing known to complete from; leave part of the image known")
    return hole


def _split(im: Image.Image) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """PIL image -> (colour/grey uint8 [H, W, C] with C in {1, 3}, alpha [H, W] or None)."""
    a = np.asarray(im)
    if im.mode == "L":
        return a[..., None].copy(), None
    if im.mode == "LA":
        return a[..., :1].copy(), a[..., 1].copy()
    if im.mode == "RGB":
        return a.copy(), None
    return a[..., :3].copy(), a[..., 3].copy()


def _join(base: np.ndarray, alpha: Optional[np.ndarray], mode: str) -> Image.Image:
    if mode in ("L", "LA"):
        base = base[..., :1]
    elif base.shape[2] == 1:  # a grey completion of an image stored as RGB with equal channels
        base = np.repeat(base, 3, axis=2)
    arr = base if alpha is None else np.concatenate([base, alpha[..., None]], axis=2)
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode)


def _match_channels(base: np.ndarray, model_c: int, mode: str, label: str) -> np.ndarray:
    """The image's pixels with the model's channel count, or a clear error when that would lose data."""
    c = base.shape[2]
    if c == model_c:
        return base
    if model_c == 1 and c == 3:
        if np.array_equal(base[..., 0], base[..., 1]) and np.array_equal(base[..., 0], base[..., 2]):
            return base[..., :1]  # grey stored as RGB: converting is lossless
        raise InpaintError(f"the model works on 1-channel (grayscale) images but the image {label} is a colour "
                           f"({mode}) image; convert it to grayscale first (PIL: image.convert('L')) or use a model "
                           "trained on colour images (data.channels=3)")
    raise InpaintError(f"the model works on {model_c}-channel (colour) images but the image {label} is grayscale "
                       f"({mode}); convert it to RGB first (PIL: image.convert('RGB'); the completion is then in "
                       "colour) or use a model trained on grayscale images (data.channels=1)")


def _resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking): float [N, C, H, W] -> [N, C, *size]."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


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


def inpaint_detailed(
    model: Any,
    image: ImageLike,
    mask: Optional[ImageLike] = None,
    box: Union[str, Sequence[int], None] = None,
    method: str = "auto",
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    seed: int = 0,
    class_: Union[int, str, None] = None,
    blend: str = "poisson",
    compare: Union[str, Path, None] = None,
    *,
    original: Union[bool, None, ImageLike] = None,
    checkpoint: str = "last",
    device: str = "cpu",
    lr: float = DEFAULT_LR,
    prior_weight: float = DEFAULT_PRIOR,
    window: int = DEFAULT_WINDOW,
) -> InpaintResult:
    """:func:`inpaint`, returning an :class:`InpaintResult` (the image plus how it was made)."""
    t0 = time.perf_counter()
    if blend not in BLENDS:
        raise InpaintError(f"blend {blend!r}: choose one of {', '.join(BLENDS)}")
    comp = load_completer(model, method, checkpoint=checkpoint, device=device)
    if comp.kind == "network" and class_ is not None:
        raise InpaintError("a class applies to conditional GAN runs (latent method); the completion network takes none")
    im = load_image(image)
    label = _label(image)
    hole = _hole_of(mask, box, im.size)
    base, alpha = _split(im)
    c, mh, mw = comp.img_shape
    px = _match_channels(base, c, im.mode, label)  # [H, W, c]
    H, W = hole.shape
    full = torch.from_numpy(px).permute(2, 0, 1)[None].float()  # [1, c, H, W] 0..255
    hole_t = torch.from_numpy(hole)[None, None]  # [1, 1, H, W]
    small = _resize(full, (mh, mw)).round().clamp(0, 255).to(torch.uint8)  # [1, c, mh, mw]
    # a model pixel is missing when any part of its footprint lies in the hole
    small_hole = _resize(hole_t.float(), (mh, mw)) > 1e-4  # [1, 1, mh, mw]
    if bool(small_hole.all()):
        raise InpaintError(f"at the model's size {mw}x{mh} the hole covers every pixel (the image is {W}x{H}): nothing "
                           "known is left to complete from; use a smaller mask")
    opts: Dict[str, Any] = {}
    if comp.kind == "latent":
        opts = dict(steps=steps, restarts=restarts, seed=seed, class_=class_, lr=lr, prior_weight=prior_weight,
                    window=window)
    fill_small, details = comp.fill(small, small_hole, **opts)  # float [1, c, mh, mw] 0..255
    resized = (mh, mw) != (H, W)
    if resized:
        fill = F.interpolate(fill_small, size=(H, W), mode="bicubic", align_corners=False).clamp(0, 255)
    else:
        fill = fill_small
    out = blend_fill(fill, full, hole_t, blend).round().clamp(0, 255).to(torch.uint8)  # [1, c, H, W]
    out_np = out[0].permute(1, 2, 0).numpy()
    out_np = np.where(hole[..., None], out_np, px)  # known pixels: exactly the input's
    result_img = _join(out_np, alpha, im.mode)
    res = InpaintResult(image=result_img, method=comp.kind, blend=blend, model_size=(mh, mw), resized=resized,
                        hole_fraction=float(hole.mean()), seconds=0.0, details=details)
    if compare is not None:
        orig = _original_for_compare(original, im, hole)
        res.compare_path = Path(compare)
        save_image(compare_image(im, hole, result_img, orig), res.compare_path)
    res.seconds = time.perf_counter() - t0
    return res


def inpaint(
    model: Any,
    image: ImageLike,
    mask: Optional[ImageLike] = None,
    box: Union[str, Sequence[int], None] = None,
    method: str = "auto",
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    seed: int = 0,
    class_: Union[int, str, None] = None,
    blend: str = "poisson",
    compare: Union[str, Path, None] = None,
    **kwargs: Any,
) -> Image.Image:
    """Fill the missing region of ``image`` and return the completed image (PIL, same size and mode).

    model    a run folder from ``ganforge train`` (a GAN run or a ``task=inpaint`` run), a checkpoint
             folder, a :class:`ganforge.api.GeneratorHandle`, or an inpainter handle.
    image    a path, a PIL image or a uint8 array (H x W, H x W x 3, H x W x 4 ...); L, LA, RGB, RGBA.
    mask     a path, PIL image or array of the image's size, white (or True) = missing; or
    box      (x, y, w, h): the rectangle to fill.
    method   ``auto`` (the network for a task=inpaint run, latent optimisation for a GAN run),
             ``latent`` (Yeh et al. 2017) or ``network``.
    steps, restarts, seed, class_
             latent optimisation: Adam steps, restarts optimised together, the seed of their
             starting points, the class of a conditional run (None: every class is tried).
    blend    ``poisson`` (default), ``feather`` or ``none``: how the fill meets the known pixels.
    compare  a path: also write masked input | completion | original (when known) side by side.

    Keyword-only extras: ``original`` (None: the input shows in the comparison when it still
    holds pixels under the hole; True/False; or the original image itself), ``checkpoint``
    (``last``, ``best``, a step), ``device``, ``lr``, ``prior_weight`` (lambda), ``window``.
    Raises :class:`InpaintError` for unusable inputs, ``RunError`` for an unusable run folder.
    """
    return inpaint_detailed(model, image, mask, box, method, steps, restarts, seed, class_, blend, compare,
                            **kwargs).image


# =============================================================================================
# The comparison picture
# =============================================================================================


def _original_for_compare(original: Union[bool, None, ImageLike], im: Image.Image, hole: np.ndarray) -> Optional[Image.Image]:
    """The original to show, or None. Auto: the input itself when its pixels under the hole are not
    all one colour (it still holds the original there rather than a painted-over hole)."""
    if original is False:
        return None
    if original is True:
        return im
    if original is None:
        base, _ = _split(im)
        inside = base[hole]  # [n, C]
        return im if inside.size and bool((inside != inside[:1]).any()) else None
    orig = load_image(original)
    if orig.size != im.size:
        raise InpaintError(f"the original is {orig.width}x{orig.height} but the image is {im.width}x{im.height}")
    return orig


def compare_layout(width: int, height: int, panels: int) -> Dict[str, int]:
    """Geometry of the comparison picture: each panel is the image scaled by an integer ``scale``
    (small images are enlarged to at least 128 px), ``gap`` pixels between panels and a
    ``label`` strip on top."""
    scale = max(1, min(8, math.ceil(128 / max(width, height))))
    gap, label = 4, 14
    return {"scale": scale, "gap": gap, "label": label, "panel_w": width * scale, "panel_h": height * scale,
            "width": panels * width * scale + (panels - 1) * gap, "height": height * scale + label}


def compare_image(im: Image.Image, hole: np.ndarray, completed: Image.Image,
                  original: Optional[Image.Image] = None) -> Image.Image:
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


def save_image(img: Image.Image, path: Union[str, Path]) -> Path:
    """Write ``img`` (PNG unless the suffix says otherwise), creating the folder."""
    path = Path(path).expanduser()
    if path.exists() and path.is_dir():
        raise InpaintError(f"output '{path}' is a folder; expected an image file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        img.save(path, format=None if path.suffix else "PNG")
    except (OSError, ValueError, KeyError) as e:
        raise InpaintError(f"cannot write '{path}': {e}") from None
    return path


# =============================================================================================
# Folders
# =============================================================================================


def _images_in(folder: Path, what: str) -> List[Path]:
    if not folder.exists():
        raise InpaintError(f"{what} folder '{folder}' does not exist")
    if not folder.is_dir():
        raise InpaintError(f"{what} '{folder}' is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _image_size(path: Path, what: str) -> Tuple[int, int]:
    """(width, height) from the file's header, or a clear error for a file that is not an image."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InpaintError(f"cannot read {what} '{path}': {e}") from None


def match_masks(image_dir: Union[str, Path], mask_dir: Union[str, Path]) -> List[Tuple[Path, Path]]:
    """Pair every image of ``image_dir`` with the mask of the same file name (stem) in ``mask_dir``.

    Images without a mask, or stems with two masks, are an error that lists them.
    """
    images = _images_in(Path(image_dir).expanduser(), "image")
    if not images:
        raise InpaintError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{image_dir}'")
    masks: Dict[str, Path] = {}
    dupes: List[str] = []
    for m in _images_in(Path(mask_dir).expanduser(), "mask"):
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
        raise InpaintError(f"{len(missing)} of {len(images)} image(s) in '{image_dir}' have no mask in '{mask_dir}' "
                           f"(masks are matched by file name without extension): {shown}")
    return [(p, masks[p.stem]) for p in images]


def inpaint_folder(
    model: Any,
    image_dir: Union[str, Path],
    mask_dir: Union[str, Path, None],
    out_dir: Union[str, Path],
    compare_dir: Union[str, Path, None] = None,
    *,
    box: Union[str, Sequence[int], None] = None,
    method: str = "auto",
    checkpoint: str = "last",
    device: str = "cpu",
    progress=None,
    **options: Any,
) -> List[InpaintResult]:
    """Complete every image of ``image_dir`` with its mask from ``mask_dir`` (same file name, any
    image extension), or with one ``box`` for all; write ``out_dir/<name>.png`` (PNG, so the known
    pixels stay exact) and, with ``compare_dir``, the side-by-side pictures there.

    Everything is checked (masks present, sizes equal) before the first image is completed;
    the model is loaded once. ``progress(i, n, result)`` is called after each image.
    ``options`` go to :func:`inpaint_detailed` (steps, restarts, seed, class_, blend, ...).
    """
    image_dir, out_dir = Path(image_dir).expanduser(), Path(out_dir).expanduser()
    if mask_dir is not None and box is not None:
        raise InpaintError("give either a mask folder or a box, not both")
    if mask_dir is None and box is None:
        raise InpaintError("folder mode needs a mask folder (masks named like the images) or a box x,y,w,h")
    if mask_dir is not None:
        pairs: List[Tuple[Path, Optional[Path]]] = list(match_masks(image_dir, mask_dir))
    else:
        imgs = _images_in(image_dir, "image")
        if not imgs:
            raise InpaintError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in '{image_dir}'")
        pairs = [(p, None) for p in imgs]
    if out_dir.exists() and out_dir.resolve() == image_dir.resolve():
        raise InpaintError(f"the output folder is the image folder '{image_dir}': choose another so inputs are kept")
    for img_p, mask_p in pairs:  # cheap checks first: sizes (PIL reads the header only) and boxes
        size = _image_size(img_p, "image")
        if mask_p is not None:
            msize = _image_size(mask_p, "mask")
            if msize != size:
                raise InpaintError(f"the mask '{mask_p}' is {msize[0]}x{msize[1]} but the image '{img_p}' is "
                                   f"{size[0]}x{size[1]} (width x height)")
        else:
            box_mask(box, size)  # type: ignore[arg-type]
    comp = load_completer(model, method, checkpoint=checkpoint, device=device)
    results = []
    for i, (img_p, mask_p) in enumerate(pairs):
        cmp_path = Path(compare_dir).expanduser() / f"{img_p.stem}.png" if compare_dir is not None else None
        res = inpaint_detailed(comp, img_p, mask=mask_p, box=box, compare=cmp_path, **options)
        res.path = save_image(res.image, out_dir / f"{img_p.stem}.png")
        results.append(res)
        if progress is not None:
            progress(i, len(pairs), res)
    return results
