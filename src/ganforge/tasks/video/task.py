"""The video task: task."""

from __future__ import annotations

from typing import Any, Mapping, Union

import torch

from ganforge import runs
from ganforge.config import SHARED_SECTIONS, Config, choice
from ganforge.errors import ConfigError
from ganforge.tasks.base import TASKS, Task
from ganforge.tasks.video.config import VideoConfig
from ganforge.tasks.video.data import CLIP_DATASETS
from ganforge.tasks.video.handle import ClipHandle
from ganforge.tasks.video.networks import build_from_config
from ganforge.tasks.video.trainer import VideoTrainer


class VideoTask(Task):
    name = "video"
    summary = "generate short clips: a MoCoGAN-style video GAN (content code + recurrent motion)"
    sections = {**SHARED_SECTIONS, "video": VideoConfig}
    trainer = VideoTrainer
    tiny = (
        "data.size=16",
        "video.frames=4",
        "video.content_dim=4",
        "video.motion_dim=2",
        "video.hidden_dim=4",
        "video.g_width=4",
        "video.d_width=4",
        "video.vd_width=4",
        "video.vd_pool=1",
        "video.clips=64",
    )

    def config(self, d: Mapping[str, Any], drop=()) -> Config:
        """As :meth:`Task.config`; the dataset defaults to ``moving-mnist`` (the embedded digits, moving),
        also when a preset of another task named the embedded MNIST."""
        d = dict(d)
        data = dict(d.get("data") or {})
        if data.get("dataset") in (None, "mnist-embedded"):
            data["dataset"] = "moving-mnist"
            d["data"] = data
        return super().config(d, drop)

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        choice("data.dataset", cfg.data.dataset, list(CLIP_DATASETS))
        if cfg.data.hflip:
            raise ConfigError("data.hflip: the video task does not flip clips; set data.hflip=false")

    def load(
        self, checkpoint: runs.Checkpoint, ema: bool = True, device: Union[str, torch.device] = "cpu"
    ) -> ClipHandle:
        return self.load_generator(
            checkpoint,
            ClipHandle,
            lambda cfg, c: build_from_config(cfg, tuple(int(s) for s in c["img_shape"]))[0],
            "video generator",
            ema,
            device,
        )


TASKS.register("video")(VideoTask())
