"""Training throughput with several processes (the torchrun path: one process per core or GPU,
gradients averaged before every optimiser step), against one process, measured in the same run.

Each variant starts its processes with ``torch.multiprocessing`` (the environment torchrun would give
them: RANK, WORLD_SIZE, MASTER_ADDR/PORT), builds the GAN trainer (no run folder), runs warm-up steps,
then times ``--steps`` full training steps plus the loop's one small per-step ``all_reduce`` (statistics
and stop flags); images/s counts the images of all processes (``train.batch_size`` is per process).

- CPU (gloo): the 32x32 DCGAN of benchmarks/train_speed.py on the embedded MNIST, batch 64 per process:
  1 process x 1 thread, 1 process x N threads (the other way to use N cores), N processes x 1 thread.
- GPU (NCCL; only when CUDA is available): a 64x64 colour ResNet GAN (g_width = d_width = 128), bfloat16
  autocast (train.amp) and channels_last, 1 GPU against every GPU present, at ``--gpu-batch`` per GPU;
  prints the GPU's name, absolute images/s and the scaling efficiency (images/s of N / (N x images/s of 1)).

    python benchmarks/distributed_speed.py [--procs 2] [--steps 40] [--warmup 5] [--repeats 3]
                                            [--gpu-batch 128] [--gpu-steps 100] [--no-gpu]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time

import torch
import torch.multiprocessing as mp

CPU_CFG = [
    "model.arch=dcgan",
    "data.size=32",
    "model.g_width=32",
    "model.d_width=32",
    "train.batch_size=64",
    "eval.every_kimg=0",
    "watchdog.enabled=false",
]
GPU_CFG = [
    "model.arch=resnet",
    "model.g_width=128",
    "model.d_width=128",
    "eval.every_kimg=0",
    "watchdog.enabled=false",
    "train.amp=true",
    "train.device=cuda",
    "data.hflip=false",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def colour_data(n: int = 2048, size: int = 64):
    """Random colour images in memory (throughput does not depend on their content)."""
    from ganforge.data.base import ImageData

    g = torch.Generator().manual_seed(0)
    return ImageData(
        torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), None, [], "random-colour", "memory"
    )


def _worker(
    rank: int, world: int, port: int, overrides, threads: int, steps: int, warmup: int, gpu: bool, out_dir: str
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(threads)
    from ganforge.tasks import resolve
    from ganforge.tasks.gan.trainer import GanTrainer
    from ganforge.training import distributed

    cfg = resolve(None, list(overrides) + ["train.progress=false", "train.tensorboard=false"])
    tr = GanTrainer(cfg, dry_run=True, data=colour_data() if gpu else None, log=lambda m: None)
    if gpu:  # channels_last on the GPU too (the gan task uses it on the CPU only)
        tr.memory_format = torch.channels_last
        for net in tr.nets.values():
            net.to(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)

    def step():
        stats = tr.train_step()
        distributed.all_sum(list(stats.values()) + [0.0, 0.0, 0.0])  # the loop's per-step _sync
        return stats

    for _ in range(warmup):
        step()
    sync()
    distributed.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        stats = step()
    sync()
    distributed.barrier()
    dt = time.perf_counter() - t0
    assert all(v == v for v in stats.values()), f"non-finite losses: {stats}"
    if rank == 0:
        ips = steps * cfg.train.batch_size * max(world, 1) / dt
        with open(os.path.join(out_dir, "ips.txt"), "w") as f:
            f.write(str(ips))
    tr.close()


def measure(world: int, overrides, threads: int, steps: int, warmup: int, gpu: bool = False) -> float:
    """Images/s (all processes) of ``world`` processes, each with ``threads`` threads."""
    with tempfile.TemporaryDirectory() as d:
        args = (world, free_port(), overrides, threads, steps, warmup, gpu, d)
        mp.start_processes(_worker, args=args, nprocs=world, start_method="spawn")  # 1: WORLD_SIZE=1, no group
        with open(os.path.join(d, "ips.txt")) as f:
            return float(f.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=2, help="CPU processes (one thread each)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gpu-batch", type=int, default=128, help="batch per GPU")
    ap.add_argument("--gpu-steps", type=int, default=100)
    ap.add_argument("--no-gpu", action="store_true")
    a = ap.parse_args()
    n = a.procs
    print(
        f"# torch {torch.__version__}; CPU: {os.cpu_count()} cores visible; the 32x32 DCGAN (width 32), batch 64 "
        f"per process; median of {a.repeats}",
        flush=True,
    )
    rows = {"1 process x 1 thread": [], f"1 process x {n} threads": [], f"{n} processes x 1 thread": []}
    for _ in range(a.repeats):  # interleaved, so a load change on a shared machine hits all variants alike
        rows["1 process x 1 thread"].append(measure(1, CPU_CFG, 1, a.steps, a.warmup))
        rows[f"1 process x {n} threads"].append(measure(1, CPU_CFG, n, a.steps, a.warmup))
        rows[f"{n} processes x 1 thread"].append(measure(n, CPU_CFG, 1, a.steps, a.warmup))
    med = {k: statistics.median(v) for k, v in rows.items()}
    base = med["1 process x 1 thread"]
    for k, v in med.items():
        print(
            f"cpu  {k:24s} {v:8.0f} img/s  ({v / base:4.2f}x 1 process; runs: "
            f"{', '.join(f'{x:.0f}' for x in rows[k])})",
            flush=True,
        )
    summary = (
        f"summary: cpu {n} processes {med[f'{n} processes x 1 thread'] / base:.2f}x one process "
        f"(scaling efficiency {med[f'{n} processes x 1 thread'] / (n * base):.0%}), "
        f"{n} threads in one process {med[f'1 process x {n} threads'] / base:.2f}x"
    )
    if a.no_gpu or not torch.cuda.is_available():
        print("gpu  not measured: " + ("--no-gpu" if a.no_gpu else "no CUDA device on this machine"), flush=True)
    else:
        g = torch.cuda.device_count()
        cfg = GPU_CFG + [f"train.batch_size={a.gpu_batch}"]
        print(
            f"# GPU: {g} x {torch.cuda.get_device_name(0)}; 64x64 colour ResNet GAN (width 128), bf16 autocast, "
            f"channels_last, batch {a.gpu_batch} per GPU",
            flush=True,
        )
        one = measure(1, cfg, 1, a.gpu_steps, 20, gpu=True)
        print(f"gpu  1 GPU   {one:10.0f} img/s", flush=True)
        summary += f"; gpu 1: {one:.0f} img/s"
        if g > 1:
            many = measure(g, cfg, 1, a.gpu_steps, 20, gpu=True)
            print(f"gpu  {g} GPUs  {many:10.0f} img/s  (scaling efficiency {many / (g * one):.0%})", flush=True)
            summary += f", {g}: {many:.0f} img/s ({many / (g * one):.0%} efficiency)"
    print(summary, flush=True)


if __name__ == "__main__":
    main()
