"""The watermark task: task."""

from __future__ import annotations

from ganforge import runs
from ganforge.config import SHARED_SECTIONS
from ganforge.errors import RunError
from ganforge.tasks.base import TASKS, Task
from ganforge.tasks.watermark.config import WatermarkConfig
from ganforge.tasks.watermark.handle import WatermarkHandle
from ganforge.tasks.watermark.networks import WatermarkDecoder, WatermarkEncoder, WatermarkModel
from ganforge.tasks.watermark.trainer import WatermarkTrainer


class WatermarkTask(Task):
    name = "watermark"
    summary = "invisible watermarks: an encoder, a decoder and a discriminator trained through attacks"
    sections = {**SHARED_SECTIONS, "watermark": WatermarkConfig}
    trainer = WatermarkTrainer
    tiny = (
        "watermark.width=4",
        "watermark.d_width=4",
        "watermark.res=16",
        "watermark.sizes=[16,24]",
        "watermark.bits=8",
        "watermark.clean_steps=1",
    )

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> WatermarkHandle:
        cfg = self.stored_config(checkpoint)
        wm = cfg.watermark
        try:
            enc = WatermarkEncoder(wm.bits, wm.res, wm.width)
            dec = WatermarkDecoder(wm.bits, wm.res, wm.width)
        except (ValueError, TypeError) as e:
            raise RunError(f"checkpoint '{checkpoint.folder}': cannot rebuild the watermark networks: {e}") from None
        model = WatermarkModel(enc, dec, wm.psnr)
        self.load_state(model, checkpoint, "generator")
        return WatermarkHandle(model.to(device), checkpoint, cfg)


TASKS.register("watermark")(WatermarkTask())
