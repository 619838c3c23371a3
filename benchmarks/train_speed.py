"""Training throughput of ganforge against the textbook loop, measured in the same run.

Both train the SAME DCGAN networks (built by ganforge's registry) on the embedded MNIST
resized to 32x32 with batch 64 and the non-saturating loss:

* baseline: the pytorch/examples way: torchvision ``datasets.MNIST`` with per-sample
  ``Resize/ToTensor/Normalize`` through a ``DataLoader``; D called separately on the real
  and the fake batch; the G step back-propagates into D's parameters too.
* ganforge: ``Trainer.train_step`` (uint8 tensor in memory, whole-batch normalisation,
  D's parameters frozen during the G step).

It also measures the machine's fp32 matmul peak and reports the fraction of it that one
training step reaches (FLOPs counted by ``torch.utils.flop_counter``).

On a CPU with native bfloat16 (AVX512-BF16 or AMX) it also measures ganforge with
``train.amp=true`` (bfloat16 autocast; opt-in, so reported on its own line).

    python benchmarks/train_speed.py [--size 32] [--width 32] [--steps 60] [--threads 2] [--repeats 3] [--no-amp]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F


def matmul_peak_gflops(n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * reps / best / 1e9


def torchvision_mnist_root(tmp: Path) -> Path:
    """Lay the packaged MNIST test split out the way torchvision expects (MNIST/raw)."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        src = resources.files("ganforge") / "assets" / "mnist" / f"{name}.gz"
        with src.open("rb") as f, gzip.open(f) as g, open(raw / name, "wb") as out:
            shutil.copyfileobj(g, out)
        # torchvision checks that the train files exist too; the baseline reads the test split (train=False)
        shutil.copyfile(raw / name, raw / name.replace("t10k", "train"))
    return tmp


def build(size: int, width: int):
    from ganforge.tasks import resolve
    from ganforge.tasks.gan.networks import build_models

    cfg = resolve(None, [f"data.size={size}", f"model.g_width={width}", f"model.d_width={width}", "model.z_dim=100"])
    torch.manual_seed(0)
    g, d = build_models(cfg.model, (1, size, size))
    return cfg, g, d


def baseline_images_per_s(root: Path, size: int, width: int, steps: int, workers: int) -> float:
    import torchvision.datasets as dset
    import torchvision.transforms as T

    _, g, d = build(size, width)
    ds = dset.MNIST(
        str(root),
        train=False,
        download=False,
        transform=T.Compose([T.Resize(size), T.ToTensor(), T.Normalize((0.5,), (0.5,))]),
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, shuffle=True, num_workers=workers, drop_last=True, persistent_workers=workers > 0
    )
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ones, zeros = torch.ones(64), torch.zeros(64)
    done, t0, warm = 0, None, 5
    while done < steps + warm:
        for real, _ in loader:
            if done == warm:
                t0 = time.perf_counter()
            d.zero_grad()
            F.binary_cross_entropy_with_logits(d(real), ones).backward()
            fake = g(torch.randn(64, 100))
            F.binary_cross_entropy_with_logits(d(fake.detach()), zeros).backward()
            opt_d.step()
            g.zero_grad()
            F.binary_cross_entropy_with_logits(d(fake), ones).backward()
            opt_g.step()
            done += 1
            if done >= steps + warm:
                break
    return steps * 64 / (time.perf_counter() - t0)


def ganforge_trainer(size: int, width: int, extra=()):
    from ganforge.tasks import resolve
    from ganforge.tasks.gan.trainer import GanTrainer as Trainer

    cfg = resolve(
        None,
        [
            f"data.size={size}",
            f"model.g_width={width}",
            f"model.d_width={width}",
            "model.z_dim=100",
            "train.batch_size=64",
            "train.steps=1",
            f"train.threads={torch.get_num_threads()}",
            *extra,
        ],
    )
    return Trainer(cfg, dry_run=True, log=lambda m: None)


def ganforge_images_per_s(size: int, width: int, steps: int, extra=()) -> float:
    tr = ganforge_trainer(size, width, extra)
    for _ in range(5):
        tr.train_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    return steps * 64 / (time.perf_counter() - t0)


def step_gflop(size: int, width: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    tr = ganforge_trainer(size, width)
    with FlopCounterMode(display=False) as fc:
        tr.train_step()
    return fc.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers for the baseline")
    ap.add_argument("--no-amp", action="store_true", help="skip the bfloat16 autocast line (train.amp=true)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"DCGAN {args.size}x{args.size} width {args.width}, batch 64"
    )
    peak = matmul_peak_gflops()
    print(f"matmul peak (fp32, 1024^3): {peak:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_mnist_root(Path(tmp))
        base = {w: [] for w in args.workers}
        ours, ours_amp = [], []
        from ganforge.training.parts import cpu_bf16_supported

        amp = not args.no_amp and cpu_bf16_supported()
        if not amp:
            print(
                "  (no bfloat16 line: "
                + ("--no-amp" if args.no_amp else "this CPU has no native bfloat16 support")
                + ")"
            )
        for r in range(args.repeats):  # interleave so machine noise hits both alike
            for w in args.workers:
                base[w].append(baseline_images_per_s(root, args.size, args.width, args.steps, w))
                print(f"  repeat {r}: baseline (workers={w}) {base[w][-1]:.0f} img/s")
            ours.append(ganforge_images_per_s(args.size, args.width, args.steps))
            print(f"  repeat {r}: ganforge {ours[-1]:.0f} img/s")
            if amp:
                ours_amp.append(ganforge_images_per_s(args.size, args.width, args.steps, ["train.amp=true"]))
                print(f"  repeat {r}: ganforge train.amp=true (bfloat16 autocast) {ours_amp[-1]:.0f} img/s")
    best_w = max(base, key=lambda w: statistics.median(base[w]))
    b, o = statistics.median(base[best_w]), statistics.median(ours)
    gflop = step_gflop(args.size, args.width)
    achieved = gflop * o / 64
    print(f"baseline (textbook, DataLoader workers={best_w}, median of {args.repeats}): {b:.0f} img/s")
    print(f"ganforge (median of {args.repeats}): {o:.0f} img/s")
    print(f"speed-up: {o / b:.2f}x")
    print(
        f"step FLOPs: {gflop:.3f} GFLOP per batch of 64 -> {achieved:.1f} GFLOP/s = "
        f"{100 * achieved / peak:.0f}% of matmul peak"
    )
    line = f"summary: ganforge {o:.0f} img/s vs baseline {b:.0f} img/s = {o / b:.2f}x (float32)"
    if ours_amp:
        a = statistics.median(ours_amp)
        print(f"ganforge train.amp=true (bfloat16 autocast, median of {args.repeats}): {a:.0f} img/s = {a / b:.2f}x")
        line += f"; with train.amp=true {a:.0f} img/s = {a / b:.2f}x"
    print(line + f"; float32 step at {100 * achieved / peak:.0f}% of {peak:.0f} GFLOP/s peak")


if __name__ == "__main__":
    main()
