"""The inpaint task: task."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch

from ganforge import runs
from ganforge.config import SHARED_SECTIONS
from ganforge.errors import RunError
from ganforge.tasks.base import TASKS, Task
from ganforge.tasks.inpaint.config import InpaintConfig
from ganforge.tasks.inpaint.handle import InpainterHandle
from ganforge.tasks.inpaint.networks import INPAINT_MODELS
from ganforge.tasks.inpaint.trainer import InpaintTrainer


class InpaintTask(Task):
    name = "inpaint"
    summary = "complete missing regions of images: a completion network trained against a PatchGAN"
    sections = {**SHARED_SECTIONS, "inpaint": InpaintConfig}
    trainer = InpaintTrainer
    tiny = ("inpaint.width=4", "inpaint.d_width=4")

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> InpainterHandle:
        def build_net(cfg, c):
            return INPAINT_MODELS.get(cfg.inpaint.arch)(tuple(int(s) for s in c["img_shape"]), cfg.inpaint.width)

        return self.load_generator(
            checkpoint, InpainterHandle, build_net, "completion network", ema, device, ema_optional=True
        )


TASKS.register("inpaint")(InpaintTask())


def load_inpainter(
    run_dir: Union[str, Path], checkpoint: str = "last", device: Union[str, torch.device] = "cpu", ema: bool = True
) -> InpainterHandle:
    """Rebuild the completion network of an inpainting run (``ganforge train task=inpaint``) from its folder.

    ``checkpoint``: ``last``, a step number, or a checkpoint folder path. ``ema``: the exponential
    moving average of the weights (what the run's sample grids show; used when the run kept one,
    ``train.ema_decay > 0``) or the raw trained weights. Raises :class:`~ganforge.errors.RunError`
    when the folder is not a run, has no checkpoint, or trained something else than a completion network.
    """
    ck = runs.open_checkpoint(run_dir, checkpoint)
    if ck.task != "inpaint":
        where = ck.run_dir if ck.run_dir is not None else ck.folder
        raise RunError(
            f"run '{where}' trained a GAN (task={ck.task}), not a completion network; "
            "use --method latent (or train one with 'ganforge train task=inpaint')"
        )
    return TASKS.get("inpaint").load(ck, ema=ema, device=device)
