"""Does a conditional GAN draw the class it is asked for? Accuracy of the shipped MNIST
classifier on generated samples of each requested class, classes covered, and FID in the
classifier's feature space next to its real-vs-real floor.

    python benchmarks/conditional_quality.py                      # trains `mnist-cond` for 10 minutes first
    python benchmarks/conditional_quality.py --minutes 5 model.d_norm=spectral
    python benchmarks/conditional_quality.py --run runs/00007-mnist-dcgan

The reference for FID is the embedded MNIST (the data the model trained on) and the floor is
FID between two disjoint halves of it at the same sample count. For comparison the script also
prints the classifier's accuracy on the real images of its held-out split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="an existing conditional run (otherwise one is trained)")
    ap.add_argument("--preset", default="mnist-cond")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--per-class", type=int, default=500, help="samples per class (FID uses all of them)")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import ganforge
    from ganforge.api import load_generator
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics import evaluate, get_feature_space

    if args.run:
        run = Path(args.run)
    else:
        t0 = time.perf_counter()
        run = ganforge.train(
            preset=args.preset, overrides=[f"train.minutes={args.minutes}", *args.overrides], runs_dir=args.runs_dir
        )
        print(f"trained {run} in {(time.perf_counter() - t0) / 60:.1f} min (wall clock, including set-up)")
    torch.set_num_threads(2)
    g = load_generator(run)
    if not g.num_classes:
        raise SystemExit(f"{run} is not a conditional run")
    meta = json.loads((g.checkpoint_path / "meta.json").read_text())
    print(
        f"checkpoint {g.checkpoint_path} (step {g.step}, {g.kimg:.0f} kimg, "
        f"{meta['elapsed_s'] / 60:.1f} min of training)"
    )

    space = get_feature_space("mnist")
    labels = torch.arange(g.num_classes).repeat_interleave(args.per_class)
    fake = g.sample_uint8(len(labels), seed=123, labels=labels)
    pred = space.extract(fake)["logits"].argmax(1)
    per_class = [(pred[labels == c] == c).float().mean().item() for c in range(g.num_classes)]
    acc = (pred == labels).float().mean().item()
    for c, a in enumerate(per_class):
        print(f"class {g.class_names[c]}: classifier accuracy on generated samples {100 * a:.1f}%")
    covered = len(set(pred.tolist()))
    print(
        f"accuracy on requested class: {100 * acc:.2f}% ({len(labels)} samples); "
        f"classes covered {covered}/{g.num_classes}"
    )

    real = load_dataset(DataConfig())
    r = evaluate(fake, real, metrics="fid", features="mnist", floor=True, seed=0)
    floor_v = (r.get("floor") or {}).get("fid")
    print(
        f"FID (mnist features, {len(fake)} generated vs {r['provenance']['num_real']} real): {r['fid']:.3f}; "
        f"real-vs-real floor {floor_v if floor_v is None else round(floor_v, 3)}"
    )

    rec = json.loads((Path(__file__).resolve().parents[1] / "src/ganforge/assets/mnist_classifier.json").read_text())
    held = rec["held_out_accuracy"]
    print(
        f"summary: requested-class accuracy {100 * acc:.2f}% (classifier held-out accuracy on real digits "
        f"{held}), {covered}/{g.num_classes} classes, FID {r['fid']:.2f} (floor {floor_v}), "
        f"{meta['elapsed_s'] / 60:.1f} min training"
    )


if __name__ == "__main__":
    main()
