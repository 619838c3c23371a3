"""Several processes training one run: ``torchrun --nproc_per_node=N -m ganforge train ...``.

The loop (:mod:`ganforge.training.loop`) uses this module; tasks need nothing from it. It joins the process
group torchrun describes (:func:`init_from_env`: NCCL on CUDA, gloo on the CPU), averages gradients in
optimiser step pre-hooks as StyleGAN2-ADA does, without DDP wrappers (:func:`average_gradients_before_step`),
keeps weights and BatchNorm statistics identical on every rank (:func:`broadcast_state`,
:func:`average_buffers`), gives each rank its own random streams (:func:`decorrelate`) and provides small
collectives for the loop's decisions (:func:`all_sum`, :func:`broadcast_object`, :func:`shutdown`, ...).
Every function is a no-op (or the identity) in a single process; usage and figures are on the docs' page
"Several GPUs and machines".
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Dict, Iterable, List

import numpy as np
import torch
import torch.nn as nn

from ganforge.errors import ConfigError, TrainingError


def _dist():
    import torch.distributed as dist

    return dist


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def rank() -> int:
    return _dist().get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes the run folder."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", rank()))


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not started by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(
            f"environment variable WORLD_SIZE={os.environ['WORLD_SIZE']!r}: expected an integer"
        ) from None


def init_from_env(device: torch.device, timeout_minutes: float = 30.0) -> torch.device:
    """Join the process group torchrun describes (when ``WORLD_SIZE > 1`` and none is initialised yet);
    returns the device this rank trains on (``cuda:LOCAL_RANK`` for CUDA). torchrun's variables are
    ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``; without them nothing happens."""
    dist = _dist()
    if env_world_size() <= 1 and not active():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"train.device={device}: multi-process training runs on CUDA (NCCL) or the CPU (gloo)")
    if not dist.is_initialized():
        if not dist.is_available():
            raise ConfigError("torch.distributed is not available in this PyTorch build: run one process")
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes), **kwargs)
    return device


def barrier() -> None:
    if active():
        _dist().barrier()


def shutdown() -> None:
    """Leave the process group: a barrier first (so no rank tears down gloo while another still talks
    to it; without it torchrun sometimes ends with 'terminate called without an active exception'),
    then ``destroy_process_group``. Call it after the trainer's networks and optimisers are released."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------
# collectives the loop uses


def _comm_device() -> torch.device:
    dist = _dist()
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: List[float]) -> List[float]:
    """Element-wise sum of a list of floats over the ranks (float64)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    _dist().all_reduce(t)
    return t.cpu().tolist()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any) -> List[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out: List[Any] = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate, in rank order, each rank's rows of ``x`` ([n_r, ...], any n_r) on every rank."""
    if not active():
        return x
    dist = _dist()
    dev = _comm_device()
    n = torch.tensor([x.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    top = max(sizes)
    pad = torch.zeros((top, *x.shape[1:]), dtype=x.dtype, device=dev)
    pad[: x.shape[0]] = x.to(dev)
    bufs = [torch.empty_like(pad) for _ in sizes]
    dist.all_gather(bufs, pad)
    return torch.cat([b[:s] for b, s in zip(bufs, sizes)]).to(x.device)


def shard(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (the first ranks take one more when it does not divide)."""
    w, r = world_size(), rank()
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


# ------------------------------------------------------------------------------------------
# networks and optimisers


def _flat_tensors(tensors: Iterable[torch.Tensor]):
    """Group tensors by (device, dtype) -> lists, so each group flattens into one buffer."""
    groups: Dict[Any, List[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return groups.values()


@torch.no_grad()
def broadcast_state(nets: Dict[str, nn.Module]) -> None:
    """Rank 0's parameters and buffers into every rank's networks."""
    if not active():
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    dist = _dist()
    tensors = [t for net in nets.values() for t in list(net.parameters()) + list(net.buffers())]
    for group in _flat_tensors(tensors):
        flat = _flatten_dense_tensors([t.data for t in group])
        dist.broadcast(flat, src=0)
        for t, v in zip(group, _unflatten_dense_tensors(flat, group)):
            t.data.copy_(v)


@torch.no_grad()
def average_buffers(nets: Dict[str, nn.Module]) -> None:
    """Average every floating-point buffer (BatchNorm running mean and variance) over the ranks (the loop
    does it before checkpoints, sample grids and evaluations)."""
    if not active():
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    dist = _dist()
    bufs = [b for net in nets.values() for b in net.buffers() if b.is_floating_point()]
    for group in _flat_tensors(bufs):
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat /= world_size()
        for b, v in zip(group, _unflatten_dense_tensors(flat, group)):
            b.copy_(v)


def _optimizer_params(opt: torch.optim.Optimizer) -> List[torch.Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


@torch.no_grad()
def average_grads(params: List[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its mean over the ranks (one ``all_reduce`` per dtype/device).
    A parameter without a gradient counts as zero; it gets one when any rank has one, and stays
    without one (skipped by the optimiser) when no rank has."""
    world = world_size()
    dist = _dist()
    for group in _flat_tensors(params):
        has = torch.tensor([p.grad is not None for p in group], dtype=group[0].dtype, device=group[0].device)
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group]
        flat = torch.cat(parts + [has])
        dist.all_reduce(flat)
        flat /= world
        k = len(group)
        any_grad = flat[-k:] > 0
        off = 0
        for p, got in zip(group, any_grad.tolist()):
            n = p.numel()
            if got:
                g = flat[off : off + n].view_as(p)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            off += n


def average_gradients_before_step(optims: Dict[str, torch.optim.Optimizer]) -> List[Any]:
    """Install on every optimiser a step pre-hook that averages its parameters' gradients over the ranks;
    returns the hook handles (``handle.remove()`` uninstalls).

    Why not ``DistributedDataParallel``: a GAN uses G in the D phase and the G phase and D in both, and DDP's
    reducer expects one forward and one backward per module per iteration, so wrapping needs ``no_sync`` and
    ``find_unused_parameters`` tricks per task. Hooking the optimisers works for every task's ``optims`` as
    they are, whatever the order of forwards and backwards."""
    if not active():
        return []

    def hook(opt, args, kwargs):
        average_grads(_optimizer_params(opt))

    return [opt.register_step_pre_hook(hook) for opt in optims.values()]


@torch.no_grad()
def check_in_sync(nets: Dict[str, nn.Module], where: str) -> None:
    """Raise a :class:`TrainingError` when the ranks' parameters differ (an optimiser missing from
    ``self.optims``, or weights changed outside the optimisers by rank-dependent code)."""
    if not active():
        return
    sums = [
        float(p.double().sum()) + 1e-3 * float(p.double().abs().sum())
        for net in nets.values()
        for p in net.parameters()
    ]
    everyone = all_gather_object(sums)
    if any(s != everyone[0] for s in everyone[1:]):
        names = [f"{k}.{n}" for k, net in nets.items() for n, _ in net.named_parameters()]
        bad = next(names[i] for i in range(len(names)) if any(s[i] != everyone[0][i] for s in everyone[1:]))
        raise TrainingError(
            f"{where}: the weights of the {world_size()} processes differ (first: {bad}); every "
            "optimiser must be in the trainer's self.optims so its gradients are averaged"
        )


def convert_sync_batchnorm(nets: Dict[str, nn.Module]) -> int:
    """Replace BatchNorm layers by SyncBatchNorm in place (CUDA); returns how many were replaced.
    The parameters are the same objects, so optimisers built on them stay valid."""
    count = 0
    for net in nets.values():
        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                    setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
                    count += 1
    return count


# ------------------------------------------------------------------------------------------
# random streams


def rank_seed(seed: int, rank_: int, *more: int) -> int:
    """A 63-bit seed for rank ``rank_`` derived from ``seed`` (independent streams per rank)."""
    return int(
        np.random.SeedSequence([int(seed) & (2**63 - 1), int(rank_), *map(int, more)]).generate_state(1, np.uint64)[0]
    ) & (2**63 - 1)


def rank_generators(trainer) -> Dict[str, torch.Generator]:
    """The trainer's per-rank random streams by name: its ``torch.Generator`` attributes, those one
    attribute down (``pool.gen``) and those the loop checkpoints (``rng(..., save_as=...)``), except
    those of objects marked ``shared_across_ranks = True``
    (:class:`~ganforge.training.parts.Batcher`: the data order is global; a task can mark an object
    whose draws must agree on every rank the same way)."""
    found: Dict[str, torch.Generator] = {}
    for name, v in sorted(vars(trainer).items()):
        if isinstance(v, torch.Generator):
            found[name] = v
        elif (
            getattr(v, "shared_across_ranks", False)
            or isinstance(v, (nn.Module, torch.Tensor))
            or not hasattr(v, "__dict__")
        ):
            continue
        else:
            for sub, w in sorted(vars(v).items()):
                if isinstance(w, torch.Generator):
                    found[f"{name}.{sub}"] = w
    known = {id(g) for g in found.values()}
    for key, g in sorted(getattr(trainer, "_streams", {}).items()):  # streams the loop checkpoints (rng(save_as=))
        if id(g) not in known:
            found[key] = g
    return found


def decorrelate(trainer, seed: int, *more: int) -> None:
    """On rank r > 0, reseed the trainer's random streams (:func:`rank_generators`) and torch's global
    generator from (their seed, r, ``more``); rank 0 keeps the single-process streams."""
    r = rank()
    if r == 0:
        return
    for gen in rank_generators(trainer).values():
        gen.manual_seed(rank_seed(gen.initial_seed(), r, *more))
    torch.manual_seed(rank_seed(seed, r, *more))
