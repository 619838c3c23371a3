"""The inpaint task: config."""

from __future__ import annotations

from dataclasses import dataclass

from ganforge.config import Section, choice, nonneg, positive
from ganforge.errors import ConfigError
from ganforge.tasks.inpaint.networks import INPAINT_MODELS


@dataclass
class InpaintConfig(Section):
    arch: str = "gated"  # completion network: gated (gated convolutions, Yu et al. 2019) | partial (Liu et al. 2018)
    width: int = 32  # U-Net base channels
    d_width: int = 32  # PatchGAN discriminator base channels
    masks: str = "mixed"  # random training masks made on the fly: box | free (strokes) | mixed
    hole_min: float = 0.1  # smallest missing fraction of the image
    hole_max: float = 0.5  # largest missing fraction of the image
    l1_hole: float = 6.0  # L1 weight inside the hole (Liu et al. 2018)
    l1_valid: float = 1.0  # L1 weight on the known pixels
    adv_weight: float = 0.1  # adversarial (PatchGAN, hinge) weight

    def check(self, key: str = "inpaint") -> None:
        choice(f"{key}.arch", self.arch, INPAINT_MODELS.names())
        choice(f"{key}.masks", self.masks, ["box", "free", "mixed"])
        positive(f"{key}.width", self.width)
        positive(f"{key}.d_width", self.d_width)
        if not 0 < self.hole_min <= self.hole_max < 1:
            raise ConfigError(
                f"{key}.hole_min/hole_max: expected 0 < min <= max < 1, got {self.hole_min}, {self.hole_max}"
            )
        for k in ("l1_hole", "l1_valid", "adv_weight"):
            nonneg(f"{key}.{k}", getattr(self, k))
