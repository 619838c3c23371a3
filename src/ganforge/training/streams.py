"""Named random streams: ``stream_seed(seed, name)`` instead of hand-picked ``seed + N`` offsets.

The names below were numeric offsets before streams had names; they keep their offsets so runs
written before keep drawing (and resuming) exactly the same numbers. Several share an offset
(each task used its own). Any other name gets a seed hashed from ``(seed, crc32(name))``: stable
across runs and machines, and far from the small offsets.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

# name -> the offset it had as ``train.seed + N`` (kept for reproducibility of existing runs)
LEGACY_OFFSETS = {
    "batches": 1,  # the loop's batch order (Batcher)
    "noise": 2,  # the loop's noise_gen (latents, flips, augmentation)
    "samples": 3,  # the fixed sample/validation batch of every task
    "eval": 4,  # gan: the fixed latents of in-training evaluations
    "samples_b": 4,  # translate: the validation images of domain B
    "sample_masks": 4,  # inpaint: the validation masks
    "crops": 5,  # superres: training crop offsets
    "masks": 5,  # inpaint: training masks
    "watermark": 5,  # watermark: host sizes, messages, attacks
    "degrade": 6,  # superres: the practical degradation's draws
    "sample_degrade": 7,  # superres: the validation batch's degradation
    "batches_b": 11,  # translate: the batch order of domain B
    "augment": 12,  # translate: crops, flips and cycle noise
    "pool_b": 13,  # translate: the history pool of generated B images
    "pool_a": 14,  # translate: the history pool of generated A images
    "select_a": 15,  # translate: the A images of translate.select=fid
    "select_b": 16,  # translate: the B images of translate.select=fid
}


def stream_seed(seed: int, name: str) -> int:
    """The seed of the random stream ``name`` of a run seeded ``seed`` (``train.seed``)."""
    if name in LEGACY_OFFSETS:
        return int(seed) + LEGACY_OFFSETS[name]
    mixed = np.random.SeedSequence([int(seed) & (2**63 - 1), zlib.crc32(name.encode())])
    return int(mixed.generate_state(1, np.uint64)[0]) & (2**63 - 1)


def generator(seed: int, name: str, device="cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded for the stream ``name``."""
    return torch.Generator(device).manual_seed(stream_seed(seed, name))
