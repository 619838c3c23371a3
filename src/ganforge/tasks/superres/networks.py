"""Super-resolution networks: an SRResNet generator (or its RRDB variant) and a U-Net discriminator.

Images are float ``[N, C, H, W]`` in [-1, 1], any channel count. A generator maps ``[N, C, h, w]`` to
``[N, C, s*h, s*w]`` for its ``scale`` s (2, 4 or 8) and is fully convolutional, so one trained on small
crops upscales an image of any size (:func:`tiled_upscale` bounds the memory). ``SR_MODELS`` maps
``superres.arch`` to a generator class; :func:`build_superres` builds (G, D).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.nn.layers import ModelBuildError, maybe_sn
from ganforge.registry import Registry

SCALES = (2, 4, 8)
UPSAMPLERS = ("progressive", "direct")  # SRGenerator(upsampler=...): 2x pixel-shuffle stages, or one s x shuffle
MAX_D_LEVELS = 3  # 2x downsamplings of the U-Net discriminator (Real-ESRGAN uses 3)
MIN_D_SIDE = 4  # its coarsest map keeps at least this many pixels on the shorter side


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


# ------------------------------------------------------------------------------------------
# body blocks


class ResidualBlock(nn.Module):
    """EDSR block: x + res_scale * conv(relu(conv(x))); no BatchNorm. Radius 2 pixels."""

    radius = 2

    def __init__(self, width: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = conv3x3(width, width)
        self.conv2 = conv3x3(width, width)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))  # [N, width, h, w]


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions (ESRGAN): each sees the input and every earlier output."""

    def __init__(self, width: int, growth: int):
        super().__init__()
        self.convs = nn.ModuleList(conv3x3(width + i * growth, growth if i < 4 else width) for i in range(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]  # [N, width, h, w], then [N, growth, h, w] each
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(F.leaky_relu(out, 0.2))
        return x + 0.2 * out  # [N, width, h, w]


class RRDB(nn.Module):
    """Residual-in-Residual Dense Block: three dense blocks inside a residual scaled by 0.2. Radius 15."""

    radius = 15

    def __init__(self, width: int, growth: int = 32):
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualDenseBlock(width, growth) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)  # [N, width, h, w]


# ------------------------------------------------------------------------------------------
# the generator


def icnr_(weight: torch.Tensor, upscale: int = 2) -> None:
    """ICNR init (Aitken et al. 2017) of a conv weight [r^2 * c, cin, k, k] followed by PixelShuffle(r):
    the r^2 sub-pixel filters of each output channel start equal, so the first shuffle is a
    nearest-neighbour upsampling of a learned convolution (no checkerboard at the start)."""
    out_c = weight.shape[0] // upscale**2
    sub = torch.empty(out_c, *weight.shape[1:])
    nn.init.kaiming_normal_(sub, a=0.2)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(upscale**2, dim=0) * 0.1)


class SRGenerator(nn.Module):
    """SRResNet / RRDB generator. ``[N, C, h, w]`` in [-1, 1] -> ``[N, C, s*h, s*w]``.

    SRResNet (Ledig et al. 2017) with EDSR's changes (Lim et al. 2017: no BatchNorm, scaled residuals), or
    ESRGAN's RRDBs in the body (Wang et al. 2018). Upsampling is log2(s) 2x pixel shuffles (Shi et al. 2016)
    initialised with ICNR, the last one straight to the image's channels, so no convolution runs at the
    output resolution; the network predicts a correction to the bicubic upscaling (global residual, VDSR).

    ``channels``: image channels (1 grey, 3 colour, any count); ``scale``: 2, 4 or 8; ``width``: feature
    channels; ``blocks``: residual blocks (``body="resblock"``) or RRDBs (``body="rrdb"``);
    ``growth``: the RRDB's dense growth channels; ``res_scale``: residual scaling of the EDSR blocks.
    """

    def __init__(
        self,
        channels: int = 3,
        scale: int = 4,
        width: int = 64,
        blocks: int = 16,
        body: str = "resblock",
        growth: int = 32,
        res_scale: float = 1.0,
        upsampler: str = "progressive",
    ):
        super().__init__()
        if scale not in SCALES:
            raise ModelBuildError(f"scale {scale}: the generator upscales by one of {', '.join(map(str, SCALES))}")
        if channels < 1 or width < 1 or blocks < 1:
            raise ModelBuildError(f"channels, width and blocks must be positive (got {channels}, {width}, {blocks})")
        if body not in ("resblock", "rrdb"):
            raise ModelBuildError(f"body {body!r}: choose resblock or rrdb")
        if upsampler not in UPSAMPLERS:
            raise ModelBuildError(f"upsampler {upsampler!r}: choose one of {', '.join(UPSAMPLERS)}")
        self.channels, self.scale, self.width, self.body_kind = channels, scale, width, body
        self.head = conv3x3(channels, width)
        block: Callable[[], nn.Module] = (
            (lambda: ResidualBlock(width, res_scale)) if body == "resblock" else (lambda: RRDB(width, growth))
        )
        self.body = nn.Sequential(*(block() for _ in range(blocks)))
        self.body_conv = conv3x3(width, width)
        stages = int(math.log2(scale))
        ups: List[nn.Module] = []
        if upsampler == "direct":  # one conv at 1x straight to s*s*C channels, one s x shuffle
            stages = 1
            ups += [conv3x3(width, scale * scale * channels), nn.PixelShuffle(scale)]
        else:
            for _ in range(stages - 1):  # every stage but the last: width -> 4 width -> shuffle -> width at 2x
                ups += [conv3x3(width, 4 * width), nn.PixelShuffle(2), nn.LeakyReLU(0.2)]
            ups += [conv3x3(width, 4 * channels), nn.PixelShuffle(2)]  # the last stage: straight to the image
        self.upsample = nn.Sequential(*ups)
        for m in self.upsample:
            if isinstance(m, nn.Conv2d):
                icnr_(m.weight, scale if upsampler == "direct" else 2)
                nn.init.zeros_(m.bias)
        # radius of the receptive field in input pixels: head, body, body conv at 1x; each up-stage
        # conv is one pixel at its own resolution; the bicubic base looks 2 input pixels out
        body_r = sum(getattr(b, "radius") for b in self.body)
        ups_r = sum(1 / 2**k for k in range(stages))
        self.receptive_radius = int(math.ceil(1 + body_r + 1 + ups_r))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SRGenerator: expected images [N, {self.channels}, h, w], got {tuple(x.shape)}")
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)  # [N, C, sh, sw]
        f = self.head(x)  # [N, width, h, w]
        f = f + self.body_conv(self.body(f))  # [N, width, h, w] (long skip, as in SRResNet)
        return base + self.upsample(f)  # [N, C, s*h, s*w]: the bicubic upscaling plus a learned correction


# ------------------------------------------------------------------------------------------
# the discriminator


def d_levels(h: int, w: int) -> int:
    """2x downsamplings of the U-Net discriminator for ``h x w`` crops: halve while the shorter side
    stays >= 4, at most 3 times (28 -> 2, 32 -> 3, 96 -> 3)."""
    levels = 0
    while levels < MAX_D_LEVELS and min(h, w) // 2 >= MIN_D_SIDE:
        h, w, levels = h // 2, w // 2, levels + 1
    return levels


class UNetDiscriminator(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral norm: ``[N, C, H, W]`` -> per-pixel logits ``[N, 1, H, W]``.

    conv 3x3 -> ``levels`` x (SN conv 4x4 stride 2, LeakyReLU 0.2; widths w, 2w, 4w, 8w) -> the same
    number of (bilinear 2x up to the skip's size, SN conv 3x3, + skip) -> two SN convs 3x3 -> conv 3x3
    to one channel. ``levels`` adapts to the crop size (:func:`d_levels`); any size works, odd ones too.
    Per-pixel logits tell the generator where its output looks fake (Wang et al. 2021); the decoder's
    feature maps are the default feature loss (feature matching, pix2pixHD).
    """

    def __init__(self, channels: int, width: int = 64, levels: int = MAX_D_LEVELS):
        super().__init__()
        self.channels, self.levels = channels, levels
        widths = [width * 2**i for i in range(levels + 1)]  # [w, 2w, 4w, 8w]
        self.conv0 = nn.Conv2d(channels, width, 3, 1, 1)
        self.down = nn.ModuleList(
            maybe_sn(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=False), "spectral") for i in range(levels)
        )
        self.up = nn.ModuleList(
            maybe_sn(nn.Conv2d(widths[i + 1], widths[i], 3, 1, 1, bias=False), "spectral")
            for i in reversed(range(levels))
        )
        self.conv_a = maybe_sn(nn.Conv2d(width, width, 3, 1, 1, bias=False), "spectral")
        self.conv_b = maybe_sn(nn.Conv2d(width, width, 3, 1, 1, bias=False), "spectral")
        self.conv_out = nn.Conv2d(width, 1, 3, 1, 1)

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """The encoder's blocks, image side first (what ``--freeze-d K`` freezes): conv0, then each downsampling
        conv."""
        mods = [("conv0", self.conv0)] + [(f"down.{i}", m) for i, m in enumerate(self.down)]
        return [(f"{name} {type(m).__name__}", [f"{name}.{p}" for p, _ in m.named_parameters()]) for name, m in mods]

    def forward(self, x: torch.Tensor, features: bool = False):
        """Logits ``[N, 1, H, W]``; with ``features=True`` also the decoder's feature maps (a list)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"UNetDiscriminator: expected images [N, {self.channels}, H, W], got {tuple(x.shape)}")
        h = F.leaky_relu(self.conv0(x), 0.2)  # [N, w, H, W]
        skips = [h]
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.2)  # [N, 2^(i+1) w, H / 2^(i+1), W / 2^(i+1)]
            skips.append(h)
        feats = []
        for conv, skip in zip(self.up, reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = F.leaky_relu(conv(h), 0.2) + skip  # [N, width of the skip, size of the skip]
            feats.append(h)
        h = F.leaky_relu(self.conv_a(h), 0.2)  # [N, w, H, W]
        h = F.leaky_relu(self.conv_b(h), 0.2)
        feats.append(h)
        logits = self.conv_out(h)  # [N, 1, H, W]
        return (logits, feats) if features else logits


# ------------------------------------------------------------------------------------------
# tiled inference


def tile_starts(size: int, tile: int) -> List[int]:
    """Start offsets of tiles of ``tile`` pixels that cover ``size`` pixels (the last one flush with the end)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile))
    return starts + [size - tile]


def tiles(h: int, w: int, tile: int) -> Iterator[Tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of the output-owning tiles of an ``h x w`` input (input pixels)."""
    for y in tile_starts(h, tile):
        for x in tile_starts(w, tile):
            yield y, min(y + tile, h), x, min(x + tile, w)


@torch.no_grad()
def tiled_upscale(net: nn.Module, x: torch.Tensor, scale: int, tile: Optional[int], overlap: int) -> torch.Tensor:
    """``net(x)`` computed tile by tile: ``x`` [N, C, h, w] -> [N, C, s*h, s*w].

    Each tile of ``tile x tile`` input pixels is run with ``overlap`` pixels of context on every side
    (fewer at the image's edges, where the image ends anyway) and only its own part of the output is
    kept. With ``overlap >= net.receptive_radius`` every kept output pixel sees exactly what it sees
    in the whole image, so the tiled result equals ``net(x)``; a smaller overlap saves time at the
    price of differences near the seams. ``tile=None`` runs the whole image at once.
    """
    n, c, h, w = x.shape
    if tile is None or (h <= tile and w <= tile):
        return net(x)
    out = torch.empty(n, c, h * scale, w * scale, dtype=x.dtype, device=x.device)
    for y0, y1, x0, x1 in tiles(h, w, tile):
        cy0, cy1 = max(0, y0 - overlap), min(h, y1 + overlap)  # the tile with its context
        cx0, cx1 = max(0, x0 - overlap), min(w, x1 + overlap)
        part = net(x[:, :, cy0:cy1, cx0:cx1])  # [N, C, s*(cy1-cy0), s*(cx1-cx0)]
        oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
        out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = part[
            :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
        ]
    return out


# ------------------------------------------------------------------------------------------
# registry and builders

SR_MODELS: Registry[Callable[..., SRGenerator]] = Registry("super-resolution network")


@SR_MODELS.register("srresnet")
def build_srresnet(
    channels: int, scale: int, width: int = 64, blocks: int = 16, growth: int = 32, upsampler: str = "progressive"
) -> SRGenerator:
    return SRGenerator(channels, scale, width, blocks, body="resblock", upsampler=upsampler)


@SR_MODELS.register("rrdb")
def build_rrdb(
    channels: int, scale: int, width: int = 64, blocks: int = 16, growth: int = 32, upsampler: str = "progressive"
) -> SRGenerator:
    return SRGenerator(channels, scale, width, blocks, body="rrdb", growth=growth, upsampler=upsampler)


def build_superres(
    arch: str,
    channels: int,
    scale: int,
    width: int,
    blocks: int,
    growth: int,
    d_width: int,
    hr_size: Sequence[int],
    upsampler: str = "progressive",
) -> Tuple[SRGenerator, UNetDiscriminator]:
    """(generator, discriminator) for ``arch`` (``srresnet`` | ``rrdb``); D sized for ``hr_size`` (H, W) crops."""
    if arch not in SR_MODELS:
        raise ModelBuildError(f"arch {arch!r}: choose one of {', '.join(SR_MODELS.names())}")
    g = SR_MODELS.get(arch)(channels, scale, width, blocks, growth, upsampler)
    d = UNetDiscriminator(channels, d_width, d_levels(*hr_size))
    return g, d
