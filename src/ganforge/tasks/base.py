"""What a task is: the unit of extension of ganforge.

A task (``gan``, ``inpaint``, ...) is a folder of this package that defines its config sections
(dataclasses deriving from :class:`ganforge.config.Section`), a trainer (a
:class:`ganforge.training.loop.TrainingLoop` subclass that builds its networks and optimisers and defines
the training step and the sample grid) and a :class:`Handle` (the trained network loaded from a run folder,
which apps, metrics, the web app and export use), and registers a :class:`Task` object that ties them
together under its name in :data:`TASKS`. The loop, the run folder (:mod:`ganforge.runs`), the
configuration machinery, the CLI and the Python API dispatch on ``cfg.task`` through :data:`TASKS` and
need no change for a new task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union

from ganforge.config import SHARED_SECTIONS, Config, build, choice
from ganforge.errors import ConfigError, RunError
from ganforge.registry import Registry

if TYPE_CHECKING:  # this module imports no torch, so ``ganforge.tasks`` stays cheap to import
    import torch
    import torch.nn as nn

    from ganforge import runs


def _load_builtin_tasks() -> None:
    """Import every task of :data:`ganforge.tasks.NAMES` (each registers itself in its ``task.py``)."""
    import importlib

    for name in importlib.import_module("ganforge.tasks").NAMES:
        importlib.import_module(f"ganforge.tasks.{name}.task")


TASKS: Registry["Task"] = Registry("task", loader=_load_builtin_tasks)


@dataclass
class ExportNet:
    """One network of a handle as :mod:`ganforge.export` writes it (ONNX, torch.export).

    The batch (dim 0 of every input and output) is always dynamic; the inputs named in ``spatial``
    (``[N, C, H, W]``) also have a dynamic height and width, shared by all of them, that must be
    multiples of ``multiple``. ``output_shapes`` gives an output's shape in the terms ``"batch"``,
    ``"height"``, ``"width"`` and ``"K*height"`` (default: dim 0 ``"batch"``; for spatial networks the
    last two ``"height"``/``"width"`` when they equal the example's; the example's numbers elsewhere).
    ``values`` says per input/output what the values mean and ``info`` holds anything else a deployer
    needs (class names, scale); both go to the export manifest. ``forward(*inputs)`` must be traceable
    by ``torch.export``: no Python branching on tensor values."""

    name: str  # file stem and manifest key: "generator", "encoder", "a2b", ...
    module: nn.Module  # in eval mode
    inputs: Tuple[torch.Tensor, ...]  # example inputs in forward order; batch >= 2 (a batch of 1 would be baked in)
    input_names: Sequence[str]
    output_names: Sequence[str] = ("output",)
    spatial: Sequence[str] = ()
    multiple: int = 1
    output_shapes: Mapping[str, Sequence[Union[int, str]]] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)


class Handle:
    """A trained network of a run, ready to use: ``module`` (in eval mode), the run's ``config``,
    ``img_shape`` (C, H, W), where it came from (``checkpoint_path``, ``run_dir``, ``step``, ``kimg``).

    Each task's handle adds what using it means (``GeneratorHandle.sample_uint8``,
    ``InpainterHandle.complete``, ...) and says how to call ``module`` (:meth:`export_inputs`) and
    which networks ``ganforge export`` writes (:meth:`export_networks`)."""

    task = ""

    def __init__(self, module: nn.Module, checkpoint: runs.Checkpoint, config: Config):
        self.module = module.eval()
        self.config = config
        self.img_shape: Tuple[int, int, int] = tuple(int(s) for s in checkpoint.config["img_shape"])
        self.checkpoint_path = Path(checkpoint.folder)
        self.run_dir: Optional[Path] = checkpoint.run_dir
        self.step = int(checkpoint.meta.get("step", 0))
        self.kimg = float(checkpoint.meta.get("kimg", 0.0))
        self.ema = False  # whether ``module`` holds the exponential moving average of the weights

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        """Example inputs of ``module`` (on its device), for tracing and export."""
        raise NotImplementedError

    def output_shape(self, batch: int = 1) -> Tuple[int, ...]:
        """The shape of ``module(*export_inputs(batch))``: images of the run's shape by default."""
        return (batch, *self.img_shape)

    def export_networks(self) -> List[ExportNet]:
        """The networks ``ganforge export`` writes, with their example inputs and dynamic dims. By default
        ``module`` fed :meth:`export_inputs`, batch dynamic; handles of fully convolutional or several
        networks say more."""
        inputs = self.export_inputs(2)
        names = ("input",) if len(inputs) == 1 else tuple(f"input{i}" for i in range(len(inputs)))
        return [ExportNet(self.task or "network", self.module, inputs, names)]


class Task:
    """A kind of model ganforge trains and uses. Subclasses set the class attributes and
    implement :meth:`load`; :meth:`validate` may add checks across sections."""

    name: str = ""
    summary: str = ""  # one line for help texts
    sections: Mapping[str, type] = SHARED_SECTIONS  # every section of the task's config, in file order
    trainer: Type = None  # a TrainingLoop subclass
    # overrides that make the task's networks tiny: the tests parametrised over TASKS train every
    # task with these (plus small data and batch settings) for a few steps
    tiny: Tuple[str, ...] = ()

    # ---- configuration ---------------------------------------------------------------------
    def config(self, d: Mapping[str, Any], drop: Iterable[str] = ()) -> Config:
        """Build and validate this task's :class:`Config` from a nested dict (see :func:`ganforge.config.build`)."""
        cfg = build(d, self.sections, self.name, drop=drop, known_elsewhere=all_sections())
        self.validate(cfg)
        return cfg

    def validate(self, cfg: Config) -> None:
        """Checks that need more than one section or a registry (the dataset name, by default)."""
        from ganforge.data import DATASETS

        choice("data.dataset", cfg.data.dataset, DATASETS.names())

    # ---- using a trained run -----------------------------------------------------------------
    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device: Union[str, torch.device] = "cpu") -> Handle:
        """The trained network of ``checkpoint`` as this task's :class:`Handle`."""
        raise NotImplementedError

    def stored_config(self, checkpoint: runs.Checkpoint) -> Config:
        """The config a checkpoint was trained with (sections of other tasks, which older runs carry, dropped)."""
        try:
            return self.config(checkpoint.config["config"], drop=all_sections())
        except (KeyError, TypeError, ConfigError) as e:
            raise RunError(f"checkpoint '{checkpoint.folder}' has an unusable config.json: {e}") from None

    @staticmethod
    def load_state(net: nn.Module, checkpoint: runs.Checkpoint, network: str) -> nn.Module:
        """Load the weights ``<network>.safetensors`` of ``checkpoint`` into ``net``, with a one-line error."""
        from ganforge import runs

        return runs.load_network(net, checkpoint.folder, network)

    def load_generator(
        self,
        checkpoint: runs.Checkpoint,
        handle_cls: Type["Handle"],
        build_net,
        what: str,
        ema: bool = True,
        device: Union[str, torch.device] = "cpu",
        ema_optional: bool = False,
    ) -> "Handle":
        """What most tasks' :meth:`load` is: rebuild the network with ``build_net(cfg, checkpoint.config)``
        (a bad or missing field is a one-line :class:`RunError` naming ``what``), load the weights of
        ``generator_ema`` (``ema``; with ``ema_optional``, only when the checkpoint has them) or ``generator``,
        and wrap it in ``handle_cls(net, checkpoint, cfg)`` on ``device``."""
        cfg = self.stored_config(checkpoint)
        try:
            net = build_net(cfg, checkpoint.config)
        except (KeyError, TypeError, IndexError, ValueError) as e:  # ConfigError / ModelBuildError are ValueErrors
            raise RunError(f"checkpoint '{checkpoint.folder}': cannot rebuild the {what}: {e}") from None
        use_ema = ema and (not ema_optional or checkpoint.has("generator_ema"))
        self.load_state(net, checkpoint, "generator_ema" if use_ema else "generator")
        handle = handle_cls(net.to(device), checkpoint, cfg)
        handle.ema = use_ema
        return handle


def all_sections() -> Dict[str, type]:
    """Every section any registered task uses (to tell a section of another task from a typo)."""
    out: Dict[str, type] = {}
    for name in TASKS.names():
        out.update(TASKS.get(name).sections)
    return out


def get_task(name: str) -> Task:
    """The registered task ``name``, or a :class:`ConfigError` listing the tasks."""
    if name not in TASKS:
        raise ConfigError(f"task: {name!r} is not allowed; choose one of: {', '.join(TASKS.names())}")
    return TASKS.get(name)
