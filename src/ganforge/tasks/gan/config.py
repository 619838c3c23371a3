"""The gan task: config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ganforge.config import Section, choice, nonneg, positive
from ganforge.errors import ConfigError
from ganforge.losses import LOSSES
from ganforge.tasks.gan.networks import MODELS, Z_DISTRIBUTIONS


@dataclass
class ModelConfig(Section):
    arch: str = "dcgan"  # registry name: dcgan | mlp | resnet (ganforge.tasks.gan.networks.MODELS)
    z_dim: int = 100  # latent size: the length of the noise vector z fed to G
    z_dist: str = "normal"  # the noise G is fed: normal (standard Gaussian) | uniform (in [-1, 1])
    g_width: Optional[int] = None  # generator base width; None = family default (dcgan 64, resnet 64, mlp 256)
    d_width: Optional[int] = None  # discriminator base width; None = family default (dcgan 64, resnet 64, mlp 256)
    g_norm: str = "batch"  # batch | none
    d_norm: str = "batch"  # batch | none | spectral
    conditional: Union[bool, str] = (
        False  # class-conditional G and D: true (the data's labels) | auto: the labels, or clusters when there are none
    )
    num_classes: int = 0  # set from the dataset when conditional (0 = unconditional)
    clusters: Optional[int] = (
        None  # pseudo-labels: K k-means clusters as classes (null: if the data has no labels, K by its size; 0: never)
    )
    cluster_features: str = (
        "auto"  # what is clustered: auto (mnist for 1-channel images, else discriminator) | discriminator | mnist
    )
    recluster_every: int = 1000  # discriminator features: cluster again every N steps, matched to the old (0 = never)
    g_cond: str = "cbn"  # how G sees the label: cbn (conditional BatchNorm) | embed (label embedding joined to z)
    d_cond: str = "projection"  # how D sees the label: projection (Miyato & Koyama 2018) | acgan (auxiliary classifier)
    mbstd: bool = False  # minibatch standard-deviation feature in D (Karras et al. 2018)
    pad: int = 0  # dcgan: run G and D at the image size + 2 pad (G crops its border, D frames its input in black)

    def check(self, key: str = "model") -> None:
        choice(f"{key}.arch", self.arch, MODELS.names())
        positive(f"{key}.z_dim", self.z_dim)
        choice(f"{key}.z_dist", self.z_dist, list(Z_DISTRIBUTIONS))
        positive(f"{key}.g_width", self.g_width, allow_none=True)
        positive(f"{key}.d_width", self.d_width, allow_none=True)
        choice(f"{key}.g_norm", self.g_norm, ["batch", "none"])
        choice(f"{key}.d_norm", self.d_norm, ["batch", "none", "spectral"])
        choice(f"{key}.g_cond", self.g_cond, ["cbn", "embed"])
        choice(f"{key}.d_cond", self.d_cond, ["projection", "acgan"])
        if isinstance(self.conditional, str) and self.conditional != "auto":
            raise ConfigError(f"{key}.conditional: expected true, false or auto, got {self.conditional!r}")
        if self.clusters is not None:
            if self.clusters < 0 or self.clusters == 1:
                raise ConfigError(
                    f"{key}.clusters: expected 0 (off), 2 or more, or null (from the data size), got {self.clusters}"
                )
            if self.clusters and self.conditional is False:
                raise ConfigError(
                    f"{key}.clusters={self.clusters} trains on clusters as classes: "
                    f"it needs {key}.conditional=auto or true"
                )
        nonneg(f"{key}.recluster_every", self.recluster_every)
        if self.num_classes < 0:
            raise ConfigError(f"{key}.num_classes: expected 0 or more, got {self.num_classes}")
        nonneg(f"{key}.pad", self.pad)
        if self.pad and self.arch != "dcgan":
            raise ConfigError(f"{key}.pad: only the dcgan architecture can pad, got model.arch={self.arch}")


@dataclass
class LossConfig(Section):
    name: str = "non-saturating"  # minimax | non-saturating | hinge | wgan | wgan-gp | lsgan (ganforge.losses.LOSSES)
    gp_weight: Optional[float] = None  # gradient penalty weight; None -> 10 for wgan-gp, else 0
    clip: float = 0.01  # wgan only: every critic weight is clamped to [-clip, clip] after each critic step
    r1_gamma: float = 0.0  # R1 penalty weight on real images (0 = off)
    r1_every: int = 1  # apply R1 every k discriminator steps (lazy regularisation)
    label_smoothing: float = 0.0  # one-sided: real targets 1 - s for the logistic D loss (Salimans et al. 2016)
    instance_noise: float = 0.0  # std of Gaussian noise added to D's inputs (real and fake)
    instance_noise_steps: int = 0  # anneal the noise linearly to 0 over this many steps (0 = constant)
    acgan_weight: float = 1.0  # weight of the auxiliary classification loss (d_cond=acgan)

    def check(self, key: str = "loss") -> None:
        choice(f"{key}.name", self.name, LOSSES.names())
        if self.gp_weight is None:
            self.gp_weight = 10.0 if self.name == "wgan-gp" else 0.0
        nonneg(f"{key}.gp_weight", self.gp_weight)
        positive(f"{key}.clip", self.clip)
        nonneg(f"{key}.r1_gamma", self.r1_gamma)
        positive(f"{key}.r1_every", self.r1_every)
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"{key}.label_smoothing: expected a value in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing > 0 and self.name not in ("minimax", "non-saturating"):
            raise ConfigError(
                f"{key}.label_smoothing: applies to the logistic losses (minimax, non-saturating), not {self.name!r}"
            )
        nonneg(f"{key}.instance_noise", self.instance_noise)
        nonneg(f"{key}.instance_noise_steps", self.instance_noise_steps)
        nonneg(f"{key}.acgan_weight", self.acgan_weight)
        if self.name == "wgan-gp" and self.gp_weight == 0:
            raise ConfigError(f"{key}.gp_weight: wgan-gp needs a gradient penalty > 0 (10 is standard)")
