"""Metric values from features, with torch-fidelity's own implementations of the math.

Everything here takes features already extracted (:meth:`FeatureSpace.extract`), so one pass of the
extractor over an image set serves FID and KID (pool features), precision/recall (k-NN manifolds, k=3),
IS (logits) and the class histogram.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
import torch

from ganforge.metrics.errors import EvalError

METRICS = ("fid", "kid", "is", "pr")
METRIC_ALIASES = {"isc": "is", "inception_score": "is", "prc": "pr", "precision": "pr", "recall": "pr"}
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
ISC_SPLITS = 10
PRC_NEIGHBORHOOD = 3


def parse_metrics(metrics) -> List[str]:
    """ "fid,kid" or ["fid", "is"] -> canonical names in a fixed order; EvalError on unknown names."""
    if isinstance(metrics, str):
        items = [m.strip().lower() for m in metrics.split(",") if m.strip()]
    else:
        items = [str(m).strip().lower() for m in metrics]
    out = []
    for m in items:
        m = METRIC_ALIASES.get(m, m)
        if m not in METRICS:
            raise EvalError(f"unknown metric {m!r}; choose from: {', '.join(METRICS)} (comma-separated)")
        if m not in out:
            out.append(m)
    if not out:
        raise EvalError(f"no metrics asked for; choose from: {', '.join(METRICS)}")
    return [m for m in METRICS if m in out]


def fid_statistics(features: torch.Tensor) -> Dict[str, np.ndarray]:
    """mu, sigma of features (torch-fidelity's estimator), stored as float64."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    if features.shape[0] < 2:
        raise EvalError(f"FID needs at least 2 samples, got {features.shape[0]}")
    s = fid_features_to_statistics(features.detach().float().cpu())
    return {"mu": np.asarray(s["mu"], dtype=np.float64), "sigma": np.asarray(s["sigma"], dtype=np.float64)}


def fid_from_statistics(stats_1: Dict[str, np.ndarray], stats_2: Dict[str, np.ndarray]) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    s1 = {k: np.asarray(stats_1[k], dtype=np.float64) for k in ("mu", "sigma")}
    s2 = {k: np.asarray(stats_2[k], dtype=np.float64) for k in ("mu", "sigma")}
    if s1["mu"].shape != s2["mu"].shape or s1["sigma"].shape != s2["sigma"].shape:
        raise EvalError(
            f"FID statistics have different dimensions ({s1['mu'].shape[0]} vs {s2['mu'].shape[0]}): "
            "both sides must come from the same feature extractor"
        )
    return float(fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID])


def fid(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    return fid_from_statistics(fid_statistics(features_1), fid_statistics(features_2))


def kid_subset_size(n1: int, n2: int) -> int:
    return int(min(KID_SUBSET_SIZE, n1, n2))


def kid(
    fake: torch.Tensor, real: torch.Tensor, seed: int = 0, subsets: int = KID_SUBSETS, subset_size: Optional[int] = None
) -> Dict[str, float]:
    """KID (polynomial kernel, unbiased MMD^2 over random subsets) with torch-fidelity."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = subset_size or kid_subset_size(len(fake), len(real))
    if size < 2:
        raise EvalError(f"KID needs at least 2 samples on each side, got {len(fake)} and {len(real)}")
    out = kid_features_to_metric(
        fake.detach().float().cpu(),
        real.detach().float().cpu(),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    return {
        "mean": float(out[KEY_METRIC_KID_MEAN]),
        "std": float(out[KEY_METRIC_KID_STD]),
        "subset_size": size,
        "subsets": subsets,
    }


def inception_score(logits: torch.Tensor, seed: int = 0, splits: int = ISC_SPLITS) -> Dict[str, float]:
    """IS = exp E[KL(p(y|x) || p(y))], mean and std over splits (torch-fidelity)."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    n = logits.shape[0]
    splits = int(max(1, min(splits, n)))
    out = isc_features_to_metric(logits.detach().float().cpu(), splits=splits, shuffle=True, rng_seed=seed)
    return {"mean": float(out[KEY_METRIC_ISC_MEAN]), "std": float(out[KEY_METRIC_ISC_STD]), "splits": splits}


def precision_recall(fake: torch.Tensor, real: torch.Tensor, neighborhood: int = PRC_NEIGHBORHOOD) -> Dict[str, float]:
    """Improved precision/recall (Kynkaanniemi et al. 2019) with torch-fidelity: precision = share of
    fake samples inside the real manifold, recall = share of real samples inside the fake manifold."""
    from torch_fidelity.metric_prc import (
        KEY_METRIC_F_SCORE,
        KEY_METRIC_PRECISION,
        KEY_METRIC_RECALL,
        prc_features_to_metric,
    )

    if min(len(fake), len(real)) <= neighborhood:
        raise EvalError(f"precision/recall needs more than {neighborhood} samples on each side")
    big = len(fake) * len(real) > 4000 * 4000
    out = prc_features_to_metric(
        fake.detach().float().cpu(),
        real.detach().float().cpu(),
        prc_neighborhood=neighborhood,
        prc_batch_size=4000,
        save_cpu_ram=big,
        verbose=False,
    )
    return {
        "precision": float(out[KEY_METRIC_PRECISION]),
        "recall": float(out[KEY_METRIC_RECALL]),
        "f_score": float(out[KEY_METRIC_F_SCORE]),
        "neighborhood": neighborhood,
    }


# ------------------------------------------------------------------------------------------
# mode coverage with a classifier

COVERED_FRACTION = 0.1  # a class is covered when it gets >= 10% of the samples the real distribution gives it


def class_histogram(logits: torch.Tensor, num_classes: int) -> np.ndarray:
    pred = logits.argmax(dim=1).cpu()
    return torch.bincount(pred, minlength=num_classes).numpy().astype(np.int64)


def coverage(fake_logits: torch.Tensor, real_logits: torch.Tensor, class_names: List[str]) -> Dict[str, object]:
    """Class histogram of the fake samples (classifier argmax), classes covered, KL(fake || real).

    The real class distribution is the same classifier's histogram on the reference images, so both
    sides carry the same classifier bias. KL uses the natural log; empty bins are clipped at 1e-12.
    """
    k = len(class_names)
    hf = class_histogram(fake_logits, k)
    hr = class_histogram(real_logits, k)
    pf = hf / max(1, hf.sum())
    pr = hr / max(1, hr.sum())
    expected = pr * hf.sum()
    covered = [i for i in range(k) if hr[i] > 0 and hf[i] >= max(1.0, COVERED_FRACTION * expected[i])]
    kl = float(
        np.sum(np.where(pf > 0, pf * (np.log(np.clip(pf, 1e-12, None)) - np.log(np.clip(pr, 1e-12, None))), 0.0))
    )
    return {
        "classes": list(class_names),
        "histogram": [int(v) for v in hf],
        "fraction": [float(v) for v in pf],
        "real_fraction": [float(v) for v in pr],
        "classes_covered": len(covered),
        "num_classes": int((hr > 0).sum()),
        "missing_classes": [class_names[i] for i in range(k) if hr[i] > 0 and i not in covered],
        "kl_fake_to_real": kl if math.isfinite(kl) else float("inf"),
        "covered_rule": f"a class is covered when it gets >= {COVERED_FRACTION:.0%} of the samples "
        "the real class distribution would give it (and at least one)",
    }


def split_real(n_real: int, n: int, seed: int):
    """Two disjoint index sets of size m = min(n, n_real // 2) drawn with a seeded permutation."""
    m = int(min(n, n_real // 2))
    perm = torch.randperm(n_real, generator=torch.Generator().manual_seed(int(seed) + 7919))
    return perm[:m], perm[m : 2 * m]
