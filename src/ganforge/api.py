"""The Python API: train from a config, load a generator from a run folder, generate.

    import ganforge
    run = ganforge.train(overrides=["train.steps=200"])            # -> Path of the run folder
    g = ganforge.load_generator(run)                                # EMA generator of the last checkpoint
    imgs = g.sample_uint8(16, seed=0)                               # uint8 [16, C, H, W]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch
import torch.nn as nn

from ganforge.config import Config, ConfigError, resolve
from ganforge.models import build_models
from ganforge.training import checkpoint as ckpt
from ganforge.training.monitor import to_uint8

ConfigLike = Union[Config, Dict[str, Any], None]


from ganforge.errors import LabelError  # noqa: E402,F401  (re-exported)


def train(
    config: ConfigLike = None,
    *,
    preset: Optional[str] = None,
    overrides: Sequence[str] = (),
    runs_dir: Union[str, Path] = "runs",
    resume: Union[str, Path, None] = None,
    data=None,
) -> Path:
    """Train a GAN and return its run folder.

    ``config`` is a :class:`Config`, a nested dict, or None (defaults); ``preset`` and
    ``overrides`` are applied on top. With ``resume`` the run's saved config is used and
    only the budget/logging keys may be overridden. ``data`` may be an ``ImageData`` to
    train on images already in memory.
    """
    from ganforge.training.trainer import Trainer

    if resume is not None:
        cfg = resume_config(resume, overrides)
    else:
        base = config.to_dict() if isinstance(config, Config) else (config or {})
        cfg = resolve(preset, overrides, base=base)
    if cfg.task == "inpaint":
        from ganforge.training.inpaint_trainer import InpaintTrainer as Trainer  # noqa: F811
    trainer = Trainer(cfg, runs_dir=runs_dir, resume=resume, data=data)
    return trainer.run()


def resume_config(run_dir: Union[str, Path], overrides: Sequence[str] = ()) -> Config:
    from ganforge.config import apply_overrides, load_preset
    from ganforge.training.trainer import RESUMABLE_KEYS

    run_dir = Path(run_dir)
    ckpt.find_checkpoint(run_dir, "last")  # a clear error when it is not a run or has no checkpoint
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        if key not in RESUMABLE_KEYS:
            raise ConfigError(
                f"cannot change {key!r} when resuming (the run's networks, data and optimisers are fixed); "
                f"keys that may change: {', '.join(sorted(RESUMABLE_KEYS))}"
            )
    d = apply_overrides(load_preset(str(run_dir / "config.yaml")), overrides)
    budget = {k: d.get("train", {}).get(k) for k in ("steps", "kimg", "epochs", "minutes")}
    overridden = {o.split("=", 1)[0].strip().split(".")[-1] for o in overrides}
    if overridden & budget.keys():  # a new budget replaces the old one
        for k in budget.keys() - overridden:
            d["train"][k] = None
    return Config.from_dict(d)


class GeneratorHandle:
    """A trained generator with what is needed to use it: sizes, classes, noise, sampling."""

    def __init__(self, module: nn.Module, model_config: Dict[str, Any], checkpoint_path: Path, run_dir: Optional[Path], meta: Dict[str, Any]):
        self.module = module.eval()
        self.config = Config.from_dict(model_config["config"])
        self.img_shape = tuple(model_config["img_shape"])
        self.z_dim = self.config.model.z_dim
        self.num_classes = self.config.model.num_classes if self.config.model.conditional else 0
        names = list(model_config.get("class_names", []))
        self.class_names = names if len(names) == self.num_classes else [str(i) for i in range(self.num_classes)]
        self.checkpoint_path = Path(checkpoint_path)
        self.run_dir = run_dir
        self.step = int(meta.get("step", 0))
        self.kimg = float(meta.get("kimg", 0.0))

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def class_index(self, c: Union[int, str]) -> int:
        """A class given by index or by name -> its index (clear error otherwise)."""
        if not self.num_classes:
            raise LabelError("this generator is unconditional: it takes no class")
        if isinstance(c, str) and c in self.class_names:
            return self.class_names.index(c)
        try:
            i = int(c)
        except (TypeError, ValueError):
            i = -1
        if not 0 <= i < self.num_classes:
            raise LabelError(f"class {c!r}: expected an index 0..{self.num_classes - 1} or one of the names: "
                             f"{', '.join(self.class_names)}")
        return i

    def labels_for(self, n: int, labels=None) -> Optional[torch.Tensor]:
        """Class labels [n]: None for unconditional models; an int/name for one class; a sequence
        or tensor of n labels; or (default) the classes in turn 0, 1, ..., K-1, 0, 1, ..."""
        if not self.num_classes:
            if labels is not None:
                raise LabelError("this generator is unconditional: it takes no class labels")
            return None
        if labels is None:
            return torch.arange(n) % self.num_classes
        if isinstance(labels, (int, str)):
            return torch.full((n,), self.class_index(labels), dtype=torch.long)
        y = torch.as_tensor([self.class_index(int(v)) for v in labels], dtype=torch.long)
        if y.shape != (n,):
            raise LabelError(f"expected {n} labels, got {tuple(y.shape)}")
        return y

    def noise(self, n: int, seed: int) -> torch.Tensor:
        """The latent vectors ``sample(n, seed)`` uses: [n, z_dim], on CPU."""
        return torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(int(seed)))

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels=None, batch_size: int = 256) -> torch.Tensor:
        """Images in [-1, 1], float [N, C, H, W], for latent vectors ``z`` (and labels if conditional)."""
        y = self.labels_for(z.shape[0], labels)
        out = []
        for i in range(0, z.shape[0], batch_size):
            zc = z[i : i + batch_size].to(self.device)
            if y is None:
                out.append(self.module(zc).float().cpu())
            else:
                out.append(self.module(zc, y[i : i + batch_size].to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, *self.img_shape)

    def sample(self, n: int, seed: int = 0, batch_size: int = 256, labels=None) -> torch.Tensor:
        return self.generate(self.noise(n, seed), labels, batch_size)

    def sample_uint8(self, n: int, seed: int = 0, batch_size: int = 256, labels=None) -> torch.Tensor:
        """uint8 [n, C, H, W]; the same ``seed`` (and labels) gives the same images."""
        return to_uint8(self.sample(n, seed, batch_size, labels))

    def __repr__(self) -> str:
        cond = f", {self.num_classes} classes" if self.num_classes else ""
        return (f"GeneratorHandle({self.config.model.arch}, {'x'.join(map(str, self.img_shape))}{cond}, "
                f"step {self.step}, {self.checkpoint_path})")


def load_generator(
    run_dir: Union[str, Path],
    checkpoint: str = "last",
    ema: bool = True,
    device: Union[str, torch.device] = "cpu",
) -> GeneratorHandle:
    """Rebuild the generator of a run from its folder alone (config.json + safetensors).

    ``checkpoint``: ``last``, ``best``, a step number, or a checkpoint folder path.
    ``ema``: the exponential-moving-average weights (used for samples) or the raw ones.
    """
    folder = ckpt.find_checkpoint(Path(run_dir), checkpoint)
    mc = ckpt.read_json(folder / "config.json")
    meta = ckpt.read_json(folder / "meta.json")
    try:
        cfg = Config.from_dict(mc["config"])
        img_shape = tuple(mc["img_shape"])
    except (KeyError, ConfigError) as e:
        raise ckpt.RunError(f"checkpoint '{folder}' has an unusable config.json: {e}") from None
    g, _ = build_models(cfg.model, img_shape)
    try:
        g.load_state_dict(ckpt.load_weights(folder, "g_ema" if ema else "g"))
    except RuntimeError as e:
        raise ckpt.RunError(f"weights in '{folder}' do not match its config.json: {e}") from None
    run = folder.parent.parent if folder.parent.name == "checkpoints" else None
    return GeneratorHandle(g.to(device), mc, folder, run, meta)
