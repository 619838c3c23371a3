#!/usr/bin/env python
"""Export: how long it takes, how close the exported networks are, how fast they run (CPU, one thread).

    .venv/bin/python benchmarks/export_speed.py [--run RUN_DIR] [--batch 64] [--repeats 15]

Without ``--run`` it trains the ``default`` preset (class-conditional 28x28 DCGAN, z 16) for 20 steps
(the weights' quality does not matter here) in a temporary folder. Figures, one line each, then a summary:

1. CPU seconds to export the generator to ONNX and torch.export together (``ganforge.export``).
2. Max abs difference to eager PyTorch on a batch: onnxruntime and the reloaded ``.pt2`` program.
3. Milliseconds per batch (median of ``--repeats``, timed in turn so machine noise hits all alike):
   eager PyTorch (the baseline), the ``.pt2`` program, onnxruntime.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a GAN run folder (default: a 20-step run of the default preset)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort

    import ganforge
    from ganforge.export import export_run

    tmp = Path(tempfile.mkdtemp(prefix="ganforge-export-bench-"))
    run = args.run or ganforge.train(
        preset="default",
        runs_dir=tmp / "runs",
        overrides=["train.steps=20", "train.minutes=null", "train.progress=false", "train.tensorboard=false"],
    )
    c0 = time.process_time()
    manifest = export_run(run, "onnx,torch-export", tmp / "out")
    export_cpu = time.process_time() - c0
    print(f"export to onnx + torch-export: {export_cpu:.1f} s CPU")

    h = ganforge.load(run)
    files = manifest["networks"]["generator"]["files"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(tmp / "out" / files["onnx"]), so, providers=["CPUExecutionProvider"])
    program = torch.export.load(str(tmp / "out" / files["torch-export"])).module()
    z = h.noise(args.batch, 0)
    inputs = (z,) if not h.num_classes else (z, torch.arange(args.batch) % h.num_classes)
    feeds = {name: x.numpy() for name, x in zip(("z", "label"), inputs)}
    with torch.no_grad():
        ref = h.module(*inputs)
        d_onnx = float(np.abs(session.run(None, feeds)[0] - ref.numpy()).max())
        d_pt2 = float((program(*inputs) - ref).abs().max())
    print(f"max abs diff to PyTorch (batch {args.batch}): onnxruntime {d_onnx:.1e}, torch.export program {d_pt2:.1e}")

    runs = {
        "eager PyTorch (baseline)": lambda: h.module(*inputs),
        "torch.export program": lambda: program(*inputs),
        "onnxruntime": lambda: session.run(None, feeds),
    }
    times = {k: [] for k in runs}
    with torch.no_grad():
        for f in runs.values():  # warm up
            f()
        for _ in range(args.repeats):
            for k, f in runs.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for k, v in med.items():
        print(f"batch {args.batch}, 1 thread, median of {args.repeats}: {k} {v:.1f} ms")
    base = med["eager PyTorch (baseline)"]
    print(
        f"summary: export {export_cpu:.1f} s CPU; max diff {max(d_onnx, d_pt2):.1e}; onnxruntime "
        f"{base / med['onnxruntime']:.2f}x and the .pt2 program {base / med['torch.export program']:.2f}x the speed "
        f"of eager PyTorch"
    )


if __name__ == "__main__":
    main()
