"""Image-to-image translation networks: the pix2pix U-Net, the CycleGAN ResNet generator and the PatchGAN.

Images are in [-1, 1]; the generators map ``[N, C_in, H, W]`` to ``[N, C_out, H, W]`` and are fully
convolutional, so a network trained on crops runs on any image whose sides are multiples of
:attr:`Translator.multiple`. Both take ``upsample``: ``deconv`` (transposed convolutions, as published)
or ``resize`` (nearest-neighbour 2x + 3x3 convolution, Odena et al. 2016: no checkerboard by construction).
``GENERATORS`` maps ``translate.arch`` to a builder; :func:`build` adds ``input_skip`` (output = input +
network: the generator learns the change and keeps the colours its instance norm removes).
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.errors import ModelBuildError
from ganforge.nn.layers import MAX_MULT, maybe_sn, sequential_blocks
from ganforge.registry import Registry

MAX_UNET_LEVELS = 5  # most 2x downsampling levels of the U-Net
MIN_SIDE = 4  # the coarsest map keeps at least this many pixels on its shorter side
UPSAMPLES = ("deconv", "resize")


def up2(c_in: int, c_out: int, upsample: str, kernel: int = 4) -> nn.Module:
    """A 2x upsampling ``[N, c_in, H, W] -> [N, c_out, 2H, 2W]``: a transposed convolution (``deconv``; 4x4
    stride 2 for the U-Net, 3x3 stride 2 for the ResNet generator) or nearest-neighbour 2x + 3x3 convolution
    (``resize``)."""
    if upsample == "deconv":
        if kernel == 4:
            return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
        return nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1)
    if upsample == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1))
    raise ModelBuildError(f"upsample {upsample!r} is not allowed; choose one of {', '.join(UPSAMPLES)}")


class TranslateSizeError(ModelBuildError):
    """The translation network cannot be built (or run) for the requested image size."""


def unet_levels(h: int, w: int) -> int:
    """Downsampling levels of the U-Net for ``h x w`` training images: halve while both sides are even and
    the shorter side stays >= 4, at most 5 times."""
    if min(h, w) < 8:
        raise TranslateSizeError(f"the U-Net cannot be built for {h}x{w}: both sides must be at least 8 pixels")
    levels, sh, sw = 0, h, w
    while levels < MAX_UNET_LEVELS and sh % 2 == 0 and sw % 2 == 0 and min(sh, sw) // 2 >= MIN_SIDE:
        sh, sw, levels = sh // 2, sw // 2, levels + 1
    if levels < 2:
        raise TranslateSizeError(
            f"the U-Net cannot be built for {h}x{w}: it needs at least two halvings that keep "
            "both sides even and >= 4 (e.g. 16, 28, 32, 64, 48x64); set data.size or translate.crop_size"
        )
    return levels


def init_weights(net: nn.Module) -> None:
    """N(0, 0.02) convolution weights and zero biases, as pix2pix and CycleGAN initialise them."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Translator(nn.Module):
    """Base of the generators: ``raw`` (linear output), ``forward`` (clamped to [-1, 1]), size checks.

    No tanh: image data sits exactly at -1 and 1 (MNIST's background), where tanh needs infinite
    pre-activations (as for :class:`ganforge.tasks.inpaint.networks.Inpainter`); the trainer puts its losses
    on the clamped output (:mod:`ganforge.tasks.translate.losses`)."""

    in_channels: int
    out_channels: int
    multiple: int  # height and width must be multiples of this
    input_skip: bool = False  # add the input to the output (the network learns the change)

    def add_input(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out + x`` when :attr:`input_skip` is on (grey input added to every output channel, a colour input
        to a grey output as its channel mean), else ``out``."""
        if not self.input_skip:
            return out
        if x.shape[1] != out.shape[1]:
            x = x.expand(-1, out.shape[1], -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        return out + x

    def raw(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The translation [N, C_out, H, W] in [-1, 1]."""
        return self.raw(x).clamp(-1.0, 1.0)

    def check(self, x: torch.Tensor, who: str) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{who}: expected images [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        h, w = x.shape[2:]
        k = self.multiple
        if h % k or w % k:
            raise TranslateSizeError(
                f"{who} needs height and width that are multiples of {k}; got {h}x{w} "
                f"(pad to {k * -(-h // k)}x{k * -(-w // k)})"
            )


# ------------------------------------------------------------------------------------------
# pix2pix U-Net


class UNetGenerator(Translator):
    """The pix2pix U-Net (Isola et al. 2017), ``levels`` 2x steps deep.

    4x4 stride-2 convolutions down, transposed convolutions up, each decoder level joined with the encoder
    level of its size; instance norm (none at the outermost layers), dropout in the deepest decoder levels.
    :func:`unet_levels` picks the depth: 28x28 -> 2 levels, 64 -> 4, 128 -> 5."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        levels: int,
        width: int = 32,
        dropout: float = 0.5,
        upsample: str = "deconv",
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.levels = in_channels, out_channels, levels
        self.multiple = 2**levels
        ch = [width * min(2**i, MAX_MULT) for i in range(levels)]  # channels after each down step
        self.down = nn.ModuleList()
        cin = in_channels
        for i, c in enumerate(ch):
            layers: List[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(cin, c, 4, 2, 1))  # halves H, W
            if 0 < i < levels - 1:
                layers.append(nn.InstanceNorm2d(c))
            self.down.append(nn.Sequential(*layers))
            cin = c
        self.up = nn.ModuleList()
        for i in reversed(range(levels)):  # up[j] takes level i+1 (joined with its skip when not innermost) to level i
            c_in = ch[i] if i == levels - 1 else 2 * ch[i]
            c_out = out_channels if i == 0 else ch[i - 1]
            layers = [nn.ReLU(), up2(c_in, c_out, upsample)]  # doubles H, W
            if i > 0:
                layers.append(nn.InstanceNorm2d(c_out))
                if dropout > 0 and i >= levels - 2 and levels > 2:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        init_weights(self)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x, "UNetGenerator")
        skips = []
        h = x  # [N, C_in, H, W]
        for down in self.down:
            h = down(h)  # [N, ch[i], H / 2^(i+1), W / 2^(i+1)]
            skips.append(h)
        skips.pop()  # the innermost level has no skip
        for j, up in enumerate(self.up):
            h = up(h)  # [N, ch[i-1] (or C_out), H / 2^i, W / 2^i]
            if skips:
                h = torch.cat([h, skips.pop()], dim=1)  # [N, 2 * ch[i-1], H / 2^i, W / 2^i]
        return self.add_input(x, h)  # [N, C_out, H, W], linear


# ------------------------------------------------------------------------------------------
# CycleGAN ResNet generator


class ResBlock(nn.Module):
    """``x + IN(conv3(ReLU(IN(conv3(x)))))``, reflection padded (Johnson et al. 2016)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(Translator):
    """The CycleGAN generator (Zhu et al. 2017, after Johnson et al. 2016): c7s1-w, d2w, d4w, ``blocks`` x R4w,
    u2w, uw, c7s1-C_out; reflection padding and instance norm. Sides must be multiples of 4."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 32, blocks: int = 6, upsample: str = "deconv"):
        super().__init__()
        self.in_channels, self.out_channels, self.blocks = in_channels, out_channels, blocks
        self.multiple = 4
        w = width
        self.net = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, w, 7),
            nn.InstanceNorm2d(w),
            nn.ReLU(),  # [N, w, H, W]
            nn.Conv2d(w, 2 * w, 3, 2, 1),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(),  # [N, 2w, H/2, W/2]
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1),
            nn.InstanceNorm2d(4 * w),
            nn.ReLU(),  # [N, 4w, H/4, W/4]
            *(ResBlock(4 * w) for _ in range(blocks)),  # [N, 4w, H/4, W/4]
            up2(4 * w, 2 * w, upsample, 3),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(),  # [N, 2w, H/2, W/2]
            up2(2 * w, w, upsample, 3),
            nn.InstanceNorm2d(w),
            nn.ReLU(),  # [N, w, H, W]
            nn.ReflectionPad2d(3),
            nn.Conv2d(w, out_channels, 7),  # [N, C_out, H, W], linear
        )
        init_weights(self)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x, "ResnetGenerator")
        return self.add_input(x, self.net(x))  # [N, C_out, H, W], linear


# ------------------------------------------------------------------------------------------
# PatchGAN


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): ``[N, C, H, W]`` -> logits ``[N, 1, h', w']``, one per overlapping patch;
    ``C`` is the output's channels (CycleGAN) or input + output channels (pix2pix, conditioned on the input).

    4x4 stride-2 convolutions with LeakyReLU 0.2 and instance norm (none on the first), halving while the
    shorter side stays >= 4 (at most 3 times), then two 3x3 convolutions. ``norm="spectral"``: spectral
    normalisation on every convolution instead (Miyato et al. 2018), as in SN-PatchGAN."""

    def __init__(self, in_channels: int, size: Sequence[int], width: int = 32, norm: str = "instance"):
        super().__init__()
        if norm not in ("instance", "spectral", "none"):
            raise ModelBuildError(
                f"PatchDiscriminator: norm {norm!r} is not allowed; choose instance, spectral or none"
            )
        h, w = (int(s) for s in size)
        self.in_channels = in_channels
        downs = 0
        while downs < 3 and min(h, w) // 2 >= MIN_SIDE:
            h, w, downs = h // 2, w // 2, downs + 1
        conv = lambda *a: maybe_sn(nn.Conv2d(*a), norm)  # noqa: E731
        inorm = (lambda c: [nn.InstanceNorm2d(c)]) if norm == "instance" else (lambda c: [])
        layers: List[nn.Module] = []
        cin = in_channels
        for i in range(downs):
            cout = width * min(2**i, MAX_MULT)
            layers.append(conv(cin, cout, 4, 2, 1))  # halves H, W
            if i > 0:
                layers += inorm(cout)
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        cout = width * min(2**downs, MAX_MULT)
        layers += [conv(cin, cout, 3, 1, 1), *inorm(cout), nn.LeakyReLU(0.2)]
        layers.append(conv(cout, 1, 3, 1, 1))  # [N, 1, h', w'] logits
        self.downs = downs
        if norm != "spectral":  # spectral norm divides by the largest singular value: the init scale does not matter
            init_weights(nn.Sequential(*layers))
        self.net = nn.Sequential(*layers)

    def freeze_blocks(self) -> List[Tuple[str, List[str]]]:
        """Blocks image side first (what ``--freeze-d K`` freezes): each conv with the norm and activation
        after it; the last conv (the logits) is never one."""
        return sequential_blocks(self.net, "net", drop_last=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PatchDiscriminator: expected images [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        return self.net(x)


# ------------------------------------------------------------------------------------------
# registry

GeneratorBuilder = Callable[..., Translator]  # fn(c_in, c_out, size, width, blocks, dropout=0.5, upsample); see build()
GENERATORS: Registry[GeneratorBuilder] = Registry("translation generator")


@GENERATORS.register("unet")
def build_unet(
    c_in: int,
    c_out: int,
    size: Sequence[int],
    width: int = 32,
    blocks: int = 6,
    dropout: float = 0.5,
    upsample: str = "deconv",
) -> Translator:
    """The pix2pix U-Net for ``size`` = (H, W) training crops (``blocks`` is unused)."""
    return UNetGenerator(c_in, c_out, unet_levels(*size), width, dropout, upsample)


@GENERATORS.register("resnet")
def build_resnet(
    c_in: int,
    c_out: int,
    size: Sequence[int],
    width: int = 32,
    blocks: int = 6,
    dropout: float = 0.5,
    upsample: str = "deconv",
) -> Translator:
    """The CycleGAN ResNet generator (sides must be multiples of 4; ``dropout`` is unused: it has none)."""
    h, w = (int(s) for s in size)
    if h % 4 or w % 4 or min(h, w) < 8:
        raise TranslateSizeError(
            f"the ResNet generator cannot be built for {h}x{w}: height and width must be multiples "
            "of 4 and at least 8; set data.size or translate.crop_size"
        )
    return ResnetGenerator(c_in, c_out, width, blocks, upsample)


def build(
    arch: str,
    c_in: int,
    c_out: int,
    size: Sequence[int],
    width: int = 32,
    blocks: int = 6,
    dropout: float = 0.5,
    input_skip: bool = False,
    upsample: str = "deconv",
) -> Translator:
    """The generator ``arch`` (a ``GENERATORS`` name), with the input added to its output when ``input_skip``
    and the 2x upsampling ``upsample`` (``deconv`` | ``resize``)."""
    net = GENERATORS.get(arch)(c_in, c_out, size, width, blocks, dropout, upsample=upsample)
    net.input_skip = input_skip
    return net


def pad_to_multiple(x: torch.Tensor, k: int) -> torch.Tensor:
    """Reflect-pad ``[N, C, H, W]`` on the bottom and right to multiples of ``k`` (replicate where the image
    is too small to reflect)."""
    h, w = x.shape[2:]
    ph, pw = -h % k, -w % k
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


@torch.no_grad()
def run_padded(net: Translator, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` for any size: reflect-padded to the network's multiple, the output cropped back."""
    h, w = x.shape[2:]
    return net(pad_to_multiple(x, net.multiple))[..., :h, :w]
