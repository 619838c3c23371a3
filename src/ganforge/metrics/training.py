"""``TrainingEvaluator``: quick FID/KID/coverage during training, with a best-by-FID tracker.

    ev = TrainingEvaluator(real_data, features="mnist", num_samples=2000, seed=0, every_kimg=50)
    if ev.due(kimg):
        r = ev(lambda n: trainer_or_handle.sample_uint8(n, seed=0), kimg=kimg)  # {"fid", "kid", "is_best", ...}

The real features are computed once (first call) and kept; a fixed sampling seed makes successive
evaluations differ only by the weights. A trainer keeps its ``best`` checkpoint with the loop's
``keep_best`` (the GAN trainer: by this FID). Under several processes every rank calls it with the
same ``sample_fn``, extracts the features of its share, and the shares are gathered in rank order,
so every rank gets the figures of all the samples.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Optional

import torch

from ganforge.metrics import compute as C
from ganforge.metrics.errors import EvalError
from ganforge.metrics.features import FeatureSpace, get_feature_space
from ganforge.metrics.refstats import reference_features


class TrainingEvaluator:
    """Evaluate a generator against fixed real data; see the module doc.

    ``real``: ``ImageData`` or uint8 tensor [N, C, H, W] (the training images, already preprocessed).
    ``num_samples``: generated images per evaluation (2,000 keeps it to a few seconds on CPU with the
    mnist features; FID at 2,000 is biased upwards against FID at 10,000: compare like with like).
    ``max_real``: use a seeded subset of at most this many real images for the reference.
    ``every_kimg``: cadence for :meth:`due` (None: the caller decides).
    """

    def __init__(
        self,
        real,
        features: str = "mnist",
        num_samples: int = 2000,
        seed: int = 0,
        every_kimg: Optional[float] = None,
        batch_size: int = 500,
        device: str = "cpu",
        kid_subsets: int = 50,
        max_real: Optional[int] = 10000,
        cache: bool = False,
        cache_dir=None,
        inception_weights: Optional[str] = None,
        feature_space: Optional[FeatureSpace] = None,
    ):
        images = real.images if hasattr(real, "images") else real
        if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
            raise EvalError("TrainingEvaluator: real images must be ImageData or a uint8 tensor [N, C, H, W]")
        if num_samples < 2:
            raise EvalError(f"TrainingEvaluator: num_samples must be at least 2, got {num_samples}")
        if max_real is not None and len(images) > max_real:
            idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(seed)))[:max_real]
            images = images[idx.sort().values]
        self.real_images = images
        self.features = features
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.every_kimg = every_kimg
        self.batch_size = int(batch_size)
        self.device = device
        self.kid_subsets = int(kid_subsets)
        self.cache, self.cache_dir = cache, cache_dir
        self.inception_weights = inception_weights
        self._space = feature_space
        self._ref = None
        self.best_fid = math.inf
        self.best_kimg: Optional[float] = None
        self.last_kimg: Optional[float] = None
        self.history = []

    # ---- lazily built pieces ---------------------------------------------------------------
    @property
    def space(self) -> FeatureSpace:
        if self._space is None:
            weights = self.inception_weights if self.features == "inception" else None
            self._space = get_feature_space(self.features, weights_path=weights, device=self.device)
        return self._space

    def _reference(self):
        if self._ref is None:
            self._ref = reference_features(
                self.real_images, self.space, batch_size=self.batch_size, cache=self.cache, cache_dir=self.cache_dir
            )
        return self._ref

    # ---- cadence and state -----------------------------------------------------------------
    def due(self, kimg: float) -> bool:
        """True when at least ``every_kimg`` thousand images were shown since the last evaluation."""
        if not self.every_kimg:
            return False
        if self.last_kimg is None:
            return kimg >= self.every_kimg
        return kimg - self.last_kimg >= self.every_kimg - 1e-9

    def state_dict(self) -> Dict[str, Any]:
        return {
            "best_fid": None if math.isinf(self.best_fid) else self.best_fid,
            "best_kimg": self.best_kimg,
            "last_kimg": self.last_kimg,
        }

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        self.best_fid = math.inf if d.get("best_fid") is None else float(d["best_fid"])
        self.best_kimg = d.get("best_kimg")
        self.last_kimg = d.get("last_kimg")

    # ---- the evaluation ---------------------------------------------------------------------
    def _features(self, fake: torch.Tensor) -> Dict[str, Any]:
        """Features (and classifier logits) of ``fake``: this rank's share, gathered from all ranks."""
        from ganforge.training import distributed

        if not distributed.active() or fake.shape[0] < distributed.world_size():
            return self.space.extract(fake, self.batch_size)
        out = self.space.extract(fake[distributed.shard(fake.shape[0])], self.batch_size)
        return {k: distributed.all_gather_rows(v) if torch.is_tensor(v) else v for k, v in out.items()}

    @torch.no_grad()
    def __call__(self, sample_fn: Callable[[int], torch.Tensor], kimg: Optional[float] = None) -> Dict[str, Any]:
        t0 = time.perf_counter()
        ref = self._reference()
        fake = sample_fn(self.num_samples)
        if not torch.is_tensor(fake) or fake.dtype != torch.uint8 or fake.dim() != 4:
            raise EvalError("TrainingEvaluator: sample_fn(n) must return a uint8 tensor [n, C, H, W]")
        if fake.shape[1] != self.real_images.shape[1]:
            raise EvalError(
                f"channels differ: generated images have {fake.shape[1]}, real ones {self.real_images.shape[1]}"
            )
        out = self._features(fake.cpu())
        fid = C.fid_from_statistics(C.fid_statistics(out["features"]), ref.stats)
        k = C.kid(out["features"], ref.features, seed=self.seed, subsets=self.kid_subsets)
        result: Dict[str, Any] = {
            "fid": fid,
            "kid": k["mean"],
            "kid_std": k["std"],
            "features": self.space.name,
            "num_samples": int(fake.shape[0]),
            "num_real": ref.num_samples,
        }
        if self.space.is_domain_classifier:
            cov = C.coverage(out["logits"], ref.logits, self.space.class_names)
            result["classes_covered"] = cov["classes_covered"]
            result["kl_class"] = cov["kl_fake_to_real"]
            result["class_histogram"] = cov["histogram"]
        else:
            result["classes_covered"] = None
            result["kl_class"] = None
        is_best = math.isfinite(fid) and fid < self.best_fid
        if is_best:
            self.best_fid, self.best_kimg = fid, kimg
        if kimg is not None:
            self.last_kimg = kimg
        result.update(
            {"is_best": is_best, "best_fid": self.best_fid, "kimg": kimg, "seconds": round(time.perf_counter() - t0, 3)}
        )
        self.history.append({k: v for k, v in result.items() if k != "class_histogram"})
        return result
