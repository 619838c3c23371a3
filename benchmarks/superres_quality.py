"""Super-resolution quality and speed: ganforge's pixel-loss and GAN models against the classic resizes
(nearest, bicubic, Lanczos: OpenCV's ``resize``), all measured in the same run.

    python benchmarks/superres_quality.py --mnist RUN                  # MNIST x4 (a run of preset mnist-sr)
    python benchmarks/superres_quality.py --photo4 RUN --photo2 RUN    # colour photographs x4 / x2 (photo-sr runs)
    python benchmarks/superres_quality.py --speed RUN                  # 512x512 -> 2048x2048 speed and peak memory

Each ``RUN`` is a ``task=superres`` run folder: its last checkpoint is the GAN model and its
``checkpoints/pixel`` (written when the pixel-loss stage ends) the pixel-loss model.

MNIST x4: the 2,000 held-out digits (``data.heldout=2000 data.part=heldout``; neither the shipped
classifier nor a run trained with ``data.part=train``, as ``mnist-sr`` is, has seen them), area-
downsampled to 7x7 (block means, rounded to uint8), upscaled back to 28x28 by each method:

- PSNR (dB) against the originals;
- FID in the feature space of the shipped MNIST classifier (128-d) against the 8,000 training-part
  digits, with the held-out originals' own FID against them as the floor;
- the classifier's accuracy on the upscaled digits against the true labels (originals: 99.3%).

Photographs: the full ``astronaut``, ``coffee`` and ``chelsea`` of scikit-image (none of the training
patches of ``photo-sr`` come from them), cropped to a multiple of the scale, downsampled with PIL's
antialiased bicubic (MATLAB ``imresize``-like, the usual benchmark degradation) and upscaled; PSNR and
SSIM with torchmetrics, on the luma channel Y (ITU-R BT.601, as SR papers report) and on RGB, with
``scale`` pixels shaved at each border (the usual convention). Means over the three photographs.

Speed: ``ganforge upscale`` of a 512x512 photograph (astronaut) to 2048x2048 in a child process, tiled
(default tile 128) and untiled, median wall time of ``--repeats`` runs (including start-up), the
network's own time, megapixels of output per second, and the peak resident memory of the process
(``ru_maxrss``); OpenCV's bicubic resize of the same image as the baseline.

One line per figure, then a summary line with the targets of issue 13.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from inpaint_quality import PHOTO_TEST, _photo  # noqa: E402  (the shared photo helpers)

CV_MODES = {"nearest": "INTER_NEAREST", "bicubic": "INTER_CUBIC", "lanczos": "INTER_LANCZOS4"}


def emit(part: str, method: str, name: str, value: float, unit: str = "") -> None:
    print(f"{part:9s} {method:10s} {name:12s} {value:10.4f}{(' ' + unit) if unit else ''}", flush=True)


def cv_resize(images: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    """uint8 [N, C, h, w] -> [N, C, s*h, s*w] with OpenCV's resize (``method``: nearest | bicubic | lanczos)."""
    import cv2

    flag = getattr(cv2, CV_MODES[method])
    out = []
    for img in images:
        a = img.permute(1, 2, 0).numpy()
        r = cv2.resize(np.ascontiguousarray(a), (a.shape[1] * scale, a.shape[0] * scale), interpolation=flag)
        out.append(torch.from_numpy(r.reshape(a.shape[0] * scale, a.shape[1] * scale, a.shape[2])).permute(2, 0, 1))
    return torch.stack(out)


def models_of(run: Optional[str], device: str = "cpu") -> Dict[str, object]:
    """{"pixel": handle, "gan": handle} of a superres run (the pixel one when the run has it)."""
    from ganforge.tasks.superres.app import load_upscaler

    if not run:
        return {}
    out: Dict[str, object] = {}
    pix = Path(run) / "checkpoints" / "pixel"
    if (pix / "meta.json").is_file():
        out["pixel"] = load_upscaler(pix, device=device)
    gan = load_upscaler(run, device=device)
    out["gan" if gan.config.superres.adv_weight > 0 else "pixel"] = gan
    for k, h in out.items():
        print(f"# {k}: {h.checkpoint_path} (step {h.step})", flush=True)
    return out


# ---- MNIST -------------------------------------------------------------------------------------


def save_rows(rows: Dict[str, torch.Tensor], path: Path, enlarge: int = 1) -> None:
    """One labelled row per method (uint8 [k, C, H, W] each, the same k and size), nearest-enlarged."""
    from ganforge.imaging import labelled_rows, save_png

    imgs = torch.cat(list(rows.values()))
    if enlarge > 1:
        imgs = imgs.repeat_interleave(enlarge, 2).repeat_interleave(enlarge, 3)
    save_png(labelled_rows(imgs, list(rows), per_row=next(iter(rows.values())).shape[0]), path)
    print(f"# figure: {path}", flush=True)


def mnist_part(run: str, figures: Optional[Path] = None) -> Dict[str, Dict[str, float]]:
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics import get_feature_space
    from ganforge.metrics.compute import fid

    held = load_dataset(DataConfig(heldout=2000, part="heldout"))
    train = load_dataset(DataConfig(heldout=2000, part="train"))
    x, y = held.images, held.labels  # uint8 [2000, 1, 28, 28]
    lr = torch.nn.functional.avg_pool2d(x.float(), 4).round().to(torch.uint8)  # [2000, 1, 7, 7] area
    space = get_feature_space("mnist")
    ref = space.extract(train.images)["features"]
    print(
        f"# MNIST x4: {len(x)} held-out digits, area-downsampled to 7x7; FID against the {len(train)} training-part "
        f"digits in the shipped classifier's {space.feature_dim}-d features",
        flush=True,
    )
    res: Dict[str, Dict[str, float]] = {}

    def score(name: str, out: torch.Tensor) -> None:
        e = space.extract(out)
        mse = (out.float() - x.float()).pow(2).mean()
        r = {
            "psnr": float(10 * torch.log10(255**2 / mse)) if mse > 0 else float("inf"),
            "fid": fid(e["features"], ref),
            "acc": float((e["logits"].argmax(1) == y).float().mean()),
        }
        res[name] = r
        if name != "originals":
            emit("mnist-x4", name, "PSNR", r["psnr"], "dB")
        emit("mnist-x4", name, "FID", r["fid"])
        emit("mnist-x4", name, "accuracy", r["acc"])

    score("originals", x)
    shown = {"input": cv_resize(lr[:10], 4, "nearest")}
    for m in CV_MODES:
        out = cv_resize(lr, 4, m)
        score(m, out)
        shown[m] = out[:10]
    for name, h in models_of(run).items():
        if h.scale != 4 or h.channels != 1:
            print(f"# {name}: skipped, x{h.scale} with {h.channels} channels (need x4 grey)", flush=True)
            continue
        t0 = time.perf_counter()
        out = h.upscale(lr, batch_size=500)
        emit("mnist-x4", name, "seconds", time.perf_counter() - t0, "s")
        score(name, out)
        shown[name] = out[:10]
    if figures is not None:
        shown.pop("nearest")
        shown["original"] = x[:10]
        save_rows(shown, figures / "superres_mnist.png", enlarge=3)
    return res


# ---- photographs ---------------------------------------------------------------------------------


def luma(x: torch.Tensor) -> torch.Tensor:
    """uint8/float RGB [N, 3, H, W] -> Y of ITU-R BT.601 in 16..235 (MATLAB rgb2ycbcr), float [N, 1, H, W]."""
    x = x.float()
    return 16.0 + (65.481 * x[:, 0:1] + 128.553 * x[:, 1:2] + 24.966 * x[:, 2:3]) / 255.0


def photo_metrics(out: torch.Tensor, ref: torch.Tensor, shave: int) -> Dict[str, float]:
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    o, r = out[..., shave:-shave, shave:-shave].float(), ref[..., shave:-shave, shave:-shave].float()
    oy, ry = luma(o), luma(r)
    return {
        "psnr_y": float(peak_signal_noise_ratio(oy, ry, data_range=255.0)),
        "ssim_y": float(structural_similarity_index_measure(oy, ry, data_range=255.0)),
        "psnr_rgb": float(peak_signal_noise_ratio(o, r, data_range=255.0)),
        "ssim_rgb": float(structural_similarity_index_measure(o, r, data_range=255.0)),
    }


def photo_part(run: str, scale: int, figures: Optional[Path]) -> Dict[str, Dict[str, float]]:
    from PIL import Image

    hrs, lrs = [], []
    for name in PHOTO_TEST:
        a = _photo(name)
        h, w = a.shape[0] - a.shape[0] % scale, a.shape[1] - a.shape[1] % scale
        a = np.ascontiguousarray(a[:h, :w, :3])
        lr = np.array(Image.fromarray(a).resize((w // scale, h // scale), Image.BICUBIC))
        hrs.append(torch.from_numpy(a).permute(2, 0, 1)[None])
        lrs.append(torch.from_numpy(lr).permute(2, 0, 1)[None])
    print(
        f"# photos x{scale}: {', '.join(PHOTO_TEST)} (full photographs, PIL bicubic downsampling), "
        f"Y and RGB, {scale}-pixel border shaved",
        flush=True,
    )
    methods: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        m: (lambda t, m=m: cv_resize(t, scale, m)) for m in CV_MODES
    }
    for name, h in models_of(run).items():
        if h.scale != scale or h.channels != 3:
            print(f"# {name}: skipped, x{h.scale} with {h.channels} channels (need x{scale} colour)", flush=True)
            continue
        methods[name] = lambda t, h=h: h.upscale(t, tile=128)
    res: Dict[str, Dict[str, float]] = {}
    # detail crops for the figure: (top, left) of a 96x96 region of each photograph (face, cup rim, fur)
    spots = {"astronaut": (80, 176), "coffee": (88, 200), "chelsea": (96, 200)}
    shown: Dict[str, torch.Tensor] = {}

    def crops(imgs: List[torch.Tensor]) -> torch.Tensor:
        return torch.cat([im[..., y : y + 96, q : q + 96] for im, (y, q) in zip(imgs, (spots[n] for n in PHOTO_TEST))])

    shown["input"] = crops([cv_resize(lr, scale, "nearest") for lr in lrs])
    for m, fn in methods.items():
        per = []
        outs = []
        t0 = time.perf_counter()
        for i, (lr, hr) in enumerate(zip(lrs, hrs)):
            out = fn(lr)
            outs.append(out)
            per.append(photo_metrics(out, hr, scale))
        if m != "nearest":
            shown[m] = crops(outs)
        mean = {k: statistics.fmean(p[k] for p in per) for k in per[0]}
        res[m] = mean
        for k, v in mean.items():
            emit(f"photo-x{scale}", m, k, v, "dB" if k.startswith("psnr") else "")
        emit(f"photo-x{scale}", m, "seconds", time.perf_counter() - t0, "s")
    if figures is not None:
        shown["original"] = crops(hrs)
        save_rows(shown, figures / f"superres_photo_x{scale}.png", enlarge=2)
    return res


# ---- speed ------------------------------------------------------------------------------------


def speed_part(run: str, repeats: int, tile: int, threads: int) -> Dict[str, float]:
    import cv2
    from PIL import Image

    a = _photo("astronaut")[:512, :512, :3]
    tmp = Path(tempfile.mkdtemp(prefix="sr_speed_"))
    src = tmp / "astronaut512.png"
    Image.fromarray(np.ascontiguousarray(a)).save(src)
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cv2.resize(a, (2048, 2048), interpolation=cv2.INTER_CUBIC)
        t.append(time.perf_counter() - t0)
    emit("speed", "bicubic", "MP/s", 2048 * 2048 / 1e6 / statistics.median(t))
    out: Dict[str, float] = {}
    exe = Path(sys.executable).with_name("ganforge")
    for label, tile_arg in (("tiled", str(tile)), ("untiled", "0")):
        walls, peaks, nets = [], [], []
        for _ in range(repeats):
            cmd = [
                str(exe),
                "upscale",
                "--model",
                run,
                "--image",
                str(src),
                "--out",
                str(tmp / "out.png"),
                "--tile",
                tile_arg,
                "--threads",
                str(threads),
            ]
            # each run in its own child (a fresh process, so ru_maxrss is its own peak), timed here
            code = (
                "import resource, subprocess, sys, time; t0 = time.perf_counter(); "
                "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); w = time.perf_counter() - t0; "
                "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode); "
                "print(p.stderr, file=sys.stderr)"
            )
            r = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
            wall, rss, rc = r.stdout.split()
            if rc != "0":
                print(r.stderr, file=sys.stderr)
                raise SystemExit(f"ganforge upscale failed ({label})")
            line = next(ln for ln in r.stderr.splitlines() if "->" in ln and " s" in ln)
            nets.append(float(line.rsplit(",", 1)[1].strip().split()[0]))
            walls.append(float(wall))
            peaks.append(int(rss) / 1024)  # MiB (ru_maxrss is in KiB on Linux)
        wall, peak, net = statistics.median(walls), max(peaks), statistics.median(nets)
        emit("speed", label, "wall", wall, "s")
        emit("speed", label, "upscale", net, "s")
        emit("speed", label, "MP/s", 2048 * 2048 / 1e6 / net)
        emit("speed", label, "peak_RSS", peak, "MiB")
        out[f"{label}_mps"], out[f"{label}_peak"] = 2048 * 2048 / 1e6 / net, peak
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mnist", metavar="RUN", help="a grey x4 superres run (preset mnist-sr)")
    ap.add_argument("--photo4", metavar="RUN", help="a colour x4 superres run (preset photo-sr)")
    ap.add_argument("--photo2", metavar="RUN", help="a colour x2 superres run (photo-sr superres.scale=2)")
    ap.add_argument("--baselines-only", action="store_true", help="print the baselines of every part without models")
    ap.add_argument("--speed", metavar="RUN", help="a colour x4 run to time on 512x512 -> 2048x2048")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--figures",
        metavar="DIR",
        help="write the side-by-side pictures (superres_mnist.png, superres_photo_x4.png, ...) here, e.g. docs",
    )
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    summary: List[str] = []
    if args.mnist or args.baselines_only:
        r = mnist_part(args.mnist, Path(args.figures) if args.figures else None)
        if "gan" in r:
            ratio = r["bicubic"]["fid"] / max(r["gan"]["fid"], 1e-9)
            summary.append(
                f"MNIST x4: GAN FID {r['gan']['fid']:.2f} vs bicubic {r['bicubic']['fid']:.2f} ({ratio:.1f}x, "
                f"target >= 10x {'met' if ratio >= 10 else 'MISSED'}), accuracy {100 * r['gan']['acc']:.1f}% "
                f"(target >= 90% {'met' if r['gan']['acc'] >= 0.9 else 'MISSED'})"
            )
    figures = Path(args.figures) if args.figures else None
    for scale, run in ((4, args.photo4), (2, args.photo2)):
        if run or args.baselines_only:
            r = photo_part(run, scale, figures)
            if "pixel" in r:
                gain = r["pixel"]["psnr_rgb"] - r["bicubic"]["psnr_rgb"]
                bit = (
                    f"photos x{scale}: pixel model {r['pixel']['psnr_rgb']:.2f} dB RGB vs bicubic "
                    f"{r['bicubic']['psnr_rgb']:.2f} ({gain:+.2f} dB; "
                    f"Y {r['pixel']['psnr_y'] - r['bicubic']['psnr_y']:+.2f}"
                )
                bit += f", target >= +1.0 {'met' if gain >= 1.0 else 'MISSED'})" if scale == 4 else ")"
                if "gan" in r:
                    gap = r["pixel"]["psnr_rgb"] - r["gan"]["psnr_rgb"]
                    bit += (
                        f"; GAN {r['gan']['psnr_rgb']:.2f} dB RGB ({gap:.2f} dB below pixel, "
                        f"target <= 2 {'met' if gap <= 2 else 'MISSED'})"
                    )
                summary.append(bit)
    if args.speed:
        s = speed_part(args.speed, args.repeats, args.tile, args.threads)
        summary.append(
            f"speed: {s['tiled_mps']:.3f} MP/s tiled, peak {s['tiled_peak']:.0f} MiB tiled vs "
            f"{s['untiled_peak']:.0f} MiB untiled (target <= 2048 MiB {'met' if s['tiled_peak'] <= 2048 else 'MISSED'})"
        )
    print(
        f"summary: {'; '.join(summary) or 'nothing measured'}; {(time.perf_counter() - t_start) / 60:.1f} min",
        flush=True,
    )


if __name__ == "__main__":
    main()
