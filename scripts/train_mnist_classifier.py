#!/usr/bin/env python
"""Train the MNIST classifier that ganforge ships as its offline domain feature extractor.

    .venv/bin/python scripts/train_mnist_classifier.py            # writes src/ganforge/assets/mnist_classifier.*

Data: the embedded MNIST (the 10,000-image MNIST test split), through ``ganforge.data.load_dataset``
when it is available, else straight from the IDX files (``--idx-dir``). A fixed, seeded split holds
out 2,000 images that are never trained on and never used to pick anything; the accuracy on them is
reported once, at the end, and written to ``mnist_classifier.json`` beside the weights.

Training: AdamW + one-cycle schedule, light augmentation (random rotation, scale, shear and shifts
applied per sample with ``affine_grid``), 2 CPU threads. A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ganforge.metrics.mnist_classifier import FEATURE_DIM, RESIZE_METHOD, MnistClassifier, to_classifier_input  # noqa: E402


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dtype_code, ndim = data[2], data[3]
    assert dtype_code == 0x08, f"{path}: only uint8 IDX files are supported"
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_data(idx_dir: Path):
    """(images uint8 [N,1,28,28], labels int64 [N], source description)."""
    try:
        from ganforge.config import DataConfig
        from ganforge.data import load_dataset

        ds = load_dataset(DataConfig())
        if ds.labels is not None and tuple(ds.images.shape[1:]) == (1, 28, 28):
            return ds.images.contiguous(), ds.labels.long(), "ganforge.data.load_dataset(DataConfig()) (embedded MNIST)"
    except Exception as e:  # the data module may not be ready; the IDX files hold the same images
        print(f"[data] ganforge.data unavailable ({type(e).__name__}: {e}); reading IDX files", file=sys.stderr)
    images = read_idx(idx_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(idx_dir / "t10k-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # [N, 1, 28, 28]
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y, f"IDX files {idx_dir}/t10k-*-ubyte.gz"


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random affine per sample on normalised [N,1,28,28]: rotation +-12 deg, scale 0.85-1.15,
    shear +-0.15, shift +-3 px. Background is the normalised value of black."""
    n = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)  # noqa: E731
    ang = u(-12, 12) * math.pi / 180
    sc = u(0.85, 1.15)
    sh = u(-0.15, 0.15)
    tx, ty = u(-3, 3) * 2 / 28, u(-3, 3) * 2 / 28
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack(
        [torch.stack([cos, -sin + sh * cos, tx], 1), torch.stack([sin, cos + sh * sin, ty], 1)], 1
    )  # [N, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    bg = (0.0 - 0.1307) / 0.3081
    return F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg


@torch.no_grad()
def accuracy(model, x, y, bs=1000):
    model.eval()
    correct = 0
    for i in range(0, len(x), bs):
        _, logits = model(x[i : i + bs])
        correct += (logits.argmax(1) == y[i : i + bs]).sum().item()
    return correct / len(x), len(x) - correct


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--idx-dir", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    p.add_argument("--out-dir", type=Path, default=REPO / "src" / "ganforge" / "assets")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the init and the augmentation")
    p.add_argument("--held-out", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()

    images, labels, source = load_data(args.idx_dir)
    data_sha = hashlib.sha256(images.numpy().tobytes()).hexdigest()
    n = len(images)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    train_idx, held_idx = perm[: n - args.held_out], perm[n - args.held_out :]
    x_all = to_classifier_input(images)  # [N, 1, 28, 28]
    x_tr, y_tr = x_all[train_idx], labels[train_idx]
    x_ho, y_ho = x_all[held_idx], labels[held_idx]
    print(f"[data] {source}: {n} images; train {len(x_tr)}, held out {len(x_ho)} (seed {args.seed})")

    model = MnistClassifier(width=args.width, feature_dim=FEATURE_DIM)
    steps_per_epoch = math.ceil(len(x_tr) / args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.2
    )
    g = torch.Generator().manual_seed(args.seed + 1)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_tr), generator=g)
        tot, seen = 0.0, 0
        for i in range(0, len(x_tr), args.batch_size):
            idx = order[i : i + args.batch_size]
            xb, yb = augment(x_tr[idx], g), y_tr[idx]
            _, logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            seen += len(idx)
        tr_acc, _ = accuracy(model, x_tr, y_tr)
        print(
            f"[train] epoch {epoch + 1:3d}/{args.epochs}  loss {tot / seen:.4f}  train acc {tr_acc:.4f}  "
            f"{time.time() - t0:.0f}s",
            flush=True,
        )

    model.eval()
    shipped = model.fused()  # what the metrics run: BatchNorm folded into the layers
    held_acc, held_err = accuracy(shipped, x_ho, y_ho)
    train_acc, _ = accuracy(shipped, x_tr, y_tr)
    with torch.no_grad():
        feats, _ = shipped(x_ho)
    dead = int((feats.max(0).values <= 0).sum())

    from safetensors.torch import save

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    raw = save(state, metadata={"format": "pt", "arch": "ganforge.metrics.mnist_classifier.MnistClassifier"})
    args.out_dir.mkdir(parents=True, exist_ok=True)
    wpath = args.out_dir / "mnist_classifier.safetensors"
    wpath.write_bytes(raw)
    meta = {
        "arch": f"MnistClassifier(width={args.width}, feature_dim={FEATURE_DIM}, num_classes=10)",
        "features": {"128": "penultimate layer after ReLU (FID/KID/PR)", "logits": "10 class logits (IS, coverage)"},
        "preprocessing": RESIZE_METHOD + ", /255, normalised with mean 0.1307 std 0.3081",
        "held_out_accuracy": round(held_acc, 6),
        "held_out_errors": held_err,
        "train_accuracy": round(train_acc, 6),
        "dead_feature_units_on_held_out": dead,
        "split": {
            "train": len(x_tr),
            "held_out": len(x_ho),
            "seed": args.seed,
            "method": "torch.randperm(N, generator=manual_seed(seed)): first N-held_out train, rest held out",
        },
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "augmentation": "per-sample affine: rotation +-12 deg, scale 0.85-1.15, shear +-0.15, shift +-3 px",
        "data": {"source": "embedded MNIST (MNIST test split, 10,000 digits)", "images_sha256": data_sha},
        "sha256": hashlib.sha256(raw).hexdigest(),
        "size_bytes": len(raw),
        "torch": torch.__version__,
        "threads": args.threads,
        "train_seconds": round(time.time() - t0, 1),
        "command": "python scripts/train_mnist_classifier.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (args.out_dir / "mnist_classifier.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"[result] held-out accuracy {held_acc:.4f} ({held_err} errors of {len(x_ho)}); train {train_acc:.4f}; "
        f"dead feature units {dead}; weights {len(raw) / 1e6:.2f} MB sha256 {meta['sha256'][:16]}...; "
        f"{meta['train_seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
