"""The gan task: task."""

from __future__ import annotations

from ganforge import runs
from ganforge.config import SHARED_SECTIONS, Config, EvalConfig
from ganforge.errors import ConfigError
from ganforge.tasks.base import TASKS, Task
from ganforge.tasks.gan.augment import AugmentConfig
from ganforge.tasks.gan.config import LossConfig, ModelConfig
from ganforge.tasks.gan.handle import GeneratorHandle
from ganforge.tasks.gan.networks import build_models
from ganforge.tasks.gan.trainer import GanTrainer
from ganforge.training.watchdog import WatchdogConfig


class GanTask(Task):
    name = "gan"
    summary = "generate images: a GAN (unconditional or class-conditional)"
    sections = {
        "data": SHARED_SECTIONS["data"],
        "model": ModelConfig,
        "loss": LossConfig,
        "g_optim": SHARED_SECTIONS["g_optim"],
        "d_optim": SHARED_SECTIONS["d_optim"],
        "train": SHARED_SECTIONS["train"],
        "augment": AugmentConfig,
        "eval": EvalConfig,
        "watchdog": WatchdogConfig,
    }
    trainer = GanTrainer
    tiny = ("model.z_dim=8", "model.g_width=8", "model.d_width=8", "eval.every_kimg=0")

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        if cfg.loss.name == "wgan-gp" and cfg.model.d_norm == "batch":
            raise ConfigError(
                "model.d_norm: batch norm in the critic breaks the per-sample gradient penalty of wgan-gp; "
                "use model.d_norm=none or spectral"
            )
        if cfg.loss.name == "wgan" and cfg.model.d_norm == "batch":
            raise ConfigError(
                "model.d_norm: batch norm in the critic of wgan divides by the batch's standard deviation, so clipped "
                "weights no longer bound the critic's slope; use model.d_norm=none"
            )

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> GeneratorHandle:
        return self.load_generator(
            checkpoint,
            GeneratorHandle,
            lambda cfg, c: build_models(cfg.model, tuple(c["img_shape"]))[0],
            "generator",
            ema,
            device,
        )


TASKS.register("gan")(GanTask())
