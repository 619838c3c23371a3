"""Video quality (issue 18): a video run against an image GAN trained for the same time, on Moving MNIST.

    python benchmarks/video_quality.py --video RUN --image RUN      # measure two finished runs
    # train both here (one after the other), then measure
    python benchmarks/video_quality.py --minutes 30

``--video`` is a ``task=video`` run on ``data.dataset=moving-mnist`` (preset ``moving-mnist``); ``--image`` is
a GAN run on single frames of the same clips (``ganforge train data.dataset=moving-mnist data.size=32
model.conditional=false``: the frames of the default Moving-MNIST clips). The baseline's clips are T
independent samples of the image GAN, so its frames look like frames but nothing ties them together.
With ``--minutes M`` the script trains the preset ``moving-mnist`` and that image GAN for M minutes each
(``train.minutes=M``, one thread, one after the other) before measuring.

Reference: ``--clips`` real clips made with the run's Moving-MNIST settings but another seed (never seen in
training); every model draws ``--clips`` clips of the run's T frames. Figures, one line each:

- per-frame FID: every frame of every clip against the reference frames, in the 128-d feature space of
  the MNIST classifier that ships with ganforge (whole frames, resized to 28x28 by the classifier's input
  rule); a second set of real clips gives the real-vs-real floor;
- identity consistency: the share of clips whose digit class, as the classifier sees it, is the same in
  every frame. The classifier reads a ``digit_size`` box around each frame's centre of mass (the way
  MNIST itself centres digits), resized to 28x28; real clips show the ceiling of this reading;
- motion: each frame's centre of mass (intensity-weighted) traces the digit; the mean displacement
  between consecutive frames (pixels per frame) and the mean change of that displacement (acceleration,
  pixels per frame^2; near 0 for straight lines, larger at bounces and for jitter), each compared with the
  real clips' as a relative error.

A summary line ends the output with the targets: identity >= 90%, per-frame FID within 2x of the image
GAN's, mean displacement within 25% of the real clips'. Single-digit clips only (``video.digits=1``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict

import torch
import torch.nn.functional as F

import ganforge
from ganforge.metrics.compute import fid
from ganforge.metrics.features import get_feature_space
from ganforge.metrics.mnist_classifier import load_classifier, to_classifier_input
from ganforge.tasks.video.data import default_digit_size, moving_mnist


def centres(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 1, H, W] -> intensity-weighted centres of mass [N, (y, x)] in pixels (the middle when blank)."""
    x = frames[:, 0].float()  # [N, H, W]
    n, h, w = x.shape
    mass = x.sum((1, 2)).clamp_min(1e-6)
    ys = torch.arange(h, dtype=torch.float32)
    xs = torch.arange(w, dtype=torch.float32)
    cy = (x.sum(2) * ys).sum(1) / mass
    cx = (x.sum(1) * xs).sum(1) / mass
    blank = x.sum((1, 2)) == 0
    cy[blank], cx[blank] = (h - 1) / 2, (w - 1) / 2
    return torch.stack([cy, cx], 1)


def digit_crops(frames: torch.Tensor, box: int) -> torch.Tensor:
    """uint8 [N, 1, H, W] -> uint8 [N, 1, box, box]: a box around each frame's centre of mass (zero outside)."""
    c = centres(frames).round().long()  # [N, 2]
    pad = F.pad(frames, (box, box, box, box))  # [N, 1, H + 2 box, W + 2 box]
    y0 = c[:, 0] - box // 2 + box
    x0 = c[:, 1] - box // 2 + box
    iy = (y0[:, None] + torch.arange(box))[:, :, None]  # [N, box, 1]
    ix = (x0[:, None] + torch.arange(box))[:, None, :]  # [N, 1, box]
    n = torch.arange(frames.shape[0])[:, None, None]
    return pad[:, 0][n, iy, ix][:, None]  # [N, 1, box, box]


@torch.no_grad()
def digit_classes(frames: torch.Tensor, box: int) -> torch.Tensor:
    """The shipped classifier's class for the digit of each frame uint8 [N, 1, H, W] -> [N]."""
    net, _ = load_classifier()
    out = [net(to_classifier_input(c))[1].argmax(1) for c in digit_crops(frames, box).split(1024)]
    return torch.cat(out)


def clip_stats(clips: torch.Tensor, box: int) -> Dict[str, float]:
    """Identity consistency and motion figures of uint8 clips [N, T, 1, H, W]."""
    n, t = clips.shape[:2]
    frames = clips.reshape(n * t, *clips.shape[2:])
    cls = digit_classes(frames, box).view(n, t)
    same = (cls == cls[:, :1]).all(1).float().mean().item()
    c = centres(frames).view(n, t, 2)
    v = c[:, 1:] - c[:, :-1]  # [N, T-1, 2]
    a = v[:, 1:] - v[:, :-1]  # [N, T-2, 2]
    return {"identity": same, "displacement": v.norm(dim=2).mean().item(), "acceleration": a.norm(dim=2).mean().item()}


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-9)


def train_both(minutes: float, runs_dir: Path) -> tuple:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    video = ganforge.train(
        preset="moving-mnist", overrides=[f"train.minutes={minutes}", "train.progress=false"], runs_dir=runs_dir
    )
    t1 = time.perf_counter()
    image = ganforge.train(
        overrides=[
            "data.dataset=moving-mnist",
            "data.size=32",
            "model.conditional=false",
            "eval.every_kimg=0",
            f"train.minutes={minutes}",
            "train.progress=false",
        ],
        runs_dir=runs_dir,
    )
    print(
        f"trained: video {video} ({(t1 - t0) / 60:.1f} min), "
        f"image GAN {image} ({(time.perf_counter() - t1) / 60:.1f} min)"
    )
    return video, image


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, help="a task=video run on moving-mnist")
    ap.add_argument("--image", type=Path, help="a GAN run on the frames of the same clips (the baseline)")
    ap.add_argument("--minutes", type=float, help="train both for this many minutes first (instead of --video/--image)")
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/video-bench"))
    ap.add_argument("--clips", type=int, default=500, help="clips per model and per reference set (default 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sub-pixel",
        action="store_true",
        help="sample the video run with sub-pixel motion (video.snap=false) instead of its own setting",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.minutes:
        args.video, args.image = train_both(args.minutes, args.runs_dir)
    if not (args.video and args.image):
        ap.error("give --video RUN and --image RUN, or --minutes M")

    vh = ganforge.load(args.video)
    if args.sub_pixel:
        vh.module.snap = False
    gh = ganforge.load(args.image)
    v = vh.config.video
    if vh.task != "video" or vh.config.data.dataset != "moving-mnist" or v.digits != 1:
        raise SystemExit(f"--video {args.video}: expected a task=video run on single-digit moving-mnist")
    if gh.task != "gan" or tuple(gh.img_shape) != tuple(vh.img_shape):
        raise SystemExit(
            f"--image {args.image}: expected a GAN run of {tuple(vh.img_shape)} frames, got {gh.task} {gh.img_shape}"
        )
    size, t = vh.img_shape[1], vh.frames
    box = v.digit_size or default_digit_size(size)
    n = args.clips
    # reference and floor: unseen real clips (the run's settings, other seeds)
    real = moving_mnist(n, t, size, 1, v.digit_size, seed=v.data_seed + 1000 + args.seed).clips
    real2 = moving_mnist(n, t, size, 1, v.digit_size, seed=v.data_seed + 2000 + args.seed).clips
    fake_v = vh.sample_uint8(n, seed=args.seed)  # [N, T, 1, H, W]
    fake_i = gh.sample_uint8(n * t, seed=args.seed).view(n, t, *gh.img_shape)  # T independent frames per clip

    space = get_feature_space("mnist")
    feats = {
        k: space.extract(x.reshape(-1, *x.shape[2:]))["features"]
        for k, x in {"real": real, "real2": real2, "video": fake_v, "image": fake_i}.items()
    }
    fids = {k: fid(feats[k], feats["real"]) for k in ("real2", "video", "image")}
    stats = {k: clip_stats(x, box) for k, x in {"real": real2, "video": fake_v, "image": fake_i}.items()}

    print(
        f"video run {args.video} (step {vh.step}, {vh.kimg:.1f} k clips, "
        f"{'whole-pixel' if getattr(vh.module, 'snap', False) else 'sub-pixel'} motion); "
        f"image GAN {args.image} "
        f"(step {gh.step}, {gh.kimg:.1f} kimg); {n} clips x {t} frames of {size}x{size}, digit box {box}"
    )
    print(
        f"per-frame FID (mnist classifier space, {n * t} frames vs {n * t} real): real {fids['real2']:.2f}  "
        f"video {fids['video']:.2f}  image GAN {fids['image']:.2f}  "
        f"(video / image GAN = {fids['video'] / fids['image']:.2f})"
    )
    for k, label in (("real", "real clips"), ("video", "video GAN"), ("image", "image GAN (independent frames)")):
        s = stats[k]
        print(
            f"{label:32s} identity {100 * s['identity']:5.1f}%  displacement {s['displacement']:.3f} px/frame  "
            f"acceleration {s['acceleration']:.3f} px/frame^2"
        )
    sv, sr = stats["video"], stats["real"]
    disp_err, acc_err = rel(sv["displacement"], sr["displacement"]), rel(sv["acceleration"], sr["acceleration"])
    print(
        f"motion vs real: displacement {100 * disp_err:.1f}% off, acceleration {100 * acc_err:.1f}% off "
        f"(image GAN: {100 * rel(stats['image']['displacement'], sr['displacement']):.0f}% off)"
    )
    ok_id = sv["identity"] >= 0.90
    ok_fid = fids["video"] <= 2 * fids["image"]
    ok_motion = disp_err <= 0.25
    print(
        f"summary: identity {100 * sv['identity']:.1f}% (target >= 90%: {'met' if ok_id else 'MISSED'}; baseline "
        f"{100 * stats['image']['identity']:.1f}%), per-frame FID {fids['video']:.2f} vs image GAN {fids['image']:.2f} "
        f"(target <= 2x: {'met' if ok_fid else 'MISSED'}), displacement {100 * disp_err:.1f}% off real "
        f"(target <= 25%: {'met' if ok_motion else 'MISSED'})"
    )
    return 0 if ok_id and ok_fid and ok_motion else 1


if __name__ == "__main__":
    sys.exit(main())
