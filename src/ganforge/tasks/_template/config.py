"""The template task's config section: typed, defaulted, checked (``ganforge config template``)."""

from __future__ import annotations

from dataclasses import dataclass

from ganforge.config import Section, positive


@dataclass
class TemplateConfig(Section):
    z_dim: int = 16  # latent size
    width: int = 64  # hidden units of both networks

    def check(self, key: str = "template") -> None:
        positive(f"{key}.z_dim", self.z_dim)
        positive(f"{key}.width", self.width)
