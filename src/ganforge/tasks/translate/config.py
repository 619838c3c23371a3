"""The translate task: config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ganforge.config import Section, choice, nonneg, positive
from ganforge.errors import ConfigError
from ganforge.tasks.translate.networks import GENERATORS

METHODS = ("pix2pix", "cyclegan")


ADV_LOSSES = ("lsgan", "non-saturating", "hinge", "minimax")


DIRECTIONS = ("a2b", "b2a")


@dataclass
class TranslateConfig(Section):
    method: str = (
        "pix2pix"  # pix2pix (paired: U-Net + conditional PatchGAN, L1) | cyclegan (unpaired: two generators,
        # cycle loss)
    )
    arch: str = "auto"  # generator: auto (unet for pix2pix, resnet for cyclegan) | unet | resnet
    width: int = 32  # generator base channels
    blocks: int = 6  # residual blocks of the resnet generator
    dropout: float = 0.5  # unet: dropout in the two deepest decoder levels while training (pix2pix's noise; 0 = off)
    input_skip: bool = False  # generators output input + network (learn the change; keeps absolute colours)
    d_width: int = 32  # PatchGAN base channels
    d_norm: str = (
        "instance"  # PatchGAN normalisation: instance (pix2pix, CycleGAN) | spectral (SN-PatchGAN, steadier) | none
    )
    d_steps: int = 1  # discriminator updates per generator update (the extra ones on fresh batches)
    upsample: str = "deconv"  # generators' 2x upsampling: deconv (transposed convolution) | resize (nearest + conv)
    crop_size: Optional[int] = None  # random square crops of this side while training (None: whole images)
    derive: str = "edges"  # pairs from a single-domain dataset: edges (edges -> image) | invert | grey (grey -> colour)
    loss: str = "lsgan"  # adversarial loss: lsgan | non-saturating | hinge | minimax (ganforge.losses)
    adv_weight: float = 1.0  # weight of the generators' adversarial loss
    l1_weight: float = 100.0  # pix2pix: weight of L1(G(a), b)
    cycle_weight: float = 10.0  # cyclegan: weight of each cycle-consistency L1
    identity_weight: float = (
        0.5  # cyclegan: identity L1 weight, relative to cycle_weight (0 = off; needs equal channels)
    )
    pool_size: int = 50  # cyclegan: generated images kept in each history pool for D (0 = none)
    lowres_weight: float = 0.0  # cyclegan: weight of L1(pool(G(a)), pool(a)) + L1(pool(F(b)), pool(b)) (0 = off)
    lowres_factor: int = 4  # cyclegan: side of the average pooling of lowres_weight (keeps the coarse shape)
    cycle_noise: float = (
        0.0  # cyclegan: std of Gaussian noise added to each translation on its way into the other generator
        # (Chu et al. 2017: it stops G hiding the input in faint signals, so the cycle needs visible content; 0 = off)
    )
    lowres_pool: str = (
        "avg"  # cyclegan: lowres_weight's pooling: avg (the mean per cell: ties the amount of ink) | max (the
        # brightest pixel per cell: which cells hold a bright stroke, not how thick it is)
    )
    lr_decay_start: int = 0  # step at which the linear learning-rate decay starts ...
    lr_decay_steps: int = 0  # ... reaching 0 this many steps later (0 = constant learning rates)
    tile: int = (
        512  # use: images with a side above this are translated in overlapping tiles of this side (the default
        # of the trained model; tiles near the training crop keep the instance-norm statistics of training)
    )
    select: str = (
        "none"  # none | fid: every select_every steps, the FID of G(A) against B; the lowest is checkpoint 'best'
    )
    select_every: int = 100  # steps between two selection evaluations
    select_features: str = "mnist"  # feature space of the selection FID: mnist (the shipped classifier) | inception
    select_count: int = 1000  # at most this many training images of each domain (a seeded choice) for the selection FID

    def check(self, key: str = "translate") -> None:
        choice(f"{key}.method", self.method, list(METHODS))
        choice(f"{key}.arch", self.arch, ["auto", *GENERATORS.names()])
        choice(f"{key}.derive", self.derive, ["edges", "invert", "grey"])
        choice(f"{key}.loss", self.loss, list(ADV_LOSSES))
        choice(f"{key}.d_norm", self.d_norm, ["instance", "spectral", "none"])
        choice(f"{key}.upsample", self.upsample, ["deconv", "resize"])
        choice(f"{key}.lowres_pool", self.lowres_pool, ["avg", "max"])
        choice(f"{key}.select", self.select, ["none", "fid"])
        choice(f"{key}.select_features", self.select_features, ["mnist", "inception"])
        positive(f"{key}.select_every", self.select_every)
        positive(f"{key}.select_count", self.select_count)
        if self.select_count < 2:
            raise ConfigError(f"{key}.select_count: expected at least 2 images for an FID, got {self.select_count}")
        for k in ("width", "blocks", "d_width", "d_steps", "lowres_factor"):
            positive(f"{key}.{k}", getattr(self, k))
        positive(f"{key}.crop_size", self.crop_size, allow_none=True)
        if self.tile < 16:
            raise ConfigError(f"{key}.tile: expected at least 16 pixels, got {self.tile}")
        if self.crop_size is not None and self.crop_size < 8:
            raise ConfigError(f"{key}.crop_size: expected at least 8 pixels, got {self.crop_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{key}.dropout: expected a probability in [0, 1), got {self.dropout}")
        for k in (
            "adv_weight",
            "l1_weight",
            "cycle_weight",
            "identity_weight",
            "pool_size",
            "lr_decay_start",
            "lr_decay_steps",
            "lowres_weight",
            "cycle_noise",
        ):
            nonneg(f"{key}.{k}", getattr(self, k))

    @property
    def generator(self) -> str:
        """The generator architecture ``arch`` resolves to."""
        if self.arch != "auto":
            return self.arch
        return "unet" if self.method == "pix2pix" else "resnet"
