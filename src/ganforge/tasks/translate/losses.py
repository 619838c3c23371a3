"""The translate task: losses."""

from __future__ import annotations

import torch

OVERSHOOT_WEIGHT = 0.1  # weight of the penalty on the raw output leaving [-1, 1]


def straight_through(raw: torch.Tensor) -> torch.Tensor:
    """``raw`` clamped to [-1, 1] in the forward pass, the identity in the backward pass.

    Used for the L1 terms against a target (a pixel clamped on the wrong side still gets pulled back).
    The adversarial terms, and CycleGAN's translations on their way into the other generator, use the
    plain clamp instead: there the straight-through gradient kept pushing already-clamped pixels further
    out and training collapsed (docs/notes/history.md)."""
    return raw + (raw.clamp(-1.0, 1.0) - raw).detach()


def lowres_l1(out: torch.Tensor, inp: torch.Tensor, factor: int, pool: str = "avg") -> torch.Tensor:
    """L1 between ``out`` and ``inp`` pooled over ``factor`` x ``factor`` cells (sides padded up to a
    multiple by replication, so no pixel is dropped), compared as channel means when the channel counts differ:
    a content term on the coarse shape only, leaving strokes, edges and texture to the adversarial loss.
    ``pool="avg"`` compares each cell's mean (on digits: the amount of ink, so the stroke thickness too),
    ``pool="max"`` each cell's brightest pixel (whether a bright stroke crosses the cell, however thin)."""
    if out.shape[1] != inp.shape[1]:
        out, inp = out.mean(1, keepdim=True), inp.mean(1, keepdim=True)
    h, w = out.shape[2:]
    pad = (0, -w % factor, 0, -h % factor)
    fn = {"avg": torch.nn.functional.avg_pool2d, "max": torch.nn.functional.max_pool2d}[pool]
    cells = lambda x: fn(torch.nn.functional.pad(x, pad, mode="replicate"), factor)  # noqa: E731
    return (cells(out) - cells(inp)).abs().mean()


def overshoot(raw: torch.Tensor) -> torch.Tensor:
    """Mean amount by which the unbounded output leaves [-1, 1]."""
    return (raw.abs() - 1.0).relu().mean()
