"""Pseudo-labels for unlabelled images: k-means clusters as classes (self-conditioned GANs).

Liu et al. 2020 ("Diverse Image Generation via Self-Conditioned GANs") cluster the real images in the
discriminator's feature space and train a class-conditional GAN on the cluster indices, re-clustering as
training goes and matching the new clusters to the old ones so that each class keeps its meaning. Here the
features are those of a fixed, offline feature space when one fits the data (the shipped MNIST classifier for
grey images: :data:`ganforge.metrics.FEATURES`), else the discriminator's own (its penultimate layer,
``D._features``), as in the paper.

    feats = features(images, "mnist", generator)              # [N, 128]: the shipped classifier's
    labels, centroids = kmeans(normalise(feats), 20, generator)  # [N] in 0..19, [20, 128]
    labels = match_clusters(old_labels, labels, 20)           # new clusters renumbered to overlap the old

k-means is Lloyd's algorithm with k-means++ seeding (Arthur & Vassilvitskii 2007) on centred, L2-normalised
features (wide ones, such as a discriminator's 3,136, first randomly projected to 256 dimensions), in torch,
every random choice from the ``generator`` given (the trainer's ``clusters`` stream), so a seed gives one
clustering.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

# the default number of clusters: about one per 500 images, within these bounds, and at most one per 8 images
MIN_K, MAX_K, IMAGES_PER_CLUSTER = 10, 50, 500
PROJECT_DIM = 256  # wider features are randomly projected to this many dimensions before k-means
FEATURE_NAMES = {"mnist": "classifier features", "discriminator": "discriminator features"}  # for the start line


def default_k(n: int) -> int:
    """The default number of clusters for ``n`` images: ``n / 500`` within [10, 50], at most ``n / 8``
    (but at least 2): 20 for the 10,000 embedded digits, 50 from 25,000 images, 2 for 20 images."""
    return max(2, min(max(MIN_K, n // IMAGES_PER_CLUSTER), MAX_K, n // 8))


def describe(features: str) -> str:
    """``"classifier features"`` for ``mnist``, ``"discriminator features"``, ``"<name> features"`` otherwise."""
    return FEATURE_NAMES.get(features, f"{features} features")


# ---- features ----------------------------------------------------------------------------------------


@torch.no_grad()
def features(
    images: torch.Tensor,
    space: str,
    generator: torch.Generator,
    d: Optional[nn.Module] = None,
    memory_format=torch.contiguous_format,
    device="cpu",
    batch: int = 500,
) -> torch.Tensor:
    """float32 [N, <= PROJECT_DIM] features of uint8 images [N, C, H, W], on the CPU: the discriminator's
    (``space="discriminator"``: the penultimate layer of ``d``, run as a copy in training mode) or those of a
    registered feature space (:func:`ganforge.metrics.get_feature_space`: ``mnist`` is the shipped classifier's
    128-d layer); wider ones randomly projected chunk by chunk (:func:`projection`, drawn from ``generator``),
    so memory stays at N x 256 floats."""
    if space == "discriminator":
        net = copy.deepcopy(d).train()  # BatchNorm normalises each chunk as in training; D itself is left alone

        def extract(chunk):
            x = chunk.float().div_(127.5).sub_(1.0).contiguous(memory_format=memory_format)  # [B, C, H, W] in [-1, 1]
            return net._features(x).float().cpu()  # [B, F]: the penultimate layer, before the logit and label heads
    else:
        from ganforge.metrics.features import get_feature_space

        fs = get_feature_space(space, device=str(device))

        def extract(chunk):
            return fs.extract(chunk, batch_size=batch)["features"].float()  # [B, F]

    out, w = [], None
    for chunk in images.tensor_split(-(-images.shape[0] // batch)):  # equal chunks: none of 1 image for BatchNorm
        f = extract(chunk)
        if w is None and f.shape[1] > PROJECT_DIM:
            w = projection(f.shape[1], PROJECT_DIM, generator)
        out.append(f @ w if w is not None else f)
    return torch.cat(out)


def projection(dim_in: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded Gaussian random projection [dim_in, dim]: distances kept up to a small factor
    (Johnson-Lindenstrauss), and k-means costs N x dim x k per step instead of N x dim_in x k."""
    return torch.randn(dim_in, dim, generator=generator, dtype=torch.float32) / dim**0.5


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Features centred and scaled to unit length per row (k-means then compares directions)."""
    x = x.double()
    x = x - x.mean(0, keepdim=True)
    return (x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)).float()


# ---- k-means -----------------------------------------------------------------------------------------


def _sq_dist(x: torch.Tensor, c: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Squared distances [N, K] of the rows of x [N, D] (squared norms x2 [N]) to c [K, D]."""
    return (x2[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min_(0.0)


def kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: k rows of x [N, D], each drawn with probability proportional to its squared
    distance to the nearest centre drawn so far. Returns the centres [k, D]."""
    n = x.shape[0]
    x2 = (x * x).sum(1)
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    d2 = _sq_dist(x, x[first : first + 1], x2)[:, 0]  # [N]
    for _ in range(1, k):
        if float(d2.sum()) <= 0:  # fewer distinct points than k: take any
            i = int(torch.randint(n, (1,), generator=generator))
        else:
            i = int(torch.multinomial(d2.double(), 1, generator=generator))
        centres.append(x[i])
        d2 = torch.minimum(d2, _sq_dist(x, x[i : i + 1], x2)[:, 0])
    return torch.stack(centres)


def lloyd(x: torch.Tensor, centres: torch.Tensor, iters: int = 50) -> Tuple[torch.Tensor, torch.Tensor, float]:
    """Lloyd's iterations from ``centres`` until no point changes cluster (or ``iters``): (labels [N],
    centres [K, D], inertia: the sum of squared distances). An emptied cluster takes the point farthest
    from its centre."""
    k = centres.shape[0]
    x2 = (x * x).sum(1)
    labels = None
    for _ in range(iters):
        d = _sq_dist(x, centres, x2)  # [N, K]
        new = d.argmin(1)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        counts = torch.bincount(labels, minlength=k)  # [K]
        sums = torch.zeros_like(centres).index_add_(0, labels, x)  # [K, D]
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp_min(1)[:, None])
        if bool(empty.any()):  # rare: an emptied cluster restarts at the worst-fitted point
            resid = d.gather(1, labels[:, None])[:, 0]  # [N]
            for j in torch.nonzero(empty).flatten().tolist():
                far = int(resid.argmax())
                centres[j], resid[far] = x[far], -1.0
    d = _sq_dist(x, centres, x2)
    labels = d.argmin(1)
    return labels, centres, float(d.gather(1, labels[:, None]).sum())


def kmeans(
    x: torch.Tensor, k: int, generator: torch.Generator, n_init: int = 3, iters: int = 50
) -> Tuple[torch.Tensor, torch.Tensor]:
    """k-means of the rows of x [N, D] (float32, CPU): the best of ``n_init`` k-means++ starts (least
    inertia). Returns (labels int64 [N] in 0..k-1, centres [k, D]); the same generator state gives the same
    result."""
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"kmeans: k={k} needs 1 <= k <= {x.shape[0]} (the number of points)")
    best = None
    for _ in range(n_init):
        labels, centres, inertia = lloyd(x, kmeans_pp(x, k, generator), iters)
        if best is None or inertia < best[2]:
            best = (labels, centres, inertia)
    return best[0].long(), best[1]


# ---- keeping cluster numbers stable when re-clustering -------------------------------------------------


def match_clusters(old: torch.Tensor, new: torch.Tensor, k: int) -> torch.Tensor:
    """``new`` labels [N] renumbered so that new cluster j takes the number of the old cluster it shares
    most images with, one to one (the Hungarian method on the k x k overlap counts, maximised): the classes
    the generator learnt keep (about) the same images."""
    overlap = torch.zeros(k, k, dtype=torch.int64)  # [old, new]
    overlap.index_put_((old.long(), new.long()), torch.ones_like(new, dtype=torch.int64), accumulate=True)
    old_of_new = assignment(overlap.numpy().astype(np.float64), maximize=True)  # new j -> old number
    return torch.as_tensor(old_of_new, dtype=torch.int64)[new.long()]


def assignment(weights: np.ndarray, maximize: bool = False) -> List[int]:
    """For a square matrix ``weights`` [rows, cols], the row given to each column in the one-to-one
    assignment of least (or, ``maximize``, greatest) total: ``scipy.optimize.linear_sum_assignment`` when
    scipy is installed, else :func:`hungarian` (the same optimum)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # scipy is not a core dependency
        rows = hungarian(-weights if maximize else weights)
    else:
        r, c = linear_sum_assignment(weights, maximize=maximize)
        rows = [0] * weights.shape[1]
        for i, j in zip(r, c):
            rows[int(j)] = int(i)
    return rows


def hungarian(cost: np.ndarray) -> List[int]:
    """The minimum-cost one-to-one assignment of a square cost matrix [n, n] (the Hungarian method with
    potentials, O(n^3)): the row given to each column."""
    n = cost.shape[0]
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (n + 1)
    p, way = [0] * (n + 1), [0] * (n + 1)  # p[j]: the row (1-based) matched to column j; 0 = none
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv, used = [inf] * (n + 1), [False] * (n + 1)
        while p[j0]:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = float(cost[i0 - 1, j - 1]) - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(n + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    return [p[j] - 1 for j in range(1, n + 1)]


# ---- what the trainer keeps ---------------------------------------------------------------------------


class Clusters:
    """The pseudo-labels of a run: ``labels`` (int64 [N] on the CPU, None until the first clustering), the
    ``generator`` of its random choices, when it last clustered and how often. The same on every rank
    (``shared_across_ranks``: rank 0 clusters and broadcasts), saved in checkpoints by :meth:`state_dict`."""

    shared_across_ranks = True  # its generator is not reseeded per rank (training.distributed.rank_generators)

    def __init__(self, k: int, features: str, every: int, generator: torch.Generator):
        self.k, self.features, self.every, self.gen = k, features, every, generator
        self.labels: Optional[torch.Tensor] = None
        self.last_step = -1  # the step of the last clustering
        self.count = 0  # clusterings so far

    def due(self, step: int) -> bool:
        """Whether to cluster before training step ``step``: at the start, then every ``every`` steps."""
        if self.labels is None:
            return True
        return self.every > 0 and step > 0 and step % self.every == 0 and step != self.last_step

    def sizes(self) -> List[int]:
        """Images per cluster [k] (zeros before the first clustering)."""
        if self.labels is None:
            return [0] * self.k
        return torch.bincount(self.labels, minlength=self.k).tolist()

    def state_dict(self) -> dict:
        return {"labels": self.labels, "gen": self.gen.get_state(), "last_step": self.last_step, "count": self.count}

    def load_state_dict(self, s: dict) -> None:
        self.labels = None if s.get("labels") is None else s["labels"].long().cpu()
        self.gen.set_state(s["gen"])
        self.last_step, self.count = int(s["last_step"]), int(s["count"])


def proportional(n: int, weights: List[float]) -> torch.Tensor:
    """``n`` class indices [n] in proportion to ``weights``, deterministically: each class's count is its
    share of ``n`` rounded (largest remainders), class after class (for evaluations: no sampling noise)."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    share = w / w.sum() * n
    counts = share.floor().long()
    rest = n - int(counts.sum())
    if rest:
        counts[torch.argsort(share - counts, descending=True, stable=True)[:rest]] += 1
    return torch.repeat_interleave(torch.arange(len(weights)), counts)
