"""Weight transfer: start a new run from a trained one, optionally with the discriminator's first blocks frozen.

``init_from`` (``ganforge train ... --init-from RUN``, a run or checkpoint folder) copies every tensor of
``trainer.nets`` that matches the source by network, name and shape (:func:`copy_weights`), so a
fine-tuning run starts from what was learnt. ``freeze_d=K`` (Mo et al. 2020, "Freeze the Discriminator")
keeps the discriminator's first K blocks at those weights (:func:`freeze_discriminator`). The run folder
records both in ``transfer.json`` (:data:`RECORD`); a resumed run never copies again and freezes the same
blocks again from it, so it resumes exactly. Usage and figures are on the docs' generation page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from ganforge import runs
from ganforge.errors import ConfigError

RECORD = "transfer.json"  # the provenance file in the run folder
SHOWN = 5  # mismatches named in the log line


@dataclass
class Transfer:
    """What a new run starts from: ``init_from`` (a run folder or a checkpoint folder) and
    ``freeze_d`` (how many of the discriminator's first blocks to freeze)."""

    init_from: Union[str, Path, None] = None
    freeze_d: int = 0


def apply(trainer, spec: Optional[Transfer], resume) -> Optional[Dict[str, Any]]:
    """Called by the loop right after ``trainer.build()``: copy the weights and freeze the blocks of
    ``spec`` for a new run (returns the provenance record), or, when resuming, freeze again the blocks
    the run recorded (returns None: the record is already in the run folder)."""
    if spec is not None and spec.init_from is None and not spec.freeze_d:
        spec = None  # nothing to transfer
    if resume is not None:
        if spec is not None:
            raise ConfigError(
                "init_from: weight transfer starts a new run; a resumed run continues from its own "
                "checkpoint (and keeps the blocks it froze)"
            )
        path = Path(resume) / RECORD
        k = runs.read_json(path).get("freeze_d", {}).get("blocks", 0) if path.is_file() else 0
        if k:
            freeze_discriminator(trainer, k)
        return None
    if spec is None:
        return None
    if spec.init_from is None:
        raise ConfigError(
            f"freeze_d={spec.freeze_d}: freezing the discriminator's blocks keeps transferred weights; "
            "give init_from=RUN too (frozen random weights would never learn)"
        )
    record: Dict[str, Any] = {"init_from": copy_weights(trainer, spec.init_from)}
    if spec.freeze_d:
        record["freeze_d"] = freeze_discriminator(trainer, spec.freeze_d)
    return record


def save_record(trainer, record: Optional[Dict[str, Any]]) -> None:
    """Write the provenance record into the new run folder (:data:`RECORD`)."""
    if record is not None:
        runs.write_json(trainer.run_dir / RECORD, record)


# ------------------------------------------------------------------------------------------
# init_from


def copy_weights(trainer, source: Union[str, Path]) -> Dict[str, Any]:
    """Copy every matching tensor of ``source`` (run or checkpoint folder) into ``trainer.nets``; returns the record.

    Parameters and buffers are copied when the source has the same network (``<network>.safetensors``, or
    only its moving average ``<network>_ema.safetensors``, as built-in models ship their generators),
    tensor name and shape; the rest keeps its fresh initialisation. It works for any task, since it only
    walks ``trainer.nets``; the source must have trained the same task and at least one tensor must match.
    Optimiser states and counters are not copied (the new run starts at step 0)."""
    ck = runs.open_checkpoint(source, "last")
    task = trainer.cfg.task
    if ck.task != task:
        raise ConfigError(
            f"init_from: '{source}' trained task {ck.task!r}, this run trains {task!r}; "
            "weights transfer between runs of the same task"
        )
    copied, total, not_copied = 0, 0, []
    networks: Dict[str, Dict[str, int]] = {}
    for name, net in trainer.nets.items():
        own = net.state_dict()
        networks[name] = {"copied": 0, "tensors": len(own)}
        total += len(own)
        # a shared model may ship only the moving average of a network (a built-in model's generator_ema):
        # the network then starts from it
        src_name = name if ck.has(name) else f"{name}_ema" if ck.has(f"{name}_ema") else None
        if src_name is None:
            not_copied.append(f"{name}: not in the source ({len(own)} tensors)")
            continue
        if src_name != name:
            networks[name]["from"] = src_name  # type: ignore[assignment]
        src = ck.weights(src_name)
        n = 0
        with torch.no_grad():
            for key, t in own.items():
                s = src.get(key)
                if s is None:
                    not_copied.append(f"{name}.{key}: not in the source")
                elif s.shape != t.shape:
                    not_copied.append(f"{name}.{key}: shape {list(s.shape)} in the source, {list(t.shape)} here")
                else:
                    t.copy_(s)  # state_dict tensors share storage with the network's parameters and buffers
                    n += 1
        networks[name]["copied"] = n
        copied += n
    head = f"init_from '{source}' ({ck.folder.name}, step {ck.step})"
    first = "; ".join(not_copied[:SHOWN]) + (
        f"; ... ({len(not_copied) - SHOWN} more)" if len(not_copied) > SHOWN else ""
    )
    if copied == 0:
        raise ConfigError(
            f"init_from: no tensor of '{source}' matches this run's networks by name and shape "
            f"(a different architecture or size?): {first}"
        )
    per_net = ", ".join(f"{k} {v['copied']}/{v['tensors']}" for k, v in networks.items())
    trainer.log(
        f"{head}: copied {copied} of {total} tensors ({per_net})" + (f"; not copied: {first}" if not_copied else "")
    )
    return {
        "run": str((ck.run_dir or ck.folder).resolve()),
        "checkpoint": str(ck.folder.resolve()),
        "step": ck.step,
        "kimg": ck.meta.get("kimg"),
        "copied": copied,
        "skipped": total - copied,
        "networks": networks,
        "not_copied": not_copied,
    }


# ------------------------------------------------------------------------------------------
# freeze_d


def discriminator_blocks(d: nn.Module) -> List[Tuple[str, List[str]]]:
    """The blocks of discriminator ``d``, image side first: (description, names of its parameters), from
    its ``freeze_blocks()`` method (every discriminator family defines one, usually with
    :func:`ganforge.nn.layers.sequential_blocks`).

    A block is one weight layer with the normalisation and activation after it: for ``dcgan`` each strided
    convolution (+ BatchNorm) + LeakyReLU, for ``mlp`` each hidden linear layer (+ BatchNorm) + LeakyReLU,
    for ``resnet`` each residual block, for the inpaint PatchGAN each convolution + LeakyReLU. The layers
    that produce the logit (the head, the projection or AC-GAN head) are never part of a block."""
    own = getattr(d, "freeze_blocks", None)
    if not callable(own):
        raise ConfigError(
            f"freeze_d: the blocks of a {type(d).__name__} are not defined (it has no freeze_blocks() method)"
        )
    return own()


def discriminator_names(trainer) -> List[str]:
    """The discriminator networks of a trainer: ``discriminator`` and every ``*_discriminator`` in ``trainer.nets``."""
    return [k for k in trainer.nets if k == "discriminator" or k.endswith("_discriminator")]


def freeze_discriminator(trainer, k: int) -> Dict[str, Any]:
    """Freeze the first ``k`` blocks of every discriminator network (:func:`discriminator_names`): no
    gradients, out of every optimiser, so they end training bit for bit as they started. Buffers (BatchNorm
    running statistics, spectral-norm vectors) go on updating as in any training step."""
    names = discriminator_names(trainer)
    if not names:
        raise ConfigError(
            f"freeze_d: the {trainer.cfg.task!r} task has no discriminator network "
            f"(its networks: {', '.join(trainer.nets)})"
        )
    chosen: Dict[str, List[Tuple[str, List[str]]]] = {}
    for name in names:
        d = trainer.nets[name]
        blocks = discriminator_blocks(d)
        if not 0 < k <= len(blocks):
            raise ConfigError(
                f"freeze_d={k}: the {type(d).__name__} has {len(blocks)} blocks, so 1 to {len(blocks)}: "
                + "; ".join(f"{i + 1}: {desc}" for i, (desc, _) in enumerate(blocks))
            )
        chosen[name] = blocks
    frozen: List[nn.Parameter] = []
    params: Dict[str, List[str]] = {}
    for name, blocks in chosen.items():
        keep = {n for _, ps in blocks[:k] for n in ps}
        frozen += [p for n, p in trainer.nets[name].named_parameters() if n in keep]
        params[name] = sorted(keep)
    for p in frozen:
        p.requires_grad_(False)
    ids = {id(p) for p in frozen}
    for opt in trainer.optims.values():
        for group in opt.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
    desc = {name: [b for b, _ in blocks[:k]] for name, blocks in chosen.items()}
    of = {name: len(blocks) for name, blocks in chosen.items()}
    trainer.log(
        f"freeze_d={k}: froze {len(frozen)} parameter tensors of the first {k} blocks of "
        + "; ".join(f"{name} (of {of[name]}: {', '.join(desc[name])})" for name in chosen)
    )
    return {"blocks": k, "of": of, "frozen": desc, "parameters": params}
