"""Image completion networks: a U-Net that fills the hole, and a PatchGAN that judges it.

Masks are float ``[N, 1, H, W]`` with **1 = missing**. A completion network takes the masked
image ``x * (1 - mask)`` in [-1, 1] and the mask, and predicts the whole image in [-1, 1];
:meth:`Inpainter.complete` keeps the known pixels exactly and takes the prediction only in
the hole.

- :class:`GatedUNet`: gated convolutions (Yu et al. 2019, "Free-Form Image Inpainting with
  Gated Convolution", DeepFill v2): every layer computes features and a soft gate,
  ``act(conv_f(x)) * sigmoid(conv_g(x))``, so the network learns where to trust its input
  (here with a per-pixel feature normalisation, see :class:`GatedConv2d`). Input: masked
  image and mask, C + 1 channels.
- :class:`PartialUNet`: partial convolutions (Liu et al. 2018, "Image Inpainting for
  Irregular Holes Using Partial Convolutions"): each convolution sees only valid pixels,
  rescaled by the fraction of its window that is valid, and passes on an updated validity
  mask (valid where any input in the window was). Input: the masked image (C channels) whose
  validity is ``1 - mask``; the decoder joins the skip features with their own masks.
- :class:`PatchDiscriminator`: the PatchGAN of pix2pix (Isola et al. 2017) with spectral
  normalisation (Miyato et al. 2018) as in DeepFill v2's SN-PatchGAN; it sees the image and
  the mask and returns a map of logits ``[N, 1, h', w']``, one per overlapping patch.

Both U-Nets work for any height and width divisible by 4 (at least 8): the depth adapts to
the size, halving while both sides are even and the shorter one stays >= 4 after halving,
with at most 4 levels (28x28 -> 2 levels, 32 -> 3, 64 -> 4, 48x64 -> 3). A trained network
also runs on larger images whose sides are multiples of ``2 ** levels``.

``INPAINT_MODELS`` maps ``inpaint.arch`` to a generator builder; :func:`build_inpainter`
builds (G, D) from a :class:`~ganforge.config.Config`; :func:`load_inpainter` rebuilds a
trained network from a run folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.models.layers import ModelBuildError, maybe_sn
from ganforge.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from ganforge.config import Config

MAX_LEVELS = 4  # most 2x downsampling levels of the U-Nets
MIN_SIDE = 4  # the coarsest feature map keeps at least this many pixels on its shorter side
MAX_MULT = 8  # the widest level has at most width * 8 channels


class InpaintSizeError(ModelBuildError):
    """The completion network cannot be built (or run) for the requested image size."""


# ------------------------------------------------------------------------------------------
# size planning


def plan_levels(h: int, w: int, who: str = "the completion network") -> int:
    """Downsampling levels for an ``h x w`` image: halve while both sides are even and the shorter
    side stays >= 4, at most 4 times. Sides must be multiples of 4 and at least 8."""
    if h % 4 or w % 4 or min(h, w) < 8:
        sh, sw = (max(8, 4 * round(s / 4)) for s in (h, w))
        raise InpaintSizeError(
            f"{who} cannot be built for {h}x{w}: height and width must be multiples of 4 and at least 8 "
            f"(e.g. 28, 32, 64, 48x64); set data.size={sh}x{sw}"
        )
    levels = 0
    while levels < MAX_LEVELS and h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= MIN_SIDE:
        h, w, levels = h // 2, w // 2, levels + 1
    return levels


def level_channels(width: int, levels: int) -> List[int]:
    """Channels at each resolution, finest first: width, 2*width, 4*width, ... capped at 8*width."""
    return [width * min(2**i, MAX_MULT) for i in range(levels + 1)]


def _check_inputs(x: torch.Tensor, mask: torch.Tensor, channels: int, levels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{who}: expected images [N, {channels}, H, W], got {tuple(x.shape)}")
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]:
        raise ValueError(f"{who}: expected a mask [N, 1, H, W] matching the images {tuple(x.shape)}, got {tuple(mask.shape)}")
    h, w = x.shape[2:]
    k = 2**levels
    if h % k or w % k:
        raise InpaintSizeError(
            f"{who} was built with {levels} downsampling levels and needs height and width that are multiples "
            f"of {k}; got {h}x{w} (pad or crop to {k * max(1, round(h / k))}x{k * max(1, round(w / k))})"
        )


def init_weights(net: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.2) (He et al. 2015) on every convolution, zero biases (measured: with
    PyTorch's default init the signal shrank ~100x by the bottleneck and the network learnt markedly slower)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if isinstance(m, PartialConv2d):
            nn.init.zeros_(m.bias)


class Inpainter(nn.Module):
    """Base class of the completion networks.

    ``raw(x_masked, mask)`` is the network itself, with a linear (unbounded) last layer; ``forward``
    clamps it to [-1, 1]; ``complete`` keeps the known pixels.

    Why no tanh: tanh reaches -1 and 1 only at infinity and image data sits exactly there (MNIST is
    mostly -1), so an L1 loss pushes tanh's input on without end; measured here, pre-activations
    reached -3e4 within 50 steps and the network went dead (every output -1). The trainer instead
    puts its L1 loss on the clamped output with a straight-through gradient (a pixel that is already
    right gets no gradient, one clamped on the wrong side still gets one) plus a small penalty on
    the raw output leaving [-1, 1]. In 2-minute MNIST runs of the same length (~450 steps) this
    reached a centre-hole L1 of 0.21 and FID 20 where L1 on the raw output reached 0.24 and FID 47.
    """

    img_channels: int
    levels: int

    def raw(self, x_masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """The unbounded prediction [N, C, H, W] (approximately in [-1, 1] once trained)."""
        raise NotImplementedError

    def forward(self, x_masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The prediction of the whole image, [N, C, H, W] in [-1, 1]."""
        return self.raw(x_masked, mask).clamp(-1.0, 1.0)

    def complete(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The completed image ``[N, C, H, W]``: the prediction inside the hole (mask > 0.5), ``x`` elsewhere,
        bit for bit. ``x`` may hold anything in the hole; it is zeroed before the network sees it."""
        hole = mask > 0.5  # [N, 1, H, W]
        m = hole.to(x.dtype)
        out = self(x * (1 - m), m)  # [N, C, H, W] prediction
        return torch.where(hole, out.to(x.dtype), x)


# ------------------------------------------------------------------------------------------
# gated convolutions (Yu et al. 2019)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each pixel's feature vector scaled to unit root-mean-square over the channels (Karras et al. 2018).

    Per pixel, so no statistic mixes the hole with the known pixels (as batch or instance norm would)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


class GatedConv2d(nn.Module):
    """``pixel_norm(LeakyReLU(conv_f(x))) * sigmoid(conv_g(x))``: both convolutions in one, ``2 * out`` channels.

    The pixel norm is ours, not DeepFill v2's: without it, trained at lr 1e-3, single feature values in
    the decoder grew to 1e4 within ~1,500 steps and training collapsed (measured on MNIST); with it each
    pixel's features stay of unit size, and the gate alone decides how much of them passes.
    """

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.cout = cout
        self.conv = nn.Conv2d(cin, 2 * cout, k, stride, padding=dilation * (k - 1) // 2, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.conv(x).split(self.cout, dim=1)  # [N, cout, H', W'] each
        return pixel_norm(F.leaky_relu(f, 0.2)) * torch.sigmoid(g)


class GatedUNet(Inpainter):
    """U-Net of gated convolutions with a dilated bottleneck (DeepFill v2's coarse network, as a U-Net)."""

    def __init__(self, img_shape: Sequence[int], width: int = 32):
        super().__init__()
        c, h, w = img_shape
        self.img_channels, self.width = c, width
        self.levels = L = plan_levels(h, w, "GatedUNet")
        ch = level_channels(width, L)
        self.stem = GatedConv2d(c + 1, ch[0], k=5)  # [N, C+1, H, W] -> [N, ch0, H, W]
        self.down = nn.ModuleList(
            nn.Sequential(GatedConv2d(ch[i], ch[i + 1], 3, stride=2), GatedConv2d(ch[i + 1], ch[i + 1], 3))
            for i in range(L)
        )  # level i+1: [N, ch[i+1], H / 2^(i+1), W / 2^(i+1)]
        side = min(h, w) // 2**L  # shorter side of the coarsest map
        dil = [max(1, min(d, side // 2)) for d in (2, 4)]
        self.mid = nn.Sequential(*(GatedConv2d(ch[L], ch[L], 3, dilation=d) for d in dil))  # receptive field grows
        self.up = nn.ModuleList(GatedConv2d(ch[i + 1] + ch[i], ch[i], 3) for i in range(L))  # up[i]: level i+1 -> i
        self.out = nn.Conv2d(ch[0], c, 3, padding=1)  # [N, ch0, H, W] -> [N, C, H, W]
        init_weights(self)

    def raw(self, x_masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_inputs(x_masked, mask, self.img_channels, self.levels, "GatedUNet")
        h = self.stem(torch.cat([x_masked, mask.to(x_masked.dtype)], dim=1))  # [N, ch0, H, W]
        skips = [h]
        for down in self.down:
            h = down(h)  # [N, ch[i+1], H / 2^(i+1), W / 2^(i+1)]
            skips.append(h)
        h = self.mid(skips.pop())  # [N, chL, H / 2^L, W / 2^L]
        for i in reversed(range(self.levels)):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")  # [N, ch[i+1], H / 2^i, W / 2^i]
            h = self.up[i](torch.cat([h, skips.pop()], dim=1))  # [N, ch[i], H / 2^i, W / 2^i]
        return self.out(h)  # [N, C, H, W], linear


# ------------------------------------------------------------------------------------------
# partial convolutions (Liu et al. 2018)


class PartialConv2d(nn.Module):
    """``W^T (x * m) * (k*k*cin / sum(m)) + b`` where the window has valid pixels, 0 where it has none.

    ``m`` is the validity of the input (1 = valid), ``[N, 1, H, W]`` (the same for every channel)
    or ``[N, cin, H, W]``; returns (features, updated validity ``[N, 1, H', W']``), the new mask
    being 1 wherever the window saw at least one valid pixel.
    """

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.cin, self.k, self.stride, self.pad = cin, k, stride, (k - 1) // 2
        self.conv = nn.Conv2d(cin, cout, k, stride, self.pad, bias=False)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("ones", torch.ones(1, 1, k, k), persistent=False)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            if m.shape[1] == 1:  # valid inputs in each window, over all channels
                count = F.conv2d(m, self.ones, stride=self.stride, padding=self.pad) * self.cin
            else:
                count = F.conv2d(m.sum(1, keepdim=True), self.ones, stride=self.stride, padding=self.pad)
            new_m = (count > 0).to(x.dtype)  # [N, 1, H', W']
            scale = self.k * self.k * self.cin / count.clamp(min=1.0) * new_m  # 0 where nothing was valid
        out = self.conv(x * m) * scale + self.bias.view(1, -1, 1, 1) * new_m  # [N, cout, H', W']
        return out, new_m


class PartialUNet(Inpainter):
    """The U-Net of partial convolutions of Liu et al. 2018, sized like :class:`GatedUNet`.

    Encoder: partial convs (the first 5x5, then 3x3 with stride 2 and 3x3), LeakyReLU. Decoder:
    nearest upsampling of features and masks, joined with the skip features and masks, partial
    3x3 conv; the last level joins the input image itself, as in the paper. Where the paper has
    BatchNorm, every activation here is followed by :func:`pixel_norm` (per pixel, so the hole's
    zeros do not enter any statistic, and training and inference compute the same thing).
    """

    def __init__(self, img_shape: Sequence[int], width: int = 32):
        super().__init__()
        c, h, w = img_shape
        self.img_channels, self.width = c, width
        self.levels = L = plan_levels(h, w, "PartialUNet")
        ch = level_channels(width, L)
        self.stem = PartialConv2d(c, ch[0], 5)  # [N, C, H, W] -> [N, ch0, H, W]
        self.down = nn.ModuleList(
            nn.ModuleList([PartialConv2d(ch[i], ch[i + 1], 3, stride=2), PartialConv2d(ch[i + 1], ch[i + 1], 3)])
            for i in range(L)
        )
        self.up = nn.ModuleList(PartialConv2d(ch[i + 1] + ch[i], ch[i], 3) for i in range(L))  # up[i]: level i+1 -> i
        self.out = PartialConv2d(ch[0] + c, c, 3)  # joined with the input image: [N, ch0 + C, H, W] -> [N, C, H, W]
        init_weights(self)

    def raw(self, x_masked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_inputs(x_masked, mask, self.img_channels, self.levels, "PartialUNet")
        valid = 1.0 - mask.to(x_masked.dtype)  # [N, 1, H, W], 1 = known
        act = lambda t: pixel_norm(F.leaky_relu(t, 0.2))  # noqa: E731  (pixel norm in place of the paper's BatchNorm)
        h, m = self.stem(x_masked, valid)
        h = act(h)  # [N, ch0, H, W]
        skips = [(h, m)]
        for conv_a, conv_b in self.down:
            h, m = conv_a(h, m)
            h, m = conv_b(act(h), m)
            h = act(h)  # [N, ch[i+1], H / 2^(i+1), W / 2^(i+1)]
            skips.append((h, m))
        h, m = skips.pop()
        for i in reversed(range(self.levels)):
            sh, sm = skips.pop()
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")  # [N, ch[i+1], H / 2^i, W / 2^i]
            m = F.interpolate(m, scale_factor=2.0, mode="nearest")
            cm = torch.cat([m.expand(-1, h.shape[1], -1, -1), sm.expand(-1, sh.shape[1], -1, -1)], dim=1)
            h, m = self.up[i](torch.cat([h, sh], dim=1), cm)
            h = act(h)  # [N, ch[i], H / 2^i, W / 2^i]
        cm = torch.cat([m.expand(-1, h.shape[1], -1, -1), valid.expand(-1, self.img_channels, -1, -1)], dim=1)
        out, _ = self.out(torch.cat([h, x_masked], dim=1), cm)
        return out  # [N, C, H, W], linear


# ------------------------------------------------------------------------------------------
# discriminator


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017) with spectral norm (SN-PatchGAN, Yu et al. 2019).

    ``[N, C+1, H, W]`` (image and mask) -> 4x4 stride-2 convs, halving while the shorter side
    stays >= 4 (at most 3 times), LeakyReLU 0.2 -> 3x3 conv -> 3x3 conv to one channel: a logit per
    patch ``[N, 1, H / 2^k, W / 2^k]``. No normalisation layers, so real and fake go in one batch.
    """

    def __init__(self, img_shape: Sequence[int], width: int = 32):
        super().__init__()
        c, h, w = img_shape
        self.img_channels = c
        downs = 0
        while downs < 3 and min(h, w) // 2 >= MIN_SIDE:
            h, w, downs = h // 2, w // 2, downs + 1
        self.downs = downs
        layers: List[nn.Module] = []
        cin = c + 1
        for i in range(downs):
            cout = width * min(2**i, MAX_MULT)
            layers += [maybe_sn(nn.Conv2d(cin, cout, 4, 2, 1), "spectral"), nn.LeakyReLU(0.2)]  # halves H, W
            cin = cout
        cout = width * min(2**downs, MAX_MULT)
        layers += [maybe_sn(nn.Conv2d(cin, cout, 3, 1, 1), "spectral"), nn.LeakyReLU(0.2)]
        layers += [maybe_sn(nn.Conv2d(cout, 1, 3, 1, 1), "spectral")]  # [N, 1, h', w'] logits
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.img_channels:
            raise ValueError(f"PatchDiscriminator: expected images [N, {self.img_channels}, H, W], got {tuple(x.shape)}")
        return self.net(torch.cat([x, mask.to(x.dtype)], dim=1))  # [N, 1, h', w'] logits


# ------------------------------------------------------------------------------------------
# registry and builders

InpainterBuilder = Callable[[Sequence[int], int], Inpainter]
INPAINT_MODELS: Registry[InpainterBuilder] = Registry("completion network")
INPAINT_MODELS.register("gated")(GatedUNet)
INPAINT_MODELS.register("partial")(PartialUNet)


def build_inpainter(cfg: "Config", img_shape: Sequence[int]) -> Tuple[Inpainter, PatchDiscriminator]:
    """(completion network, PatchGAN) for ``cfg.inpaint`` and images of shape (C, H, W)."""
    ip = cfg.inpaint
    try:
        builder = INPAINT_MODELS.get(ip.arch)
    except KeyError as e:
        raise ModelBuildError(f"inpaint.arch: {e.args[0]}") from None
    img_shape = tuple(int(s) for s in img_shape)
    return builder(img_shape, ip.width), PatchDiscriminator(img_shape, ip.d_width)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8 (the same rounding as the trainer's sample grids)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)


class InpainterHandle:
    """A trained completion network with what is needed to use it on uint8 images."""

    def __init__(self, module: Inpainter, model_config: Dict[str, Any], checkpoint_path: Path,
                 run_dir: Optional[Path], meta: Dict[str, Any]):
        from ganforge.config import Config

        self.module = module.eval()
        self.config = Config.from_dict(model_config["config"])
        self.img_shape = tuple(int(s) for s in model_config["img_shape"])
        self.checkpoint_path = Path(checkpoint_path)
        self.run_dir = run_dir
        self.step = int(meta.get("step", 0))
        self.kimg = float(meta.get("kimg", 0.0))
        self.ema = False  # whether the weights are the exponential moving average (set by load_inpainter)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this (``2 ** levels``)."""
        return 2**self.module.levels

    @torch.no_grad()
    def complete(self, image: Union[torch.Tensor, np.ndarray], mask: Union[torch.Tensor, np.ndarray],
                 batch_size: int = 256) -> torch.Tensor:
        """Fill the holes: ``image`` uint8 ``[N, C, H, W]``, ``mask`` ``[N, 1, H, W]`` (or ``[1, 1, H, W]`` for all
        images; bool or float, > 0.5 = missing) -> uint8 ``[N, C, H, W]`` with the known pixels unchanged."""
        image = torch.as_tensor(image)
        mask = torch.as_tensor(mask)
        c = self.img_shape[0]
        if image.dtype != torch.uint8 or image.dim() != 4 or image.shape[1] != c:
            raise ValueError(f"complete: expected uint8 images [N, {c}, H, W], got {image.dtype} {tuple(image.shape)}")
        n, _, h, w = image.shape
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2:] != image.shape[2:] or mask.shape[0] not in (1, n):
            raise ValueError(f"complete: expected a mask [N, 1, H, W] or [1, 1, H, W] for images {tuple(image.shape)}, "
                             f"got {tuple(mask.shape)}")
        k = self.multiple
        if h % k or w % k:
            raise InpaintSizeError(f"complete: this network needs height and width that are multiples of {k}; got {h}x{w}")
        hole = (mask.float() > 0.5).expand(n, 1, h, w)  # [N, 1, H, W] bool
        out = torch.empty_like(image)
        for i in range(0, n, batch_size):
            img = image[i : i + batch_size]
            hb = hole[i : i + batch_size]
            x = img.to(self.device).float().div(127.5).sub(1.0)  # [B, C, H, W] in [-1, 1]
            m = hb.to(self.device).float()
            pred = _to_uint8(self.module(x * (1 - m), m)).cpu()  # [B, C, H, W] uint8
            out[i : i + batch_size] = torch.where(hb, pred, img)  # known pixels copied, bit for bit
        return out

    def __repr__(self) -> str:
        return (f"InpainterHandle({self.config.inpaint.arch}, {'x'.join(map(str, self.img_shape))}, step {self.step}, "
                f"{self.checkpoint_path})")


def load_inpainter(run_dir: Union[str, Path], checkpoint: str = "last",
                   device: Union[str, torch.device] = "cpu", ema: bool = True) -> InpainterHandle:
    """Rebuild the completion network of an inpainting run (``ganforge train task=inpaint``) from its folder.

    ``checkpoint``: ``last``, a step number, or a checkpoint folder path. ``ema``: the exponential
    moving average of the weights (what the run's sample grids show; used when the run kept one,
    ``train.ema_decay > 0``) or the raw trained weights. Raises
    :class:`~ganforge.training.checkpoint.RunError` when the folder is not a run, has no
    checkpoint, or trained something else than a completion network.
    """
    from ganforge.config import Config, ConfigError
    from ganforge.training import checkpoint as ckpt

    folder = ckpt.find_checkpoint(Path(run_dir), checkpoint)
    mc = ckpt.read_json(folder / "config.json")
    meta = ckpt.read_json(folder / "meta.json")
    try:
        cfg = Config.from_dict(mc["config"])
        img_shape = tuple(int(s) for s in mc["img_shape"])
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise ckpt.RunError(f"checkpoint '{folder}' has an unusable config.json: {e}") from None
    run = folder.parent.parent if folder.parent.name == "checkpoints" else None
    where = run if run is not None else folder
    if cfg.task != "inpaint":
        raise ckpt.RunError(f"run '{where}' trained a GAN (task={cfg.task}), not a completion network; "
                            "use --method latent (or train one with 'ganforge train task=inpaint')")
    try:
        g = INPAINT_MODELS.get(cfg.inpaint.arch)(img_shape, cfg.inpaint.width)
    except (KeyError, ModelBuildError) as e:
        raise ckpt.RunError(f"checkpoint '{folder}': cannot rebuild the completion network: {e}") from None
    key = "g_ema" if ema and (folder / ckpt.WEIGHT_FILES["g_ema"]).is_file() else "g"
    try:
        g.load_state_dict(ckpt.load_weights(folder, key))
    except RuntimeError as e:
        raise ckpt.RunError(f"weights in '{folder}' do not match its config.json: {e}") from None
    handle = InpainterHandle(g.to(device), mc, folder, run, meta)
    handle.ema = key == "g_ema"
    return handle
