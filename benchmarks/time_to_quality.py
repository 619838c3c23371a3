"""Time to quality: which recipe draws the best digits after N minutes of wall-clock training?

Trains each recipe with each seed for ``--minutes`` of wall-clock time (the budget counts
everything the run does: steps, snapshots, checkpoints, in-training evaluation), keeps a
checkpoint at every ``--points`` minute mark, then scores every checkpoint after training (so
scoring does not eat into the training time): FID of ``--samples`` EMA samples against the
embedded MNIST in the shipped classifier's feature space, and how many of the 10 classes the
classifier finds among them (a class counts when it holds at least a fifth of its real share), with the
smallest and largest share of one class.

    python benchmarks/time_to_quality.py                                  # default recipe, seeds 1 2, 5 minutes
    python benchmarks/time_to_quality.py --recipes old-default,default --seeds 1,2 --minutes 5
    python benchmarks/time_to_quality.py --recipes default,unconditional,unlabelled --seeds 1,2   # issue 31
    python benchmarks/time_to_quality.py --recipes default --seeds 1 --minutes 20 --points 5,10,20
    python benchmarks/time_to_quality.py --recipe mine=default:model.z_dim=32,train.batch_size=128
    python benchmarks/time_to_quality.py --table results.jsonl            # re-print a saved table
    python benchmarks/time_to_quality.py --list                           # the built-in recipes

Every scored point is appended to ``--out`` (JSON lines), so a study can be run in several
invocations (one recipe at a time on a quiet machine) and tabulated at the end with ``--table``.
The table gives each recipe's FID per seed and the median at every point, and the summary line
names the recipe with the best median at the last point. Watchdog events (a sign of trouble) are
counted per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

# name -> (what it is, preset, overrides)
RECIPES: Dict[str, Tuple[str, str, Sequence[str]]] = {
    "default": ("the `default` preset as shipped", "default", ()),
    "old-default": (
        "the default before issue 11: 28x28 DCGAN, widths 32, z 64, non-saturating, batch 64, EMA 0.995, 1 thread",
        "default",
        (
            "model.conditional=false",
            "model.pad=0",
            "model.z_dim=64",
            "model.g_width=32",
            "model.d_width=32",
            "model.d_norm=batch",
            "loss.name=non-saturating",
            "g_optim.lr=0.0002",
            "d_optim.lr=0.0002",
            "g_optim.beta1=0.5",
            "d_optim.beta1=0.5",
            "g_optim.beta2=0.999",
            "d_optim.beta2=0.999",
            "train.batch_size=64",
            "train.ema_decay=0.995",
            "train.threads=1",
        ),
    ),
    # issue 31: unlabelled digits. The first is what unlabelled data trained before; the others hide the labels
    # (data.labels=false) and let model.conditional=auto train on clusters of the images as classes
    "unconditional": (
        "the `default` preset without labels: model.conditional=false (unlabelled data before issue 31)",
        "default",
        ("model.conditional=false",),
    ),
    "unlabelled": (
        "the `default` preset on the digits with their labels hidden: 20 clusters of the shipped classifier's features",
        "default",
        ("data.labels=false",),
    ),
    "unlabelled-d": (
        "labels hidden, 20 clusters of the discriminator's features, re-clustered every 1000 steps (Liu et al. 2020)",
        "default",
        ("data.labels=false", "model.cluster_features=discriminator"),
    ),
}


def parse_recipe(text: str) -> Tuple[str, Tuple[str, str, Sequence[str]]]:
    """``name=preset:key=value,key=value`` -> (name, (description, preset, overrides))."""
    name, _, rest = text.partition("=")
    preset, _, ov = rest.partition(":")
    if not name or not preset:
        raise SystemExit(f"--recipe {text!r}: expected NAME=PRESET[:key=value,key=value]")
    overrides = tuple(o for o in ov.split(",") if o)
    return name, (f"{preset} with {' '.join(overrides) or 'no overrides'}", preset, overrides)


def train_one(name: str, recipe, seed: int, minutes: float, points: List[float], runs_dir: str) -> Path:
    import ganforge

    _, preset, overrides = recipe
    step_min = min(b - a for a, b in zip([0.0] + points, points))  # a checkpoint at least this often
    return ganforge.train(
        preset=preset,
        runs_dir=runs_dir,
        overrides=[
            *overrides,
            f"name=ttq-{name}-s{seed}",
            f"train.seed={seed}",
            f"train.minutes={minutes}",
            f"train.checkpoint_minutes={step_min}",
            "train.checkpoint_every=100000000",
            "train.keep_checkpoints=100000",
            "train.progress=false",
        ],
    )


def score_run(run: Path, name: str, seed: int, points: List[float], samples: int, space, real, out: Path) -> List[dict]:
    """Score the checkpoint nearest to each wall-clock point of ``run``; append rows to ``out``."""
    from ganforge.api import load_generator
    from ganforge.metrics.evaluation import evaluate
    from ganforge.runs import list_checkpoints, read_json, read_metrics, read_run_config

    ckpts = [(read_json(f / "meta.json"), f) for f in list_checkpoints(run)]
    events = [r for r in read_metrics(run) if "event" in r]
    threads = read_run_config(run)["train"].get("threads")
    rows = []
    for p in points:
        meta, folder = min(ckpts, key=lambda mf: abs(mf[0]["elapsed_s"] - p * 60))
        g = load_generator(run, checkpoint=str(folder))
        r = evaluate(g.sample_uint8(samples, seed=0), real, metrics="fid", features="mnist", feature_space=space)
        cov = r.get("coverage") or {}
        share = cov.get("fraction") or [None]
        row = {
            "recipe": name,
            "seed": seed,
            "point_min": p,
            "elapsed_min": round(meta["elapsed_s"] / 60, 3),
            "kimg": round(meta["kimg"], 1),
            "step": meta["step"],
            "fid": round(r["fid"], 4),
            "classes": cov.get("classes_covered"),
            "class_share_min": None if share[0] is None else round(min(share), 4),  # the classifier's classes
            "class_share_max": None if share[0] is None else round(max(share), 4),
            "watchdog_events": len(events),
            "samples": samples,
            "threads": threads,
            "run": str(run),
        }
        rows.append(row)
        print(
            f"{name:>16s} seed {seed}  t={row['elapsed_min']:5.2f} min  {row['kimg']:7.1f} kimg  "
            f"FID {row['fid']:7.3f}  classes {row['classes']} ({_shares(row)})  "
            f"watchdog events {row['watchdog_events']}",
            flush=True,
        )
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return rows


def _shares(row: dict) -> str:
    """The smallest and largest share of one class among the samples (the classifier's argmax)."""
    if row.get("class_share_min") is None:
        return "each -"
    return f"each {row['class_share_min']:.1%}-{row['class_share_max']:.1%}"


def print_table(rows: List[dict]) -> None:
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    points = sorted({r["point_min"] for r in rows})
    print(f"\n{'recipe':>16s} | " + " | ".join(f"{p:g} min: FID per seed (median)" for p in points))
    best = None
    for name in recipes:
        cells = []
        for p in points:
            rs = sorted((r for r in rows if r["recipe"] == name and r["point_min"] == p), key=lambda r: r["seed"])
            if not rs:
                cells.append("-")
                continue
            med = statistics.median(r["fid"] for r in rs)
            cells.append(" ".join(f"{r['fid']:.2f}" for r in rs) + f" ({med:.2f})")
            if p == points[-1] and (best is None or med < best[1]):
                best = (name, med)
        kimg = [r["kimg"] for r in rows if r["recipe"] == name and r["point_min"] == points[-1]]
        ev = sum({(r["seed"], r["run"]): r["watchdog_events"] for r in rows if r["recipe"] == name}.values())
        cls = min((r["classes"] for r in rows if r["recipe"] == name and r["classes"] is not None), default=None)
        last = [
            r
            for r in rows
            if r["recipe"] == name and r["point_min"] == points[-1] and r.get("class_share_min") is not None
        ]
        lo, hi = (
            min((r["class_share_min"] for r in last), default=0),
            max((r["class_share_max"] for r in last), default=0),
        )
        spread = f"; class shares {lo:.1%}-{hi:.1%}" if last else ""
        print(
            f"{name:>16s} | " + " | ".join(cells) + f"   [{statistics.median(kimg) if kimg else 0:.0f} kimg at "
            f"{points[-1]:g} min; fewest classes {cls}{spread}; watchdog events {ev}]"
        )
    if best:
        print(
            f"summary: best median FID at {points[-1]:g} min: {best[0]} {best[1]:.2f} "
            f"({rows[0]['samples']} samples, shipped MNIST classifier features)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="default", help="comma-separated built-in recipe names (see --list)")
    ap.add_argument("--recipe", action="append", default=[], help="an extra recipe NAME=PRESET[:k=v,k=v] (repeatable)")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--points", default="1,2,3,5", help="wall-clock minutes at which to score (the last is --minutes)")
    ap.add_argument("--samples", type=int, default=10000, help="generated images per FID")
    ap.add_argument("--runs-dir", default="runs/ttq")
    ap.add_argument("--out", default="time_to_quality.jsonl", help="JSON lines file the scored points are appended to")
    ap.add_argument("--table", nargs="*", help="only print the table of these JSON lines files")
    ap.add_argument("--list", action="store_true", help="list the built-in recipes")
    args = ap.parse_args()

    if args.list:
        for name, (what, preset, ov) in RECIPES.items():
            print(f"{name}: {what} [{preset} {' '.join(ov)}]")
        return
    if args.table is not None:
        rows = [
            json.loads(line) for f in (args.table or [args.out]) for line in Path(f).read_text().splitlines() if line
        ]
        print_table(rows)
        return

    import torch

    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics.features import get_feature_space

    recipes = {n: RECIPES[n] for n in args.recipes.split(",") if n}
    recipes.update(parse_recipe(r) for r in args.recipe)
    seeds = [int(s) for s in args.seeds.split(",")]
    points = sorted({float(p) for p in args.points.split(",") if float(p) < args.minutes} | {args.minutes})
    out = Path(args.out)
    print(
        f"# {len(recipes)} recipe(s) x {len(seeds)} seed(s), {args.minutes:g} min each, scored at {points} min "
        f"with {args.samples} samples; cpus {sorted(os.sched_getaffinity(0))}, load {os.getloadavg()[0]:.2f}; "
        f"results appended to {out}",
        flush=True,
    )
    space = get_feature_space("mnist")
    real = load_dataset(DataConfig())
    rows = []
    for name, recipe in recipes.items():
        for seed in seeds:
            t0 = time.perf_counter()
            run = train_one(name, recipe, seed, args.minutes, points, args.runs_dir)
            print(
                f"# trained {name} seed {seed}: {run} ({(time.perf_counter() - t0) / 60:.2f} min with set-up)",
                flush=True,
            )
            threads = torch.get_num_threads()
            torch.set_num_threads(len(os.sched_getaffinity(0)))
            rows += score_run(run, name, seed, points, args.samples, space, real, out)
            torch.set_num_threads(threads)
    print_table(rows)


if __name__ == "__main__":
    main()
