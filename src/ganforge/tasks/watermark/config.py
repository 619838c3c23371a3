"""The watermark task: config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ganforge.config import Section, nonneg, positive
from ganforge.errors import ConfigError
from ganforge.tasks.watermark import attacks as A

MIN_SIDE = 16  # smallest image side the decoder is asked to read (smaller images are refused)


@dataclass
class WatermarkConfig(Section):
    bits: int = 32  # message length the networks carry (32 to 64 and more)
    res: int = 64  # internal resolution (a multiple of 16): images are read and marked at res x res
    width: int = 16  # encoder and decoder channels
    d_width: int = 16  # discriminator channels
    psnr: float = 40.5  # the residual is scaled to this PSNR (dB, at strength 1)
    psnr_start: float = 30.0  # curriculum: training starts at this PSNR (a stronger mark) ...
    psnr_steps: int = 1000  # ... and moves linearly to watermark.psnr over these steps (0: no curriculum)
    sizes: List[int] = field(default_factory=lambda: [32, 64, 128])  # host sides drawn per step
    attacks: List[str] = field(  # the attacks the attack layer draws from: one per step, or two (see watermark.combine)
        default_factory=lambda: [
            "identity",
            "jpeg",
            "jpeg_diff",
            "resize",
            "crop",
            "blur",
            "noise",
            "brightness",
            "contrast",
            "rotate",
        ]
    )
    combine: float = 0.25  # probability of two attacks in a row
    clean_steps: int = 300  # steps without attacks first
    clean_weight: float = 0.1  # weight of BCE(decoder(clean), 1/2)
    adv_weight: float = 0.01  # weight of the adversarial loss (0: no discriminator)
    lr_decay_start: int = 0  # step at which both learning rates start decaying linearly ...
    lr_decay_steps: int = 0  # ... reaching 0 this many steps later (0: constant learning rates)
    crop_margin: float = (
        1.1  # reading: a crop hypothesis replaces the direct reading when its mean |logit| is this many times larger
    )

    def check(self, key: str = "watermark") -> None:
        for k in ("bits", "res", "width", "d_width"):
            positive(f"{key}.{k}", getattr(self, k))
        if self.res % 16:
            raise ConfigError(
                f"{key}.res={self.res}: expected a multiple of 16 (e.g. {max(16, self.res - self.res % 16)})"
            )
        for k in ("psnr", "psnr_start"):
            if not 20 <= getattr(self, k) <= 70:
                raise ConfigError(f"{key}.{k}={getattr(self, k)}: expected a PSNR between 20 and 70 dB")
        if not self.sizes or any(int(s) < MIN_SIDE for s in self.sizes):
            raise ConfigError(f"{key}.sizes={self.sizes}: expected a list of image sides of at least {MIN_SIDE}")
        bad = [a for a in self.attacks if a not in A.ATTACKS]
        if bad or not self.attacks:
            raise ConfigError(f"{key}.attacks: {bad or 'empty'} not allowed; choose from: {', '.join(A.ATTACKS)}")
        if not 0 <= self.combine <= 1:
            raise ConfigError(f"{key}.combine={self.combine}: expected a probability in [0, 1]")
        for k in ("psnr_steps", "clean_steps", "clean_weight", "adv_weight", "lr_decay_start", "lr_decay_steps"):
            nonneg(f"{key}.{k}", getattr(self, k))
        if not self.crop_margin >= 1:
            raise ConfigError(f"{key}.crop_margin={self.crop_margin}: expected a ratio of at least 1 (1.1 by default)")
