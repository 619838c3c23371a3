"""The template task's handle: the trained generator of a run, ready to use."""

from __future__ import annotations

import torch

from ganforge.imaging import to_uint8
from ganforge.tasks.base import Handle


class TemplateHandle(Handle):
    task = "template"

    @torch.no_grad()
    def sample_uint8(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` images, uint8 [n, C, H, W], from noise seeded by ``seed``."""
        z = torch.randn(n, self.config.template.z_dim, generator=torch.Generator().manual_seed(seed))
        return to_uint8(self.module(z.to(self.device)))

    def export_inputs(self, batch: int = 1):
        return (torch.zeros(batch, self.config.template.z_dim, device=self.device),)
