"""The template task's trainer: the loop calls ``build``, ``train_step`` and ``sample_grid``."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from ganforge.imaging import make_grid_uint8, to_uint8
from ganforge.losses import LOSSES
from ganforge.tasks._template.networks import Discriminator, Generator
from ganforge.training.loop import TrainingLoop


class TemplateTrainer(TrainingLoop):
    """One step: a discriminator update, then a generator update (non-saturating loss)."""

    task = "template"  # the loop checks that the config's task is this one

    def build(self) -> None:
        c = self.cfg.template
        self.G = Generator(c.z_dim, c.width, self.img_shape).to(self.device)
        self.D = Discriminator(c.width, self.img_shape).to(self.device)
        self.nets.update(generator=self.G, discriminator=self.D)  # what checkpoints hold
        self.optims.update(g=self.optimizer(self.G, self.cfg.g_optim), d=self.optimizer(self.D, self.cfg.d_optim))
        self.loss = LOSSES.get("non-saturating")
        self.fixed_z = torch.randn(16, c.z_dim, generator=self.rng("samples"))  # the grid's fixed noise

    def train_step(self) -> Dict[str, float]:
        real = self.images[self.batcher.next().to(self.device)].float().div(127.5).sub(1.0)  # [B, C, H, W]
        z = torch.randn(real.shape[0], self.cfg.template.z_dim, generator=self.noise_gen, device=self.device)
        fake = self.G(z)
        loss_d = self.loss.d(self.D(real), self.D(fake.detach()))
        self.optims["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optims["d"].step()
        loss_g = self.loss.g(self.D(fake))
        self.optims["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optims["g"].step()
        self.step += 1
        self.images_seen += real.shape[0]
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

    @torch.no_grad()
    def sample_grid(self) -> np.ndarray:
        return make_grid_uint8(to_uint8(self.G.eval()(self.fixed_z.to(self.device))), nrow=4)
