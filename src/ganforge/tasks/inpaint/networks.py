"""Image completion networks: a U-Net that fills the hole, and a PatchGAN that judges it.

Masks are float ``[N, 1, H, W]`` with **1 = missing**. A completion network (:class:`Inpainter`) takes the
masked image ``x * (1 - mask)`` in [-1, 1] and the mask and predicts the whole image;
:meth:`Inpainter.complete` keeps the known pixels exactly. :class:`GatedUNet` (DeepFill v2's gated
convolutions) and :class:`PartialUNet` (Liu et al. 2018's partial convolutions) work for any sides
divisible by 4 (at least 8), their depth adapting to the size (:func:`plan_levels`: 28x28 -> 2 levels,
32 -> 3, 64 -> 4). ``INPAINT_MODELS`` maps ``inpaint.arch`` to a builder; :func:`build_inpainter` builds (G, D).
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.nn.layers import MAX_MULT, ModelBuildError, maybe_sn, sequential_blocks
from ganforge.registry import Registry

MAX_LEVELS = 4  # most 2x downsampling levels of the U-Nets
MIN_SIDE = 4  # the coarsest feature map keeps at least this many pixels on its shorter side


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
        raise ValueError(
            f"{who}: expected a mask [N, 1, H, W] matching the images {tuple(x.shape)}, got {tuple(mask.shape)}"
        )
    h, w = x.shape[2:]
    k = 2**levels
    if h % k or w % k:
        raise InpaintSizeError(
            f"{who} was built with {levels} downsampling levels and needs height and width that are multiples "
            f"of {k}; got {h}x{w} (pad or crop to {k * max(1, round(h / k))}x{k * max(1, round(w / k))})"
        )


def init_weights(net: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.2) (He et al. 2015) on every convolution, zero biases (with PyTorch's
    default init the signal shrinks by the bottleneck and the network learns slower)."""
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
    mostly -1), so an L1 loss pushes tanh's input on without end and the network goes dead. The trainer
    puts its L1 loss on the clamped output with a straight-through gradient (a pixel clamped on the wrong
    side still gets one) plus a small penalty on the raw output leaving [-1, 1].
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

    The pixel norm is ours, not DeepFill v2's: it keeps each pixel's features of unit size (without it
    decoder features grew until training collapsed), and the gate alone decides how much of them passes.
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

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """The trunk's blocks for ``freeze_d``, image side first (its last layer, the logit, is never frozen)."""
        return sequential_blocks(self.net, "net", drop_last=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.img_channels:
            raise ValueError(
                f"PatchDiscriminator: expected images [N, {self.img_channels}, H, W], got {tuple(x.shape)}"
            )
        return self.net(torch.cat([x, mask.to(x.dtype)], dim=1))  # [N, 1, h', w'] logits


# ------------------------------------------------------------------------------------------
# registry and builders

InpainterBuilder = Callable[[Sequence[int], int], Inpainter]
INPAINT_MODELS: Registry[InpainterBuilder] = Registry("completion network")
INPAINT_MODELS.register("gated")(GatedUNet)
INPAINT_MODELS.register("partial")(PartialUNet)


def build_inpainter(
    arch: str, img_shape: Sequence[int], width: int = 32, d_width: int = 32
) -> Tuple[Inpainter, PatchDiscriminator]:
    """(completion network ``arch``, PatchGAN) for images of shape (C, H, W)."""
    try:
        builder = INPAINT_MODELS.get(arch)
    except KeyError as e:
        raise ModelBuildError(f"inpaint.arch: {e.args[0]}") from None
    img_shape = tuple(int(s) for s in img_shape)
    return builder(img_shape, width), PatchDiscriminator(img_shape, d_width)
