"""``ganforge`` command line: train | sample | interpolate | eval | inpaint | info | presets.

Contract relied on by scripts: ``ganforge train`` prints the run folder's path as the
last line of its standard output (everything else goes to standard error).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


from ganforge.errors import GanforgeError, UsageError  # noqa: E402


# ---- train --------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from ganforge.api import resume_config
    from ganforge.config import ConfigError, resolve
    from ganforge.training.trainer import Trainer

    preset, overrides = None, []
    for item in args.items:
        if "=" in item:
            overrides.append(item)
        elif preset is None:
            preset = item
        else:
            raise ConfigError(f"unexpected argument {item!r}: give one PRESET and then key=value overrides")
    if args.minutes is not None:
        overrides.append(f"train.minutes={args.minutes}")
    if args.resume:
        if preset:
            raise ConfigError("--resume continues a run with its own config; do not give a PRESET too")
        cfg = resume_config(args.resume, overrides)
    else:
        cfg = resolve(preset or "default", overrides)
    trainer_cls = Trainer
    if cfg.task == "inpaint":
        from ganforge.training.inpaint_trainer import InpaintTrainer as trainer_cls
    if args.dry_run:
        print(cfg.to_yaml(), end="")
        trainer_cls(cfg, dry_run=True).run()
        return 0
    trainer = trainer_cls(cfg, runs_dir=args.runs_dir, resume=args.resume)
    try:
        run_dir = trainer.run()
    except KeyboardInterrupt:
        print(trainer.run_dir, flush=True)
        return EXIT_INTERRUPTED
    print(run_dir, flush=True)
    return 0


# ---- sample -------------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ganforge.api import load_generator
    from ganforge.training.monitor import make_grid_uint8, save_png

    g = load_generator(args.run_dir, checkpoint=args.checkpoint, ema=not args.no_ema)
    out = Path(args.out)
    kind = out.suffix.lower()
    if kind not in (".png", ".npz", "") and not out.is_dir():
        raise UsageError(f"--out {out}: expected a .png file (grid), a .npz file, or a folder")
    if args.n < 1:
        raise UsageError("--n must be at least 1")
    labels = None
    if args.cls is not None:
        if not g.num_classes:
            raise UsageError(f"--class: the run '{args.run_dir}' trained an unconditional model; it has no classes "
                             "(train with model.conditional=true)")
        if args.cls == "all":  # n per class, class after class
            labels = torch.arange(g.num_classes).repeat_interleave(args.n)
        else:
            labels = torch.full((args.n,), g.class_index(args.cls), dtype=torch.long)
    n = labels.shape[0] if labels is not None else args.n
    imgs = g.sample_uint8(n, seed=args.seed, labels=labels)  # [N, C, H, W]
    if kind == ".png":
        if args.cls == "all":
            save_png(labelled_rows(imgs, g.class_names, args.n), out)
        else:
            save_png(make_grid_uint8(imgs, nrow=args.nrow), out)
    elif kind == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"arr_0": imgs.permute(0, 2, 3, 1).numpy()}  # [N, H, W, C] uint8
        if g.num_classes:
            arrays["arr_1"] = g.labels_for(n, labels).numpy()  # class labels, as guided-diffusion writes them
        np.savez(out, **arrays)
    else:
        out.mkdir(parents=True, exist_ok=True)
        ys = g.labels_for(n, labels)
        for i, im in enumerate(imgs):
            suffix = f"_{g.class_names[int(ys[i])]}" if ys is not None else ""
            save_png(im.permute(1, 2, 0).numpy(), out / f"{i:06d}{_safe(suffix)}.png")
    print(f"wrote {n} samples from {g.checkpoint_path} (step {g.step}) to {out}", file=sys.stderr)
    print(out)
    return 0


def _safe(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s)


def labelled_rows(imgs, names, per_row: int):
    """A grid with one row per class and the class name written at the left of each row."""
    import numpy as np
    from PIL import Image, ImageDraw

    from ganforge.training.monitor import make_grid_uint8

    grid = make_grid_uint8(imgs, nrow=per_row)
    h = imgs.shape[2]
    margin = max(8 * max(len(str(n)) for n in names) + 8, 24)
    canvas = Image.new("RGB", (grid.shape[1] + margin, grid.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).convert("RGB"), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(names):
        draw.text((4, 2 + r * (h + 2) + h // 2 - 5), str(name), fill=(0, 0, 0))
    return np.asarray(canvas)


# ---- interpolate ------------------------------------------------------------------------
def slerp(a, b, t):
    import torch

    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def cmd_interpolate(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from ganforge.api import load_generator
    from ganforge.training.monitor import make_grid_uint8, save_png, to_uint8

    g = load_generator(args.run_dir, checkpoint=args.checkpoint)
    if args.steps < 2 or args.rows < 1:
        raise UsageError("--steps must be >= 2 and --rows >= 1")
    ends = g.noise(2 * args.rows, args.seed)
    a, b = ends[: args.rows], ends[args.rows :]
    ts = torch.linspace(0, 1, args.steps)
    zs = []
    for t in ts:  # [rows, z] per t
        zs.append(slerp(a, b, t) if not args.linear else torch.lerp(a, b, t))
    z = torch.stack(zs, 1).reshape(args.rows * args.steps, -1)  # row-major: each row one path
    labels = None
    if g.num_classes:  # row r shows class r mod K, or the class asked for
        row_cls = torch.arange(args.rows) % g.num_classes if args.cls is None else \
            torch.full((args.rows,), g.class_index(args.cls), dtype=torch.long)
        labels = row_cls.repeat_interleave(args.steps)
    elif args.cls is not None:
        raise UsageError("--class: this run trained an unconditional model; it has no classes")
    imgs = to_uint8(g.generate(z, labels))
    out = Path(args.out) if args.out else Path(args.run_dir) / "interpolation.png"
    if out.suffix.lower() == ".gif":
        frames = []
        per_t = imgs.view(args.rows, args.steps, *imgs.shape[1:]).transpose(0, 1)  # [steps, rows, C, H, W]
        seq = list(per_t) + list(per_t.flip(0))[1:-1]  # there and back, endpoints once
        for f in seq:
            grid = make_grid_uint8(f, nrow=args.rows)
            frames.append(Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid))
        out.parent.mkdir(parents=True, exist_ok=True)
        frames[0].save(out, save_all=True, append_images=frames[1:], duration=80, loop=0)
    elif out.suffix.lower() == ".png":
        save_png(make_grid_uint8(imgs, nrow=args.steps), out)
    else:
        raise UsageError(f"--out {out}: expected a .png (grid) or .gif (animation) path")
    print(out)
    return 0


# ---- info -------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from ganforge.config import load_preset
    from ganforge.training import checkpoint as ckpt

    run = Path(args.run_dir)
    if not run.is_dir():
        raise ckpt.RunError(f"run folder '{run}' does not exist")
    if not ckpt.is_run_dir(run):
        raise ckpt.RunError(f"'{run}' is not a ganforge run folder (no config.yaml); pass a folder made by 'ganforge train'")
    cfg = load_preset(str(run / "config.yaml"))
    cks = ckpt.list_checkpoints(run)
    metrics = run / "metrics.jsonl"
    last = last_eval = None
    if metrics.exists():
        recs = []
        for ln in metrics.read_text().splitlines():
            try:
                recs.append(json.loads(ln))
            except json.JSONDecodeError:
                continue
        last = next((r for r in reversed(recs) if "loss_d" in r), None)
        last_eval = next((r for r in reversed(recs) if "fid" in r), None)
    info = {
        "run": str(run),
        "model": cfg.get("model", {}),
        "data": cfg.get("data", {}),
        "loss": cfg.get("loss", {}).get("name"),
        "checkpoints": [ckpt.read_json(p / "meta.json") | {"path": str(p)} for p in cks],
        "best": str(run / "checkpoints" / "best") if (run / "checkpoints" / "best" / "meta.json").exists() else None,
        "last_metrics": last,
        "last_eval": last_eval,
        "samples": str(run / "samples" / "latest.png") if (run / "samples" / "latest.png").exists() else None,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["model"]
    print(f"run        {run}")
    print(f"model      {m.get('arch')} z_dim={m.get('z_dim')} loss={info['loss']}")
    d = info["data"]
    print(f"data       {d.get('dataset')} root={d.get('root')} size={d.get('size')} channels={d.get('channels')}")
    for c in info["checkpoints"]:
        print(f"checkpoint step {c['step']:>8}  {c['kimg']:8.1f} kimg  {c['elapsed_s'] / 60:6.1f} min  {c['path']}")
    if not cks:
        print("checkpoint none yet")
    if info["best"]:
        b = ckpt.read_json(Path(info["best"]) / "meta.json")
        print(f"best       step {b['step']:>8}  {b['kimg']:8.1f} kimg  (lowest in-training FID)  {info['best']}")
    if last:
        print("last log   " + "  ".join(f"{k}={v}" for k, v in last.items()))
    if last_eval:
        print("last eval  " + "  ".join(f"{k}={v}" for k, v in last_eval.items()))
    if info["samples"]:
        print(f"samples    {info['samples']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ganforge.metrics import cli_eval

    return cli_eval(args)


def cmd_inpaint(args: argparse.Namespace) -> int:
    from ganforge.apps.inpaint_cli import cli_inpaint

    return cli_inpaint(args)


def cmd_presets(args: argparse.Namespace) -> int:
    from ganforge.config import load_preset, preset_names

    for name in preset_names():
        first = ""
        from importlib import resources

        text = (resources.files("ganforge") / "assets" / "presets" / f"{name}.yaml").read_text()
        for line in text.splitlines():
            if line.startswith("#"):
                first = line.lstrip("# ").strip()
                break
        load_preset(name)
        print(f"{name:16s} {first}")
    return 0


# ---- parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganforge", description="Train, watch, measure and use GANs on images.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="train a GAN (default: DCGAN on the embedded MNIST, 5 minutes)",
                       description="Train a GAN, or with task=inpaint (preset mnist-inpaint) an image-completion "
                                   "network. PRESET is a shipped preset name (see 'ganforge presets') or a "
                                   "YAML file; key=value items override config keys, e.g. train.steps=2000.")
    t.add_argument("items", nargs="*", metavar="[PRESET] [key=value ...]")
    t.add_argument("--minutes", type=float, help="wall-clock budget (same as train.minutes=M)")
    t.add_argument("--runs-dir", default="runs", help="where numbered run folders are made (default: runs)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config, run one step, write nothing")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate images from a trained run")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="a .png grid, a .npz (uint8 arr_0 [N,H,W,C]) or a folder of PNGs")
    s.add_argument("--nrow", type=int, default=None, help="images per row in a .png grid")
    s.add_argument("--checkpoint", default="last", help="last | best | STEP | checkpoint folder")
    s.add_argument("--no-ema", action="store_true", help="use the raw generator weights instead of the EMA copy")
    s.add_argument("--class", dest="cls", metavar="C",
                   help="conditional runs: a class index or name, or 'all' (--n per class; a .png gets one labelled row per class)")
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("interpolate", help="latent-space interpolation grid (.png) or animation (.gif)")
    i.add_argument("run_dir")
    i.add_argument("--out", help="output .png or .gif (default RUN_DIR/interpolation.png)")
    i.add_argument("--rows", type=int, default=8, help="number of paths (default 8)")
    i.add_argument("--steps", type=int, default=10, help="images per path (default 10)")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--linear", action="store_true", help="linear instead of spherical interpolation")
    i.add_argument("--checkpoint", default="last")
    i.add_argument("--class", dest="cls", metavar="C", help="conditional runs: keep every path in this class")
    i.set_defaults(func=cmd_interpolate)

    n = sub.add_parser("info", help="describe a run folder: config, checkpoints, last metrics")
    n.add_argument("run_dir")
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=cmd_info)

    from ganforge.metrics.cli import EVAL_DESCRIPTION

    e = sub.add_parser("eval", help="FID, KID, IS, precision/recall of a run or of image files",
                       description=EVAL_DESCRIPTION)
    from ganforge.metrics import add_eval_arguments

    add_eval_arguments(e)
    e.set_defaults(func=cmd_eval)

    from ganforge.apps.inpaint_cli import add_inpaint_arguments

    ip = sub.add_parser("inpaint", help="fill in missing regions of images with a trained GAN or completion network",
                        description="Complete the missing (white in --mask, or --box) part of an image, or of every "
                                    "image in a folder, with a GAN run (latent optimisation) or a completion network "
                                    "run (ganforge train task=inpaint).")
    add_inpaint_arguments(ip)
    ip.set_defaults(func=cmd_inpaint)

    pr = sub.add_parser("presets", help="list the shipped presets")
    pr.set_defaults(func=cmd_presets)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "command", None) == "train":  # overrides may come after options: --minutes 3 a.b=c
        args.items += [e for e in extra if not e.startswith("-")]
        extra = [e for e in extra if e.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.version:
        from ganforge import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except GanforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
