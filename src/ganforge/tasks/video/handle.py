"""The video task: handle."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ganforge import runs
from ganforge.config import Config
from ganforge.imaging import to_uint8
from ganforge.tasks.base import Handle
from ganforge.tasks.video.networks import VideoGenerator, draw_codes


class ClipHandle(Handle):
    """A trained video generator: ``sample_uint8(n, seed)`` gives clips uint8 [n, T, C, H, W].

    ``module`` is the :class:`~ganforge.tasks.video.networks.VideoGenerator`; it takes ``(z_content, eps)``
    and may roll out any number of frames (``frames=`` in the sampling calls; the trained length by default).
    ``ganforge sample`` writes its samples with :mod:`ganforge.tasks.video.app` (``sample_app``)."""

    task = "video"
    sample_app = "ganforge.tasks.video.app"

    def __init__(self, module: VideoGenerator, checkpoint: runs.Checkpoint, config: Config):
        super().__init__(module, checkpoint, config)
        self.frames = int(checkpoint.config.get("frames", config.video.frames))
        self.content_dim, self.motion_dim = config.video.content_dim, config.video.motion_dim
        self.num_classes = 0
        self.class_names: List[str] = []

    def noise(self, n: int, seed: int, frames: Optional[int] = None):
        """The codes ``sample(n, seed)`` uses: (z_content [n, content_dim], eps [n, T, motion_dim]), on CPU."""
        return draw_codes(
            n, frames or self.frames, self.content_dim, self.motion_dim, torch.Generator().manual_seed(int(seed))
        )

    @torch.no_grad()
    def generate(self, z_content: torch.Tensor, eps: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Clips in [-1, 1], float [N, T, C, H, W], for content codes and motion noise."""
        out = [
            self.module(z_content[i : i + batch_size].to(self.device), eps[i : i + batch_size].to(self.device))
            .float()
            .cpu()
            for i in range(0, z_content.shape[0], batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, eps.shape[1], *self.img_shape)

    def sample(self, n: int, seed: int = 0, frames: Optional[int] = None, batch_size: int = 64) -> torch.Tensor:
        return self.generate(*self.noise(n, seed, frames), batch_size=batch_size)

    def sample_uint8(self, n: int, seed: int = 0, frames: Optional[int] = None, batch_size: int = 64) -> torch.Tensor:
        """uint8 [n, T, C, H, W]; the same ``seed`` gives the same clips."""
        return to_uint8(self.sample(n, seed, frames, batch_size))

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        zc, eps = self.noise(batch, 0)
        return zc.to(self.device), eps.to(self.device)

    def output_shape(self, batch: int = 1) -> Tuple[int, ...]:
        return (batch, self.frames, *self.img_shape)

    def __repr__(self) -> str:
        return (
            f"ClipHandle({self.config.video.motion}, {self.frames} frames of {'x'.join(map(str, self.img_shape))}, "
            f"step {self.step}, {self.checkpoint_path})"
        )
