"""The video task: config."""

from __future__ import annotations

from dataclasses import dataclass

from ganforge.config import Section, choice, nonneg, positive
from ganforge.errors import ConfigError
from ganforge.tasks.video.data import DEFAULT_CLIPS
from ganforge.tasks.video.networks import MOTIONS


@dataclass
class VideoConfig(Section):
    frames: int = 16  # T: frames per clip
    motion: str = (
        "warp"  # warp: sprites of the content code moved by the motion codes | free: MoCoGAN's frame generator
    )
    layers: int = 0  # warp: sprite layers, each moved on its own; 0 = video.digits for moving-mnist, else 1
    snap: bool = (
        True  # warp: samples shift sprites by whole pixels (exact copies in every frame); in training the image
        # D sees such frames, the video D sub-pixel ones
    )
    centre: bool = False  # warp: centre each sprite (its centre of mass) before the shift, so the shift is its position
    sprite_size: int = (
        0  # warp: sprites drawn on this square canvas, pasted in the frame, shifts bounded to keep them whole
        # inside; 0 = the frame
    )
    content_dim: int = 32  # content code (one per clip)
    motion_dim: int = 8  # noise per frame fed to the motion GRU
    hidden_dim: int = 32  # motion codes (the GRU's state)
    g_width: int = 32  # generator base channels
    d_width: int = 32  # image discriminator base channels
    vd_width: int = 16  # video discriminator base channels (its 3-D convolutions cost most of a step)
    vd_pool: int = 2  # the video discriminator sees frames averaged over vd_pool x vd_pool pixels (1 = full size)
    image_frames: int = 2  # random frames per clip the image discriminator sees
    image_weight: float = 1.0  # weight of the image discriminator's loss in the generator's
    digits: int = 1  # moving-mnist: digits per clip
    digit_size: int = 0  # moving-mnist: digit side in pixels; 0 = 28 on a 64 canvas, half the canvas on smaller ones
    clips: int = DEFAULT_CLIPS  # moving-mnist: clips made (data.limit caps it too)
    data_seed: int = 0  # moving-mnist: the seed of the clips

    def check(self, key: str = "video") -> None:
        choice(f"{key}.motion", self.motion, list(MOTIONS))
        for k in (
            "frames",
            "content_dim",
            "motion_dim",
            "hidden_dim",
            "g_width",
            "d_width",
            "vd_width",
            "vd_pool",
            "image_frames",
            "digits",
            "clips",
        ):
            positive(f"{key}.{k}", getattr(self, k))
        for k in ("layers", "image_weight", "digit_size", "data_seed", "sprite_size"):
            nonneg(f"{key}.{k}", getattr(self, k))
        if self.frames < 2:
            raise ConfigError(f"{key}.frames={self.frames}: a clip needs at least 2 frames")
        if self.sprite_size and self.motion != "warp":
            raise ConfigError(
                f"{key}.sprite_size={self.sprite_size}: sprites belong to motion=warp, not motion={self.motion}"
            )
        if self.image_frames > self.frames:
            raise ConfigError(f"{key}.image_frames={self.image_frames}: at most {key}.frames={self.frames}")
