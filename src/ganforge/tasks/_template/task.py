"""The template task object: its name, config sections, trainer and how a run is loaded."""

from __future__ import annotations

from ganforge.config import SHARED_SECTIONS
from ganforge.tasks._template.config import TemplateConfig
from ganforge.tasks._template.handle import TemplateHandle
from ganforge.tasks._template.networks import Generator
from ganforge.tasks._template.trainer import TemplateTrainer
from ganforge.tasks.base import TASKS, Task


class TemplateTask(Task):
    name = "template"
    summary = "a minimal unconditional MLP GAN (the task to copy)"
    sections = {**SHARED_SECTIONS, "template": TemplateConfig}
    trainer = TemplateTrainer
    tiny = ("template.width=8", "template.z_dim=4")  # what the task-parametrised tests train

    def load(self, checkpoint, ema: bool = True, device="cpu") -> TemplateHandle:
        def build_net(cfg, c):
            return Generator(cfg.template.z_dim, cfg.template.width, tuple(c["img_shape"]))

        return self.load_generator(checkpoint, TemplateHandle, build_net, "generator", ema, device, ema_optional=True)


TASKS.register(TemplateTask.name)(TemplateTask())
