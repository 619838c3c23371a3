"""The translate task: task."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch

from ganforge import runs
from ganforge.config import SHARED_SECTIONS
from ganforge.errors import ConfigError, ModelBuildError, RunError
from ganforge.tasks.base import TASKS, Task
from ganforge.tasks.translate.config import TranslateConfig
from ganforge.tasks.translate.data import PAIRED, UNPAIRED  # registers paired/unpaired
from ganforge.tasks.translate.handle import TranslatorHandle
from ganforge.tasks.translate.networks import build
from ganforge.tasks.translate.trainer import TranslateTrainer


class TranslateTask(Task):
    name = "translate"
    summary = "image-to-image translation: pix2pix (paired) or CycleGAN (unpaired)"
    sections = {**SHARED_SECTIONS, "translate": TranslateConfig}
    trainer = TranslateTrainer
    tiny = ("translate.width=4", "translate.d_width=4", "translate.blocks=1")

    def validate(self, cfg) -> None:
        super().validate(cfg)
        if cfg.data.dataset in (PAIRED, UNPAIRED) and not cfg.data.root:
            raise ConfigError(
                f"data.root: data.dataset={cfg.data.dataset} needs data.root=PATH (a folder with A/ and "
                "B/ subfolders" + (", or side-by-side AB images)" if cfg.data.dataset == PAIRED else ")")
            )
        if cfg.translate.method == "pix2pix" and cfg.data.dataset == UNPAIRED:
            raise ConfigError(
                "translate.method=pix2pix learns from pairs but data.dataset=unpaired has none; use "
                "translate.method=cyclegan or data.dataset=paired"
            )

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> TranslatorHandle:
        cfg = self.stored_config(checkpoint)
        tr = cfg.translate
        try:
            ca = int(checkpoint.config["img_shape"][0])
            cb = int(checkpoint.config["shape_b"][0])
            size = tuple(int(s) for s in checkpoint.config["train_size"])
            opts = dict(width=tr.width, blocks=tr.blocks, input_skip=tr.input_skip, upsample=tr.upsample)
            g = build(tr.generator, ca, cb, size, **opts)
            f = build(tr.generator, cb, ca, size, **opts) if "b2a" in checkpoint.config["directions"] else None
        except (KeyError, TypeError, ValueError, ModelBuildError) as e:
            raise RunError(f"checkpoint '{checkpoint.folder}': cannot rebuild the translation networks: {e}") from None
        use_ema = ema and checkpoint.has("generator_ema")
        self.load_state(g, checkpoint, "generator_ema" if use_ema else "generator")
        if f is not None:
            self.load_state(f, checkpoint, "generator_b2a_ema" if use_ema else "generator_b2a")
        handle = TranslatorHandle(g.to(device), checkpoint, cfg, f.to(device) if f is not None else None)
        handle.ema = use_ema
        return handle


TASKS.register("translate")(TranslateTask())


def load_translator(
    run_dir: Union[str, Path], checkpoint: str = "last", device: Union[str, torch.device] = "cpu", ema: bool = True
) -> TranslatorHandle:
    """The translator of a ``task=translate`` run (``checkpoint``: ``last``, a step, or a checkpoint folder);
    a :class:`~ganforge.errors.RunError` for a run of another task."""
    ck = runs.open_checkpoint(run_dir, checkpoint)
    if ck.task != "translate":
        raise RunError(
            f"run '{ck.run_dir or ck.folder}' trained task {ck.task!r}, not an image translator; train one "
            "with 'ganforge train task=translate'"
        )
    return TASKS.get("translate").load(ck, ema=ema, device=device)
