"""An unstable configuration trained twice, without and with the collapse watchdog.

The configuration is the default DCGAN trained with the original paper's saturating minimax
loss (G minimises log(1 - D(G(z)))) and a discriminator that learns 50x faster than its
generator (Adam lr 1e-2 for D, 2e-4 for G): D wins within a few dozen steps, D(G(z)) goes to 0
and, the loss being saturated, G never gets a gradient again. (With the non-saturating loss the
default network recovers by itself even at D lr 5e-2, so that is not a useful test here.)
Both runs get the same seed and the same budget.

    python benchmarks/watchdog_recovery.py                  # 3 minutes each
    python benchmarks/watchdog_recovery.py --minutes 5 d_optim.lr=5e-2

Prints, for each run: the watchdog's events, the final D(x) and D(G(z)), FID of 2,000 samples in
the shipped MNIST classifier's feature space, the classifier's mean confidence on the samples,
and the sample grid's path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

UNSTABLE = ["loss.name=minimax", "d_optim.lr=1e-2", "eval.every_kimg=0"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import ganforge
    from ganforge.api import load_generator
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.errors import TrainingError
    from ganforge.metrics import evaluate, get_feature_space

    space = get_feature_space("mnist")
    real = load_dataset(DataConfig())
    summary = []
    for label, extra in (("watchdog off", ["watchdog.enabled=false"]), ("watchdog on (rollback)", [])):
        overrides = UNSTABLE + [f"train.minutes={args.minutes}", *args.overrides, *extra]
        try:
            run = ganforge.train(preset=args.preset, overrides=overrides, runs_dir=args.runs_dir)
        except TrainingError as e:  # the watchdog gave up: report it, score the last checkpoint
            print(f"{label}: {e}")
            run = sorted(Path(args.runs_dir).iterdir())[-1]
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        for r in recs:
            if "event" in r:
                print(f"{label}: step {r['step']}: {r['event']}: {r['message'][:150]}")
        last = [r for r in recs if "loss_d" in r][-1]
        torch.set_num_threads(2)
        fake = load_generator(run).sample_uint8(2000, seed=0)
        out = space.extract(fake)
        conf = torch.softmax(out["logits"], 1).max(1).values.mean().item()
        fid = evaluate(fake, real, metrics="fid", features="mnist", feature_space=space)["fid"]
        n_rb = sum(1 for r in recs if r.get("event") == "rollback")
        print(
            f"{label}: step {last['step']}, D(x) {last['d_real']:.3f}, D(G(z)) {last['d_fake']:.4f}, FID {fid:.2f}, "
            f"classifier confidence {conf:.3f}, rollbacks {n_rb}, grid {run / 'samples' / 'latest.png'}"
        )
        summary.append(f"{label}: FID {fid:.1f}, D(G(z)) {last['d_fake']:.3f}")
    print("summary: " + "; ".join(summary))


if __name__ == "__main__":
    main()
