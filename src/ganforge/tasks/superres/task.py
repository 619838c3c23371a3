"""The superres task: task."""

from __future__ import annotations

from ganforge import runs
from ganforge.config import SHARED_SECTIONS
from ganforge.tasks.base import TASKS, Task
from ganforge.tasks.superres.config import SuperResConfig
from ganforge.tasks.superres.handle import UpscalerHandle
from ganforge.tasks.superres.networks import SR_MODELS
from ganforge.tasks.superres.trainer import SuperResTrainer


class SuperResTask(Task):
    name = "superres"
    summary = "upscale images: an SRResNet/RRDB generator trained with L1, then against a U-Net discriminator"
    sections = {**SHARED_SECTIONS, "superres": SuperResConfig}
    trainer = SuperResTrainer
    tiny = ("superres.width=4", "superres.blocks=1", "superres.d_width=4", "superres.pixel_steps=1")

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> UpscalerHandle:
        def build_net(cfg, c):
            sr = cfg.superres
            return SR_MODELS.get(sr.arch)(
                int(c["img_shape"][0]), sr.scale, sr.width, sr.blocks, sr.growth, sr.upsampler
            )

        return self.load_generator(
            checkpoint, UpscalerHandle, build_net, "super-resolution network", ema, device, ema_optional=True
        )


TASKS.register("superres")(SuperResTask())
