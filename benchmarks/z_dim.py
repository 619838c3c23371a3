"""Which z dimension? FID of the default preset with z of 16, 64 and 128 at a fixed number of images.

    python benchmarks/z_dim.py                                   # z 16, 64, 128; 150 kimg; seed 0
    python benchmarks/z_dim.py --z 16 64 128 --kimg 150 --seeds 0 1 --runs-dir runs/z_dim

Each run is the default preset with only ``model.z_dim`` changed, trained for a fixed number of
images (``train.kimg``; wall-clock budgets are not comparable on a machine running other jobs), then
scored with ``ganforge eval RUN --features mnist`` (10,000 samples of the EMA generator against the
embedded MNIST). The script runs exactly the printed commands and prints one table row per run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time


def sh(cmd: list) -> str:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--z", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--kimg", type=float, default=150.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--runs-dir", default="runs/z_dim")
    args = ap.parse_args()

    rows = []
    for seed in args.seeds:
        for z in args.z:
            t0 = time.perf_counter()
            run = (
                sh(
                    [
                        "ganforge",
                        "train",
                        f"model.z_dim={z}",
                        f"train.kimg={args.kimg:g}",
                        "train.minutes=null",
                        f"train.seed={seed}",
                        "train.progress=false",
                        "--runs-dir",
                        args.runs_dir,
                    ]
                )
                .strip()
                .splitlines()[-1]
            )
            minutes = (time.perf_counter() - t0) / 60
            r = json.loads(sh(["ganforge", "eval", run, "--features", "mnist", "--json"]))
            cov = r.get("coverage") or {}
            rows.append((z, seed, r["fid"], cov.get("classes_covered"), minutes, run))
            print(
                f"z={z} seed={seed}: FID {r['fid']:.2f}, {cov.get('classes_covered')}/10 classes, "
                f"{minutes:.1f} min wall clock (training), {run}",
                flush=True,
            )
    print("\n| z_dim | seed | FID (mnist features, 10,000 samples) | classes covered | wall time (min) | run |")
    print("|---|---|---|---|---|---|")
    for z, seed, fid, cov, minutes, run in rows:
        print(f"| {z} | {seed} | {fid:.2f} | {cov}/10 | {minutes:.1f} | {run} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
