"""Pieces every task's training uses: devices and bfloat16, seeded batches, EMA weights, finiteness."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Dict, Iterator

import torch
import torch.nn as nn

from ganforge.errors import ConfigError, TrainingError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name}: CUDA is not available on this machine; use train.device=cpu or auto")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("train.device=mps: MPS is not available on this machine; use train.device=cpu or auto")
    return torch.device(name)


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN with AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_enabled(requested: bool, device: torch.device, log) -> bool:
    """``train.amp``: bfloat16 autocast on CUDA, and on CPUs with native bfloat16 support; else float32."""
    if not requested:
        return False
    if device.type == "cuda":
        return True
    if device.type == "cpu" and cpu_bf16_supported():
        return True
    log(
        f"train.amp=true: {'this CPU has no native bfloat16 support' if device.type == 'cpu' else device.type} "
        "(bfloat16 autocast needs CUDA or a CPU with AVX512-BF16/AMX): training in float32"
    )
    return False


class Batcher:
    """Random batches of indices, epoch by epoch without replacement; reproducible and resumable.

    ``batch_size`` is per process. Under several processes (:mod:`ganforge.training.distributed`)
    the order is global: each step takes the next ``batch_size * world_size`` indices of one seeded
    permutation and rank r gets the r-th slice of ``batch_size``, so the ranks see disjoint shards,
    N ranks x B draw the same images as 1 process x N*B, and the state (the permutation and the
    position in it) resumes under any number of processes."""

    shared_across_ranks = True  # its generator is the global order: not reseeded per rank

    def __init__(self, n: int, batch_size: int, seed: int):
        from ganforge.training import distributed

        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.n, self.batch_size = n, batch_size
        self.global_batch = batch_size * self.world
        if self.world > 1 and self.global_batch > n:
            raise ConfigError(
                f"train.batch_size={batch_size} x {self.world} processes = {self.global_batch} images "
                f"per step is larger than the dataset ({n} images)"
            )
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch, self.pos = 0, 0
        self.perm = torch.randperm(n, generator=self.gen)

    def next(self) -> torch.Tensor:
        if self.pos + self.global_batch > self.n:  # drop the incomplete tail; start a new epoch
            self.perm = torch.randperm(self.n, generator=self.gen)
            self.pos, self.epoch = 0, self.epoch + 1
        start = self.pos + self.rank * self.batch_size
        idx = self.perm[start : start + self.batch_size]
        self.pos += self.global_batch
        return idx

    def state_dict(self) -> Dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])
        self.perm, self.pos, self.epoch = s["perm"], int(s["pos"]), int(s["epoch"])


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def ema_decay(decay: float, warmup: bool, step: int) -> float:
    """The EMA decay at ``step`` (after the update): with warm-up ``min(decay, (1 + step) / (10 + step))``,
    so early averages are not dominated by the random initial weights."""
    return min(decay, (1 + step) / (10 + step)) if decay > 0 and warmup else decay


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def decay_lr(
    optims: Dict[str, torch.optim.Optimizer], base: Dict[str, float], step: int, start: int, steps: int
) -> float:
    """Linear learning-rate decay (CycleGAN's schedule, in steps so a resumed run follows it exactly):
    set every group of ``optims[k]`` to ``base[k]`` times ``1 - (step - start) / steps``, held at 1 before
    ``start`` and at 0 after ``start + steps``; ``steps == 0`` leaves them alone. Returns the factor."""
    if steps <= 0:
        return 1.0
    frac = max(0.0, 1.0 - max(0, step - start) / steps)
    for key, opt in optims.items():
        for group in opt.param_groups:
            group["lr"] = base[key] * frac
    return frac


def check_finite(stats: Dict[str, float], step: int, advice: str) -> None:
    """Raise a :class:`TrainingError` naming the non-finite statistics of a step, with ``advice``."""
    if not all(math.isfinite(v) for v in stats.values()):
        bad = ", ".join(f"{k}={v}" for k, v in stats.items() if not math.isfinite(v))
        raise TrainingError(f"training diverged at step {step}: {bad}. The last good checkpoint is kept; {advice}")


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode inside the block (validation, samples); afterwards the mode it had."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)
