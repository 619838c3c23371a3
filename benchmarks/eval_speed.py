#!/usr/bin/env python
"""Evaluation speed on CPU.

    .venv/bin/python benchmarks/eval_speed.py [--run RUN_DIR] [--repeats 3] [--inception-images 64]

Figures (medians over repeats; one line each, then a summary line):

1. FID of 10,000 generated MNIST images against cached reference statistics, mnist features,
   end to end from the uint8 samples (``ganforge.metrics.evaluate``) -- target < 10 s on 2 cores --
   next to torch-fidelity's own ``calculate_metrics`` with the same extractor and its stats cache,
   measured in the same run. Sampling the 10,000 images from a 32x32 DCGAN generator (random
   weights unless ``--run`` gives a trained run) is timed separately and also reported with it.
2. Inception path throughput (images/s), ganforge's FeatureSpace vs torch-fidelity's feature
   extraction called directly, on the same images and the same weights. Without the real weights
   both run the same randomly initialised InceptionV3 (torch-fidelity loads it from a temporary
   state-dict file): THROUGHPUT ONLY, the feature values are meaningless.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def paired_times(fn_a, fn_b, repeats):
    """Medians of A and B timed alternately (A, B, A, B, ...) so machine noise hits both alike."""
    ta, tb, oa, ob = [], [], None, None
    for _ in range(repeats):
        t = time.perf_counter()
        oa = fn_a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        ob = fn_b()
        tb.append(time.perf_counter() - t)
    return statistics.median(ta), oa, statistics.median(tb), ob


def median_time(fn, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def generate(run, n, seed=0):
    """uint8 [n, 1, 32, 32] from a trained run or a random-weight DCGAN of the default config."""

    def to_uint8(x):  # [-1, 1] -> uint8, as ganforge's samplers do
        return ((x.float().clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)

    if run:
        from ganforge.api import load_generator

        h = load_generator(run)
        return h.sample_uint8(n, seed=seed, batch_size=500), f"run {h.checkpoint_path}"
    from ganforge.tasks import resolve
    from ganforge.tasks.gan.networks import build_models

    cfg = resolve(None, ["data.size=32"])
    torch.manual_seed(seed)
    g, _ = build_models(cfg.model, (1, 32, 32))
    g.eval()
    with torch.no_grad():
        z = torch.randn(n, cfg.model.z_dim, generator=torch.Generator().manual_seed(seed))
        x = torch.cat([to_uint8(g(c)) for c in z.split(500)])
    return x, "random-weight DCGAN (default config, 32x32)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=None, help="a trained run folder to sample from (default: random-weight DCGAN)")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--inception-images", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import torch_fidelity

    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics import evaluate, get_feature_space, register_torch_fidelity
    from ganforge.metrics.inception_weights import find_inception_weights

    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, torch-fidelity {torch_fidelity.__version__}")
    real = load_dataset(DataConfig(size=[32, 32])).images  # the reference a 32x32 MNIST run uses
    t_gen, (fake, src) = median_time(lambda: generate(args.run, args.samples), 1)
    print(f"sampling: {args.samples} images from {src}: {t_gen:.2f} s ({args.samples / t_gen:.0f} img/s)")

    with tempfile.TemporaryDirectory() as tmp:
        # ---- 1. FID, mnist features, cached reference --------------------------------------
        space = get_feature_space("mnist")
        t_ref, _ = median_time(lambda: evaluate(fake[:2], real, metrics="fid", feature_space=space, cache_dir=tmp), 1)
        print(f"reference statistics (computed once, then cached): {len(real)} images in {t_ref:.2f} s")

        def ours():
            return evaluate(fake, real, metrics="fid", features="mnist", cache_dir=tmp, coverage=False)

        from ganforge.metrics.fidelity_bridge import TensorImages

        register_torch_fidelity()
        kw = dict(
            feature_extractor="ganforge-mnist",
            fid=True,
            cuda=False,
            verbose=False,
            save_cpu_ram=True,
            cache_root=tmp,
            input2_cache_name="bench-mnist32-real",
            batch_size=256,
        )
        torch_fidelity.calculate_metrics(
            input1=TensorImages(fake[:64]), input2=TensorImages(real), **kw
        )  # warm its cache

        def theirs():
            return torch_fidelity.calculate_metrics(input1=TensorImages(fake), input2=TensorImages(real), **kw)

        t_ours, r, t_tf, rt = paired_times(ours, theirs, args.repeats)
        assert r["provenance"]["reference_cache"], "reference was not served from the cache"
        agree = abs(r["fid"] - rt["frechet_inception_distance"]) / max(1e-12, abs(rt["frechet_inception_distance"]))
        print(
            f"FID {args.samples} samples vs cached ref, mnist features, ganforge.evaluate: {t_ours:.2f} s "
            f"(target < 10 s; FID {r['fid']:.4f})"
        )
        print(
            f"FID {args.samples} samples vs cached ref, same extractor, torch_fidelity.calculate_metrics: {t_tf:.2f} s "
            f"(ratio ganforge/torch-fidelity {t_ours / t_tf:.2f}; values agree to {agree:.1e} relative)"
        )
        print(f"FID {args.samples} samples incl. sampling from the generator: {t_gen + t_ours:.2f} s")

        # ---- 2. Inception throughput -----------------------------------------------------------
        n = args.inception_images
        imgs = real[:n]
        weights = find_inception_weights()
        if weights is None:
            print(
                "inception: weights absent (torch-fidelity cache empty, no --inception-weights / "
                "GANFORGE_INCEPTION_WEIGHTS): metric values cannot be computed; comparing THROUGHPUT ONLY "
                "with identical random weights"
            )
            sp = get_feature_space("inception", random_weights=True)
            wpath = Path(tmp) / "random-inception.pth"
            torch.save(sp.extractor.state_dict(), wpath)  # a file we wrote ourselves
        else:
            sp = get_feature_space("inception", weights_path=str(weights))
            wpath = weights
        from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

        tf_ext = create_feature_extractor(
            "inception-v3-compat",
            ["2048", "logits_unbiased"],
            cuda=False,
            verbose=False,
            feature_extractor_weights_path=str(wpath),
        )
        rgb = imgs.expand(-1, 3, -1, -1).contiguous()
        sp.extract(imgs[:8], batch_size=8)  # warm-up
        t_ours_i, fo, t_tf_i, ft = paired_times(
            lambda: sp.extract(imgs, batch_size=32),
            lambda: get_featuresdict_from_dataset(TensorImages(rgb), tf_ext, 32, False, True, False),
            args.repeats,
        )
        same = torch.allclose(fo["features"], ft["2048"], rtol=1e-4, atol=1e-4)
        tag = "" if weights is not None else " [random weights: throughput only]"
        print(f"inception ganforge FeatureSpace: {n / t_ours_i:.1f} img/s{tag}")
        print(
            f"inception torch-fidelity direct: {n / t_tf_i:.1f} img/s{tag} (ratio ganforge/torch-fidelity "
            f"{(n / t_ours_i) / (n / t_tf_i):.2f}; same features: {same})"
        )

    print(
        f"summary: FID@{args.samples} mnist end-to-end {t_ours:.2f} s (target < 10 s: "
        f"{'met' if t_ours < 10 else 'NOT met'}), torch-fidelity {t_tf:.2f} s, sampling {t_gen:.2f} s; "
        f"inception {n / t_ours_i:.1f} vs {n / t_tf_i:.1f} img/s{tag}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
