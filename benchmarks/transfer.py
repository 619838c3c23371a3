"""Does weight transfer help on a small dataset? A GAN trained on the embedded digits 0-4 only is
fine-tuned on 300 images of the digits 5-9 (``--init-from``, optionally with ``--freeze-d``), against
the same run trained from scratch with the same budget.

    python benchmarks/transfer.py                                  # source 1000 steps, 500 steps on 5-9, seeds 0 1
    python benchmarks/transfer.py --source-steps 2000 --steps 1000 --seeds 0 1 2 --freeze-d 0 1

Budgets are generator steps, so every variant sees the same number of images whatever the machine's
load; the wall time of each run is printed next to it. Every run is the default preset (DCGAN 28x28,
non-saturating loss, Adam 2e-4/0.5, EMA) with in-training evaluation off. Scores: FID in the shipped
MNIST classifier's feature space against the digits 5-9 of the embedded set that the 300 training
images leave out (about 4,600), and class coverage of 5-9 (a digit counts as covered when it gets at
least 10% of its share of the reference; "in 5-9" is the share of samples the classifier puts there).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

TARGET = ["5", "6", "7", "8", "9"]
SOURCE = ["0", "1", "2", "3", "4"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-steps", type=int, default=1000, help="steps of the source run on the digits 0-4")
    ap.add_argument("--steps", type=int, default=500, help="steps of every run on the 300 digits 5-9")
    ap.add_argument("--images", type=int, default=300, help="training images of the digits 5-9")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--freeze-d", type=int, nargs="+", default=[0, 1], help="fine-tune with these freeze_d values")
    ap.add_argument("--samples", type=int, default=5000, help="generated images per score")
    ap.add_argument("--source", help="an existing source run (otherwise one is trained)")
    ap.add_argument("--runs-dir", default="runs/transfer")
    args = ap.parse_args()

    import ganforge
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics import evaluate, get_feature_space

    common = ["train.minutes=null", "eval.every_kimg=0", "train.progress=false", "train.tensorboard=false"]
    target = [f"data.classes=[{','.join(TARGET)}]", f"data.limit={args.images}"]
    clock = time.perf_counter()

    def train(overrides, **kw):
        t0 = time.perf_counter()
        run = ganforge.train(preset="default", overrides=[*common, *overrides], runs_dir=args.runs_dir, **kw)
        return run, time.perf_counter() - t0

    if args.source:
        source, source_s = Path(args.source), 0.0
    else:
        cmd = [f"data.classes=[{','.join(SOURCE)}]", f"train.steps={args.source_steps}"]
        print("$ ganforge train " + " ".join(cmd + common) + f" --runs-dir {args.runs_dir}", flush=True)
        source, source_s = train(cmd)
        print(f"source {source}: {source_s / 60:.1f} min", flush=True)

    torch.set_num_threads(2)
    space = get_feature_space("mnist")
    digits = load_dataset(DataConfig(classes=TARGET))
    reference = digits.images[args.images :]  # the 5-9 digits the training images leave out
    floor = evaluate(
        reference[: len(reference) // 2],
        reference[len(reference) // 2 :],
        metrics="fid",
        features="mnist",
        feature_space=space,
        coverage=False,
    )["fid"]

    def score(run):
        r = evaluate(
            ganforge.load(run),
            reference,
            metrics="fid",
            features="mnist",
            num_samples=args.samples,
            feature_space=space,
        )
        cov = r["coverage"]
        names, hist, real = cov["classes"], cov["histogram"], cov["real_fraction"]
        n = sum(hist)
        covered = [c for c in TARGET if hist[names.index(c)] >= max(1, 0.1 * real[names.index(c)] * n)]
        inside = sum(hist[names.index(c)] for c in TARGET) / n
        return r["fid"], covered, inside

    rows = [("source (0-4), no training on 5-9", "-", args.source_steps, *score(source), source_s, source)]
    for seed in args.seeds:
        variants = [("from scratch", {})] + [
            (f"fine-tuned{f', freeze_d={k}' if k else ''}", {"init_from": source, "freeze_d": k}) for k in args.freeze_d
        ]
        for name, kw in variants:
            ov = [*target, f"train.steps={args.steps}", f"train.seed={seed}"]
            flags = (f" --init-from {source}" if kw else "") + (
                f" --freeze-d {kw['freeze_d']}" if kw.get("freeze_d") else ""
            )
            print("$ ganforge train " + " ".join(ov + common) + f" --runs-dir {args.runs_dir}{flags}", flush=True)
            run, secs = train(ov, **kw)
            rows.append((name, seed, args.steps, *score(run), secs, run))
            print(
                f"  {name}, seed {seed}: FID {rows[-1][3]:.2f}, {len(rows[-1][4])}/5 covered, "
                f"{100 * rows[-1][5]:.0f}% in 5-9, {secs / 60:.1f} min",
                flush=True,
            )

    print(
        f"\nreference: {len(reference)} held-out digits 5-9 of the embedded MNIST; FID between its halves "
        f"(floor): {floor:.2f}; {args.samples} samples per score; {args.images} training images of 5-9"
    )
    print("| run | seed | steps | FID (mnist) | 5-9 covered | samples in 5-9 | wall time (min) |")
    print("|---|---|---|---|---|---|---|")
    for name, seed, steps, fid, covered, inside, secs, run in rows:
        print(
            f"| {name} | {seed} | {steps} | {fid:.2f} | {len(covered)}/5 ({''.join(covered)}) | {100 * inside:.0f}% | "
            f"{secs / 60:.1f} |"
        )
    print(f"total {(time.perf_counter() - clock) / 60:.1f} min")


if __name__ == "__main__":
    main()
