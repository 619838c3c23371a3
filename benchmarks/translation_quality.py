"""Image-to-image translation quality (``task=translate``), each figure beside its baseline measured in
the same run.

    python scripts/make_translation_sets.py                       # the data (translation-data/)
    python benchmarks/translation_quality.py --digits RUN --pix2pix RUN --cyclegan RUN [--pictures docs]
    python benchmarks/translation_quality.py --train              # trains what is not given, with the presets
    python benchmarks/translation_quality.py --fit RUN [RUN ...]   # photo2style runs on the training photographs

Digits (unpaired, CycleGAN, preset ``digits2mnist``): the 500 held-out scikit-learn digits (real 8x8
digits by other writers, placed as MNIST digits are; ``scripts/make_translation_sets.py``) translated
into the style of MNIST. Scored with the shipped MNIST classifier: FID in its 128-d feature space
against the 2,000 held-out MNIST digits (which neither the classifier nor the run saw), and its
accuracy against the digits' true labels (content kept), with the run's checkpoint ``best`` when it has one
(its in-training selection, ``translate.select=fid``: no labels, no test digits). Baseline: the untranslated
input. Floor: the FID of 500 MNIST training digits against the same reference. The other direction (the 2,000 held-out
MNIST digits into the sklearn style) is scored the same way against the 500 held-out sklearn digits.

Photos (``photo2style``): the three test photographs astronaut, coffee, chelsea (scikit-image; never
used in training), translated at their own size (in overlapping tiles of the run's ``translate.tile``, as
``ganforge translate`` does), against OpenCV's ``cv2.stylization`` of the same
photographs: PSNR and SSIM (torchmetrics, data range 255). Baseline: the untranslated photograph. pix2pix
learnt from pairs; CycleGAN from photo patches of one half of each training photograph and stylised
patches of the other half (unpaired).

One line per figure, then a summary line with the issue's targets: digits FID at least 5x lower than
the input's with accuracy not below it; pix2pix at least 8 dB and CycleGAN at least 4 dB above the
baseline PSNR (mean over the three photographs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from inpaint_quality import PHOTO_TEST, _photo  # noqa: E402
from make_translation_sets import digits_split, stylise  # noqa: E402


def emit(part: str, what: str, method: str, name: str, value: float, unit: str = "") -> None:
    print(f"{part:7s} {what:12s} {method:10s} {name:9s} {value:10.4f}{(' ' + unit) if unit else ''}", flush=True)


def train_preset(preset: str, overrides: List[str], runs_dir: Path) -> Path:
    import ganforge

    t0 = time.perf_counter()
    run = ganforge.train(
        preset=preset, overrides=["train.progress=false", "train.tensorboard=false", *overrides], runs_dir=runs_dir
    )
    print(f"# trained {preset} {' '.join(overrides)} -> {run} in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return run


CYCLE_PHOTO = [
    "translate.method=cyclegan",
    "data.dataset=unpaired",
    "data.root=translation-data/photo2style/halves",
    "translate.input_skip=true",
    "translate.width=16",
    "translate.blocks=3",
    "translate.d_width=32",
    "translate.d_norm=instance",
    "translate.crop_size=64",
    "translate.tile=128",
    "translate.cycle_weight=0.5",
    "translate.identity_weight=0",
    "train.batch_size=4",
    "train.steps=1800",
    "translate.lr_decay_start=900",
    "translate.lr_decay_steps=900",
    "g_optim.lr=0.0005",
    "d_optim.lr=0.0004",
]  # the comment of photo2style.yaml


# ---- digits -----------------------------------------------------------------------------------------


def digits_part(run: Path, pictures: Optional[Path], checkpoint: str = "auto") -> Dict[str, float]:
    import ganforge
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics import get_feature_space
    from ganforge.metrics.compute import fid

    if checkpoint == "auto":  # the run's 'best' (its in-training selection, translate.select=fid) when it has one
        checkpoint = "best" if (run / "checkpoints" / "best" / "meta.json").is_file() else "last"
    h = ganforge.load(run, checkpoint=checkpoint)
    print(f"# digits: {run} checkpoint {checkpoint} (step {h.step})", flush=True)
    space = get_feature_space("mnist")
    _, test, _, y_test = digits_split()
    x = torch.from_numpy(test)[:, None]  # [500, 1, 28, 28]
    ref_data = load_dataset(DataConfig(dataset="mnist-embedded", heldout=2000, part="heldout"))
    train_data = load_dataset(DataConfig(dataset="mnist-embedded", heldout=2000, part="train"))
    ref = space.extract(ref_data.images)
    floor = fid(space.extract(train_data.images[:500])["features"], ref["features"])
    emit("digits", "a2b", "floor", "FID", floor)
    out: Dict[str, float] = {"floor": floor}
    t0 = time.perf_counter()
    y = h.translate(x, "a2b")
    secs = time.perf_counter() - t0
    for name, imgs in (("input", x), ("cyclegan", y)):
        f = space.extract(imgs)
        out[f"fid_{name}"] = fid(f["features"], ref["features"])
        out[f"acc_{name}"] = float((f["logits"].argmax(1).numpy() == y_test).mean())
        emit("digits", "a2b", name, "FID", out[f"fid_{name}"])
        emit("digits", "a2b", name, "accuracy", 100 * out[f"acc_{name}"], "%")
    emit("digits", "a2b", "cyclegan", "seconds", secs, "s (500 digits)")
    # back: held-out MNIST into the sklearn digits' style, scored against the held-out sklearn digits
    back_ref = space.extract(x)
    mb = h.translate(ref_data.images, "b2a")
    for name, imgs in (("input", ref_data.images), ("cyclegan", mb)):
        f = space.extract(imgs)
        out[f"back_fid_{name}"] = fid(f["features"], back_ref["features"])
        out[f"back_acc_{name}"] = float((f["logits"].argmax(1) == ref_data.labels).float().mean())
        emit("digits", "b2a", name, "FID", out[f"back_fid_{name}"])
        emit("digits", "b2a", name, "accuracy", 100 * out[f"back_acc_{name}"], "%")
    if pictures is not None:
        from ganforge.imaging import make_grid_uint8, save_png

        k = 16
        rows = torch.cat([x[:k], y[:k], ref_data.images[:k], mb[:k]])
        save_png(make_grid_uint8(rows, nrow=k), pictures / "translate_digits.png")
        print(f"# wrote {pictures / 'translate_digits.png'}", flush=True)
    return out


def labelled_strip(panels):
    """RGB arrays of one size side by side, 4 px apart, each with its name on a strip above."""
    from PIL import Image, ImageDraw

    h, w = panels[0][1].shape[:2]
    canvas = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * 4, h + 14), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (name, arr) in enumerate(panels):
        canvas.paste(Image.fromarray(arr), (i * (w + 4), 14))
        draw.text((i * (w + 4) + 2, 1), name, fill=(0, 0, 0))
    return canvas


# ---- photos -------------------------------------------------------------------------------------------


def photo_part(
    runs: Dict[str, Path], pictures: Optional[Path], tiles: Optional[Dict[str, int]] = None
) -> Dict[str, Dict[str, float]]:
    from PIL import Image
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    import ganforge

    handles = {k: ganforge.load(v) for k, v in runs.items()}
    for k, h in handles.items():
        if k in (tiles or {}):
            h.tile = tiles[k]
        source = "--tile" if k in (tiles or {}) else "the run's translate.tile"
        print(f"# {k}: {runs[k]} (step {h.step}), translated in tiles of {h.tile} px ({source})", flush=True)

    def scores(out: np.ndarray, target: np.ndarray):
        a = torch.from_numpy(out).permute(2, 0, 1)[None].float()
        b = torch.from_numpy(target).permute(2, 0, 1)[None].float()
        return (
            float(peak_signal_noise_ratio(a, b, data_range=255.0)),
            float(structural_similarity_index_measure(a, b, data_range=255.0)),
        )

    res: Dict[str, Dict[str, List[float]]] = {}
    for name in PHOTO_TEST:
        photo = np.array(Image.fromarray(_photo(name)).convert("RGB"))
        target = stylise(photo)
        outs = {"input": photo}
        for k, h in handles.items():
            t0 = time.perf_counter()
            outs[k] = (
                h.translate(torch.from_numpy(photo).permute(2, 0, 1)[None].contiguous(), "a2b")[0]
                .permute(1, 2, 0)
                .numpy()
            )
            emit("photo", name, k, "seconds", time.perf_counter() - t0, f"s ({photo.shape[1]}x{photo.shape[0]})")
        for k, o in outs.items():
            p, s = scores(o, target)
            res.setdefault(k, {"psnr": [], "ssim": []})
            res[k]["psnr"].append(p)
            res[k]["ssim"].append(s)
            emit("photo", name, k, "PSNR", p, "dB")
            emit("photo", name, k, "SSIM", s)
        if pictures is not None and name == "chelsea":
            strip = labelled_strip(
                [("photo (input)", outs["input"])]
                + [(k, outs[k]) for k in handles]
                + [("cv2.stylization (target)", target)]
            )
            strip.save(pictures / "translate_photo.png")
            print(
                f"# wrote {pictures / 'translate_photo.png'} (input | {' | '.join(handles)} | cv2.stylization)",
                flush=True,
            )
    mean = {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in res.items()}
    for k, d in mean.items():
        emit("photo", "mean", k, "PSNR", d["psnr"], "dB")
        emit("photo", "mean", k, "SSIM", d["ssim"])
    return mean


def fit_part(runs: List[str]) -> None:
    """The selection set used to choose pix2pix's settings (never the test photographs): PSNR of each run
    against ``cv2.stylization`` on the centre 512x512 crops of the eight training photographs
    (``PAIRED_PHOTOS``, stylised whole first, as in the data), translated in the run's tiles."""
    from make_translation_sets import PAIRED_PHOTOS, photo

    import ganforge

    def psnr(x: np.ndarray, y: np.ndarray) -> float:
        return float(10 * np.log10(255.0**2 / np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)))

    for run in runs:
        h = ganforge.load(run)
        ps, base = [], []
        for name in PAIRED_PHOTOS:
            p, t = photo(name), stylise(photo(name))
            y0, x0 = max(0, (p.shape[0] - 512) // 2), max(0, (p.shape[1] - 512) // 2)
            p, t = p[y0 : y0 + 512, x0 : x0 + 512], t[y0 : y0 + 512, x0 : x0 + 512]
            o = h.translate(torch.from_numpy(np.array(p)).permute(2, 0, 1)[None].contiguous(), "a2b")
            ps.append(psnr(o[0].permute(1, 2, 0).numpy(), t))
            base.append(psnr(p, t))
        print(
            f"fit     train-photos {Path(run).name}: mean PSNR {np.mean(ps):.2f} dB vs photo {np.mean(base):.2f} dB "
            f"({np.mean(ps) - np.mean(base):+.2f}); " + ", ".join(f"{n} {v:.2f}" for n, v in zip(PAIRED_PHOTOS, ps)),
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--digits", help="a digits2mnist run (CycleGAN)")
    ap.add_argument(
        "--digits-checkpoint",
        default="auto",
        help="checkpoint of the digits run: auto (its 'best' when it has one, else last), last, best, a step",
    )
    ap.add_argument("--pix2pix", help="a photo2style run (pix2pix, paired)")
    ap.add_argument("--cyclegan", help="a photo2style CycleGAN run (unpaired)")
    ap.add_argument(
        "--tile",
        nargs="*",
        default=[],
        metavar="METHOD=N",
        help="tile side for a photo run, e.g. pix2pix=128 (default: each run's translate.tile)",
    )
    ap.add_argument("--train", action="store_true", help="train each run that is not given with its preset")
    ap.add_argument(
        "--fit",
        nargs="+",
        metavar="RUN",
        help="only score photo2style runs on the training photographs "
        "(the selection set used to choose settings; not the test photographs)",
    )
    ap.add_argument("--runs-dir", default="runs/translate_bench")
    ap.add_argument(
        "--pictures", help="also write docs pictures (translate_digits.png, translate_photo.png) to this folder"
    )
    args = ap.parse_args()
    tiles = {}
    for item in args.tile:
        method, _, n = item.partition("=")
        if method not in ("pix2pix", "cyclegan") or not n.isdigit():
            ap.error(f"--tile {item}: expected pix2pix=N or cyclegan=N")
        tiles[method] = int(n)
    torch.set_num_threads(1)
    if args.fit:
        fit_part(args.fit)
        return
    runs_dir = Path(args.runs_dir)
    pictures = Path(args.pictures) if args.pictures else None
    if args.train:
        args.digits = args.digits or str(train_preset("digits2mnist", [], runs_dir))
        args.pix2pix = args.pix2pix or str(train_preset("photo2style", [], runs_dir))
        args.cyclegan = args.cyclegan or str(train_preset("photo2style", CYCLE_PHOTO, runs_dir))
    summary = []
    if args.digits:
        d = digits_part(Path(args.digits), pictures, args.digits_checkpoint)
        ratio = d["fid_input"] / d["fid_cyclegan"]
        ok = ratio >= 5 and d["acc_cyclegan"] >= d["acc_input"]
        summary.append(
            f"digits FID {d['fid_cyclegan']:.2f} vs input {d['fid_input']:.2f} ({ratio:.1f}x lower, target >= 5x), "
            f"accuracy {100 * d['acc_cyclegan']:.1f}% vs input {100 * d['acc_input']:.1f}%: "
            f"{'MET' if ok else 'MISSED'}"
        )
    photo_runs = {k: Path(v) for k, v in (("pix2pix", args.pix2pix), ("cyclegan", args.cyclegan)) if v}
    if photo_runs:
        m = photo_part(photo_runs, pictures, tiles)
        for k, need in (("pix2pix", 8.0), ("cyclegan", 4.0)):
            if k in m:
                gain = m[k]["psnr"] - m["input"]["psnr"]
                summary.append(
                    f"{k} {m[k]['psnr']:.2f} dB vs photo {m['input']['psnr']:.2f} dB (+{gain:.2f} dB, target "
                    f"+{need:g}): {'MET' if gain >= need else 'MISSED'}"
                )
    print("summary: " + "; ".join(summary), flush=True)


if __name__ == "__main__":
    main()
