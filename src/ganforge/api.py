"""The Python API: train any task from a config, load any run folder, generate, evaluate.

    import ganforge
    run = ganforge.train(overrides=["train.steps=200"])            # -> Path of the run folder
    g = ganforge.load(run)                                          # the run's task handle (here a GeneratorHandle)
    imgs = g.sample_uint8(16, seed=0)                               # uint8 [16, C, H, W]

Everything dispatches through :data:`ganforge.tasks.TASKS` on the config's ``task``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from ganforge import runs
from ganforge.config import Config, apply_overrides
from ganforge.errors import ConfigError, LabelError, RunError  # noqa: F401  (LabelError re-exported)
from ganforge.tasks import config_from_dict, get_task, resolve
from ganforge.tasks.base import Handle
from ganforge.tasks.gan.handle import GeneratorHandle
from ganforge.training.loop import RESUMABLE_KEYS
from ganforge.training.transfer import Transfer

ConfigLike = Union[Config, Dict[str, Any], None]

__all__ = [
    "train",
    "trainer",
    "load",
    "load_generator",
    "resume_config",
    "evaluate",
    "GeneratorHandle",
    "Handle",
    "sample_writer",
]


def trainer(
    config: ConfigLike = None,
    *,
    preset: Optional[str] = None,
    overrides: Sequence[str] = (),
    runs_dir: Union[str, Path] = "runs",
    resume: Union[str, Path, None] = None,
    resume_from: str = "last",
    data=None,
    dry_run: bool = False,
    init_from: Union[str, Path, None] = None,
    freeze_d: int = 0,
):
    """The task's trainer for a config (not run yet): ``trainer(...).run()`` trains and returns the
    run folder. Arguments as for :func:`train`; ``dry_run`` builds everything and writes nothing."""
    transfer = Transfer(init_from, freeze_d) if init_from is not None or freeze_d else None
    if resume is not None:
        cfg = resume_config(resume, overrides)
    elif isinstance(config, Config) and preset is None and not overrides:
        cfg = config
    else:
        base = config.to_dict() if isinstance(config, Config) else (config or {})
        cfg = resolve(preset, overrides, base=base)
    task = get_task(cfg.task)
    if dry_run:
        return task.trainer(cfg, data=data, dry_run=True, transfer=transfer)
    if resume is None:  # a runs folder that cannot be made or written fails now, before data and networks
        from ganforge.imaging import check_writable

        check_writable(runs_dir, "runs folder", folder=True)
    return task.trainer(cfg, runs_dir=runs_dir, resume=resume, data=data, resume_from=resume_from, transfer=transfer)


def train(
    config: ConfigLike = None,
    *,
    preset: Optional[str] = None,
    overrides: Sequence[str] = (),
    runs_dir: Union[str, Path] = "runs",
    resume: Union[str, Path, None] = None,
    resume_from: str = "last",
    data=None,
    init_from: Union[str, Path, None] = None,
    freeze_d: int = 0,
) -> Path:
    """Train the config's task and return its run folder.

    ``config`` is a :class:`Config`, a nested dict, or None (defaults); ``preset`` and
    ``overrides`` are applied on top. With ``resume`` the run's saved config is used and
    only the budget/logging keys may be overridden; it continues from the newest intact
    checkpoint, or from ``resume_from`` (a step, ``good``, ``best`` or a checkpoint folder).
    ``data`` may be an ``ImageData`` to train on images already in memory. ``init_from`` (a run
    or checkpoint folder of the same task) starts a new run from its weights, every tensor that
    matches by network, name and shape; ``freeze_d=K`` then keeps the discriminator's first K blocks
    fixed (see :mod:`ganforge.training.transfer`).
    """
    return trainer(
        config,
        preset=preset,
        overrides=overrides,
        runs_dir=runs_dir,
        resume=resume,
        resume_from=resume_from,
        data=data,
        init_from=init_from,
        freeze_d=freeze_d,
    ).run()


def resume_config(run_dir: Union[str, Path], overrides: Sequence[str] = ()) -> Config:
    """The config a run continues with: its own, with only budget and logging keys changed; a new
    budget given in ``overrides`` replaces the old one."""
    run_dir = runs.check_run_dir(run_dir)
    if not runs.resume_candidates(run_dir):
        raise RunError(f"run '{run_dir}' has no complete checkpoint to resume from (checkpoints/step-*/meta.json)")
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        if key not in RESUMABLE_KEYS:
            raise ConfigError(
                f"cannot change {key!r} when resuming (the run's networks, data and optimisers are fixed); "
                f"keys that may change: {', '.join(sorted(RESUMABLE_KEYS))}"
            )
    d = apply_overrides(runs.read_run_config(run_dir), overrides)
    budget = {k: d.get("train", {}).get(k) for k in ("steps", "kimg", "epochs", "minutes")}
    overridden = {o.split("=", 1)[0].strip().split(".")[-1] for o in overrides}
    if overridden & budget.keys():  # a new budget replaces the old one
        for k in budget.keys() - overridden:
            d["train"][k] = None
    return config_from_dict(d, stored=True)


def load(
    run_dir: Union[str, Path], checkpoint: str = "last", ema: bool = True, device: Union[str, torch.device] = "cpu"
) -> Handle:
    """The trained network of a run (or of a checkpoint folder, or a built-in model by name: ``load("digits")``,
    ``ganforge models``) as its task's handle: a
    :class:`GeneratorHandle` for a GAN run, an ``InpainterHandle`` for a completion network, ...

    ``checkpoint``: ``last``, ``best``, a step number, or a checkpoint folder path.
    ``ema``: the exponential-moving-average weights (used for samples) or the raw ones.
    Rebuilt from the checkpoint folder alone (config.json + safetensors; nothing is unpickled).
    """
    ck = runs.open_checkpoint(run_dir, checkpoint)
    return get_task(ck.task).load(ck, ema=ema, device=device)


def load_generator(
    run_dir: Union[str, Path], checkpoint: str = "last", ema: bool = True, device: Union[str, torch.device] = "cpu"
) -> GeneratorHandle:
    """:func:`load` for a GAN run, with a clear error for a run of another task."""
    h = load(run_dir, checkpoint=checkpoint, ema=ema, device=device)
    if not isinstance(h, GeneratorHandle):
        raise RunError(
            f"'{run_dir}' trained task {h.task!r}, not a GAN: it has no generator to sample from "
            f"(use ganforge.load(run) for its {type(h).__name__})"
        )
    return h


def evaluate(model, reference=None, *, checkpoint: str = "last", ema: bool = True, **kwargs):
    """:func:`ganforge.metrics.evaluate` for a run folder too: ``model`` may be a run path (its generator
    is loaded with ``checkpoint``/``ema`` on the options' device), a handle, a sampler, images or an image
    folder/.npz. ``kwargs``: :func:`ganforge.metrics.evaluation.evaluate`'s (``options=``, ``out=``, ``log=``
    and the :class:`~ganforge.metrics.evaluation.EvalOptions` fields)."""
    from ganforge import models
    from ganforge.errors import EvalError
    from ganforge.metrics.evaluation import evaluate as evaluate_samples

    if isinstance(model, (str, Path)) and (
        models.is_name(model) or runs.is_run_dir(model) or runs.is_checkpoint_dir(model)
    ):
        device = kwargs.get("device", getattr(kwargs.get("options"), "device", "cpu"))
        try:
            model = load_generator(runs.resolve(model), checkpoint=checkpoint, ema=ema, device=device)
        except RunError as e:
            raise EvalError(f"cannot load a generator from {model}: {e}") from None
    return evaluate_samples(model, reference, **kwargs)


def sample_writer(handle: Handle):
    """The module that writes ``handle``'s samples for ``ganforge sample``: it has ``SAMPLE_OUTPUTS``,
    ``sample_output_kind(out)`` and ``write_samples(handle, out, n, seed=, cls=, nrow=, truncation=)``.
    A handle names its module in ``sample_app`` (a GAN's images: :mod:`ganforge.tasks.gan.app`; a video
    run's clips: :mod:`ganforge.tasks.video.app`); handles of tasks that draw no samples have none
    (:class:`RunError`)."""
    import importlib

    name = getattr(handle, "sample_app", None)
    if not name:
        raise RunError(
            f"'{handle.run_dir or handle.checkpoint_path}' trained task {handle.task!r}: it has no generator "
            f"to sample from (use ganforge.load(run) for its {type(handle).__name__})"
        )
    return importlib.import_module(name)
