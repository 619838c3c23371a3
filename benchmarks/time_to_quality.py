"""How fast does the default run get good? Train a preset for N minutes, keep a checkpoint at
every sample snapshot, then score each one with FID in the shipped MNIST classifier's feature
space (after training, so scoring does not eat into the training time).

    python benchmarks/time_to_quality.py                    # the default preset, 5 minutes
    python benchmarks/time_to_quality.py --minutes 10 --preset mnist-mlp --samples 5000

Prints one line per snapshot (elapsed training time, images seen, FID) and a summary. The
reference is the embedded MNIST; the real-vs-real floor at the same sample count is printed
for scale.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="default")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--every", type=int, default=500, help="steps between snapshots")
    ap.add_argument("--samples", type=int, default=2000, help="generated images per FID")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--run", help="score an existing run's checkpoints instead of training")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import ganforge
    from ganforge.api import load_generator
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics import evaluate, get_feature_space
    from ganforge.runs import list_checkpoints, read_json

    if args.run:
        run = Path(args.run)
    else:
        t0 = time.perf_counter()
        run = ganforge.train(preset=args.preset, runs_dir=args.runs_dir, overrides=[
            f"train.minutes={args.minutes}", f"train.sample_every={args.every}", f"train.checkpoint_every={args.every}",
            "train.keep_checkpoints=100000", "eval.every_kimg=0", *args.overrides])
        print(f"trained {run} ({(time.perf_counter() - t0) / 60:.2f} min wall clock with set-up)")
    torch.set_num_threads(2)
    space = get_feature_space("mnist")
    real = load_dataset(DataConfig())
    floor = evaluate(real.images[: args.samples], real, metrics="fid", features="mnist", floor=True,
                     feature_space=space)["floor"]["fid"]
    print(f"reference: embedded MNIST, {len(real)} images; FID floor at {args.samples} samples: {floor:.3f}")
    rows = []
    for folder in list_checkpoints(run):
        meta = read_json(folder / "meta.json")
        g = load_generator(run, checkpoint=str(folder))
        fid = evaluate(g.sample_uint8(args.samples, seed=0), real, metrics="fid", features="mnist",
                       feature_space=space)["fid"]
        rows.append((meta["elapsed_s"], meta["kimg"], meta["step"], fid))
        print(f"t={meta['elapsed_s'] / 60:5.2f} min  step {meta['step']:6d}  {meta['kimg']:7.1f} kimg  "
              f"FID {fid:8.3f}  samples {run / 'samples' / ('step-%08d.png' % meta['step'])}")
    best = min(rows, key=lambda r: r[3])
    first_under = {th: next((r for r in rows if r[3] <= th), None) for th in (20.0, 10.0, 5.0)}
    reach = "; ".join(f"FID<={th:g} at {r[0] / 60:.1f} min" if r else f"FID<={th:g} not reached"
                      for th, r in first_under.items())
    print(f"summary: {args.preset} for {rows[-1][0] / 60:.1f} min, {rows[-1][1]:.0f} kimg: final FID {rows[-1][3]:.2f}, "
          f"best {best[3]:.2f} at {best[0] / 60:.1f} min ({args.samples} samples, floor {floor:.2f}); {reach}")
    (run / "time_to_quality.json").write_text(json.dumps(
        [{"elapsed_s": r[0], "kimg": r[1], "step": r[2], "fid": r[3]} for r in rows], indent=1))


if __name__ == "__main__":
    main()
