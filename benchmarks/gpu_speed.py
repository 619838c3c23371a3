"""Training throughput on a GPU: float32, bfloat16 autocast (train.amp) and torch.compile
(train.compile), against the same configuration on the CPU, measured in the same run.

Each variant builds a ``Trainer`` (no run folder), runs warm-up steps (compilation happens
there), then times ``--steps`` full training steps (D and G updates, EMA) with the device
synchronised before the clock is read.

    python benchmarks/gpu_speed.py [--preset default] [--batch 64 256] [--steps 200] [--cpu-threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch


def measure(overrides, steps: int, warmup: int) -> float:
    from ganforge.tasks import resolve
    from ganforge.tasks.gan.trainer import GanTrainer as Trainer

    tr = Trainer(
        resolve(ARGS.preset, overrides + ["train.progress=false", "train.tensorboard=false"]),
        dry_run=True,
        log=lambda m: print("   ", m),
    )
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        tr.train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        stats = tr.train_step()
    sync()
    dt = time.perf_counter() - t0
    assert all(v == v for v in stats.values()), f"non-finite losses: {stats}"
    return steps * tr.cfg.train.batch_size / dt


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--cpu-threads", type=int, default=1)
    ap.add_argument("--cpu-steps", type=int, default=40)
    ARGS = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py needs a CUDA device (torch.cuda.is_available() is False)")
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}, preset {ARGS.preset}", flush=True)
    for b in ARGS.batch:
        base = [f"train.batch_size={b}"]
        cpu = measure(base + ["train.device=cpu", f"train.threads={ARGS.cpu_threads}"], ARGS.cpu_steps, 5)
        print(f"batch {b:4d}  cpu ({ARGS.cpu_threads} thread)  {cpu:10.0f} img/s", flush=True)
        for name, extra in (
            ("cuda fp32", []),
            ("cuda bf16 amp", ["train.amp=true"]),
            ("cuda compile", ["train.compile=true"]),
            ("cuda compile+amp", ["train.compile=true", "train.amp=true"]),
        ):
            t0 = time.perf_counter()
            v = measure(base + ["train.device=cuda"] + extra, ARGS.steps, ARGS.warmup)
            print(
                f"batch {b:4d}  {name:18s} {v:10.0f} img/s  ({v / cpu:5.1f}x cpu; "
                f"{time.perf_counter() - t0:.0f} s with warm-up)",
                flush=True,
            )


if __name__ == "__main__":
    main()
