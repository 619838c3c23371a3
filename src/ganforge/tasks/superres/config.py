"""The superres task: config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ganforge.config import Section, choice, nonneg, positive
from ganforge.errors import ConfigError
from ganforge.tasks.superres.data import DEGRADATIONS
from ganforge.tasks.superres.networks import SCALES, SR_MODELS, UPSAMPLERS

FEATURE_NETS = ("d", "mnist", "vgg", "none")


@dataclass
class SuperResConfig(Section):
    arch: str = "srresnet"  # generator: srresnet (EDSR-style residual blocks) | rrdb (ESRGAN's RRDB blocks)
    scale: int = 4  # upscaling factor: 2 | 4 | 8
    width: int = 64  # generator feature channels
    blocks: int = 16  # residual blocks (srresnet) or RRDBs (rrdb)
    growth: int = 32  # rrdb: growth channels of the dense blocks
    upsampler: str = "progressive"  # progressive (2x pixel-shuffle stages) | direct (one conv, one s x shuffle: faster)
    d_width: int = 64  # U-Net discriminator base channels
    crop: int = 0  # side of the high-resolution training crops (a multiple of scale); 0 = whole images
    degrade: str = (
        "bicubic"  # how inputs are made: bicubic | area (block means) | practical (blur, resize, noise, JPEG)
    )
    pixel_steps: int = 1000  # stage 1: steps of L1 alone (saved as checkpoints/pixel), then the adversarial stage
    pixel_weight: float = 1.0  # stage 2: weight of the L1 loss
    feature_net: str = "d"  # stage 2 feature loss: d (discriminator features) | mnist (shipped classifier) | vgg | none
    feature_weight: float = 1.0  # stage 2: weight of the feature loss
    adv_weight: float = 0.01  # stage 2: weight of the adversarial loss; 0 = a pixel-loss model only (no discriminator)
    perceptual_weights: Optional[str] = (
        None  # feature_net=vgg: a VGG19 weights file (torchvision state dict .pth or .safetensors)
    )

    def check(self, key: str = "superres") -> None:
        choice(f"{key}.arch", self.arch, SR_MODELS.names())
        choice(f"{key}.scale", self.scale, list(SCALES))
        choice(f"{key}.upsampler", self.upsampler, list(UPSAMPLERS))
        choice(f"{key}.degrade", self.degrade, list(DEGRADATIONS))
        choice(f"{key}.feature_net", self.feature_net, list(FEATURE_NETS))
        for k in ("width", "blocks", "growth", "d_width"):
            positive(f"{key}.{k}", getattr(self, k))
        for k in ("crop", "pixel_steps", "pixel_weight", "feature_weight", "adv_weight"):
            nonneg(f"{key}.{k}", getattr(self, k))
        if self.crop and self.crop % self.scale:
            lo = max(self.scale, self.crop - self.crop % self.scale)
            raise ConfigError(
                f"{key}.crop={self.crop}: crops must be a multiple of {key}.scale={self.scale} "
                f"(e.g. {lo} or {lo + self.scale})"
            )
        if self.feature_net == "vgg" and not self.perceptual_weights:
            raise ConfigError(
                f"{key}.feature_net=vgg needs VGG19 weights: {key}.perceptual_weights=PATH "
                "(torchvision's vgg19 state dict); without them use feature_net=d"
            )
        if self.perceptual_weights and self.feature_net != "vgg":
            raise ConfigError(
                f"{key}.perceptual_weights is used by {key}.feature_net=vgg only (got feature_net={self.feature_net})"
            )
