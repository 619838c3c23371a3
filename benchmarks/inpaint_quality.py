"""Image completion quality: GAN latent optimisation and the trained completion network against
the classic baselines (OpenCV Telea and Navier-Stokes, mean fill), measured in the same run.

    python benchmarks/inpaint_quality.py --gan RUN --net RUN [--net-rgb RUN] --n 500
    python benchmarks/inpaint_quality.py --minutes 5            # trains what is not given, 5 minutes each

MNIST part: the first ``--n`` of the 2,000 held-out digits (``data.heldout=2000 data.part=heldout``:
digits that neither the shipped classifier nor a GAN trained on ``data.part=train`` has seen), with
fixed seeded masks: the centre 14x14 box, random boxes (10-50 % of the image) and free-form strokes
(DeepFill v2 style, ``ganforge.tasks.inpaint.masks``) at three hole ratios. For each method:

- hole L1: mean absolute error over the missing pixels, in [0, 1] units;
- hole PSNR: 10 log10(255^2 / MSE over the missing pixels), dB;
- FID of the completed digits against all 2,000 held-out originals, in the feature space of the
  shipped MNIST classifier (``ganforge.metrics``, 128-d), with the originals' own FID as floor;
- the classifier's accuracy on the completed digits (true labels), next to its accuracy on the
  original digits.

Photo part: 64x64 patches of real colour photographs that ship with scikit-image
(``astronaut``, ``coffee``, ``chelsea``), a centre 32x32 box, random boxes and free-form strokes;
hole L1 and PSNR for the completion network of a colour ``task=inpaint`` run and the baselines.
When ``--net-rgb`` is not given and ``--minutes`` is, one is trained on patches of *other*
photographs (``rocket``, ``hubble_deep_field``, ``immunohistochemistry`` from scikit-image and
scikit-learn's ``china``/``flower``), so the test photographs are unseen.

Latent optimisation (Yeh et al. 2017) runs with ``--steps``/``--restarts`` (defaults 300 / 4 here:
the benchmark completes thousands of images; the app's defaults are 500 / 8); every method blends
with ``--blend`` (Poisson by default). One line per figure, then a summary line with the targets:
on the centre 14x14 hole both learned methods beat Telea by at least 2x on FID, and the network
also beats it on hole L1.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

Masks = Dict[str, torch.Tensor]


# ---- masks ------------------------------------------------------------------------------
def _own_masks(n: int, h: int, w: int, kind: str, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """Seeded fallback masks when ``ganforge.tasks.inpaint.masks`` is absent: boxes of area in [lo, hi],
    or random-walk strokes 3 px wide grown until the hole reaches a target in [lo, hi]."""
    out = torch.zeros(n, 1, h, w)
    target = lo + (hi - lo) * torch.rand(n, generator=gen)
    for i in range(n):
        if kind == "box":
            area = float(target[i]) * h * w
            bh = int(min(h, max(1, round(math.sqrt(area)))))
            bw = int(min(w, max(1, round(area / bh))))
            y = int(torch.randint(0, h - bh + 1, (1,), generator=gen))
            x = int(torch.randint(0, w - bw + 1, (1,), generator=gen))
            out[i, 0, y : y + bh, x : x + bw] = 1
            continue
        m = torch.zeros(h, w)
        while float(m.mean()) < float(target[i]):
            p = torch.rand(2, generator=gen) * torch.tensor([h - 1.0, w - 1.0])
            for _ in range(int(torch.randint(4, 10, (1,), generator=gen))):
                ang = float(torch.rand(1, generator=gen)) * 2 * math.pi
                for _ in range(max(h, w) // 6):
                    p = (p + torch.tensor([math.sin(ang), math.cos(ang)])).clamp(
                        torch.zeros(2), torch.tensor([h - 1.0, w - 1.0])
                    )
                    y, x = int(p[0]), int(p[1])
                    m[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = 1
                    if float(m.mean()) >= float(target[i]):
                        break
        out[i, 0] = m
    return out


def make_masks(n: int, h: int, w: int, centre: int, seed: int) -> Masks:
    """The fixed mask sets: name -> bool [n, 1, h, w] (True = missing)."""
    try:
        from ganforge.tasks.inpaint.masks import center_box_mask, random_masks

        def rand(kind: str, lo: float, hi: float, s: int) -> torch.Tensor:
            return random_masks(n, h, w, kind, lo, hi, generator=torch.Generator().manual_seed(s))

        centre_m = center_box_mask(h, w, centre, centre).expand(n, 1, h, w)
        source = "ganforge.tasks.inpaint.masks"
    except ImportError:

        def rand(kind: str, lo: float, hi: float, s: int) -> torch.Tensor:
            return _own_masks(n, h, w, kind, lo, hi, torch.Generator().manual_seed(s))

        centre_m = torch.zeros(1, 1, h, w)
        centre_m[
            ..., (h - centre) // 2 : (h - centre) // 2 + centre, (w - centre) // 2 : (w - centre) // 2 + centre
        ] = 1
        centre_m = centre_m.expand(n, 1, h, w)
        source = "the benchmark's own seeded masks"
    sets = {
        f"centre{centre}x{centre}": centre_m,
        "box10-50%": rand("box", 0.10, 0.50, seed + 1),
        "free10-20%": rand("free", 0.10, 0.20, seed + 2),
        "free20-35%": rand("free", 0.20, 0.35, seed + 3),
        "free35-50%": rand("free", 0.35, 0.50, seed + 4),
    }
    print(
        f"# masks from {source}; mean hole fraction: "
        + ", ".join(f"{k} {float(v.float().mean()):.3f}" for k, v in sets.items()),
        flush=True,
    )
    return {k: v.bool().contiguous() for k, v in sets.items()}


# ---- baselines ----------------------------------------------------------------------------
def opencv_fill(images: torch.Tensor, holes: torch.Tensor, flag_name: str, radius: int = 3) -> torch.Tensor:
    """OpenCV's inpainting (Telea 2004 fast marching, or Bertalmio et al. 2001 Navier-Stokes)."""
    import cv2  # opencv-python-headless, imported only here

    flag = cv2.INPAINT_TELEA if flag_name == "telea" else cv2.INPAINT_NS
    out = torch.empty_like(images)
    for i in range(images.shape[0]):
        img = images[i].permute(1, 2, 0).numpy()  # [H, W, C]
        m = holes[i, 0].numpy().astype(np.uint8)
        res = cv2.inpaint(np.ascontiguousarray(img if img.shape[2] == 3 else img[..., 0]), m, radius, flag)
        out[i] = torch.from_numpy(res.reshape(img.shape)).permute(2, 0, 1)
    return out


def mean_fill(images: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """Every missing pixel set to the mean of the image's known pixels (per channel)."""
    known = (~holes).float()
    mean = (images.float() * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
    return torch.where(holes.expand_as(images), mean.round().to(torch.uint8).expand_as(images), images)


# ---- figures -------------------------------------------------------------------------------
def hole_errors(out: torch.Tensor, ref: torch.Tensor, holes: torch.Tensor) -> Tuple[float, float]:
    """(L1 in [0, 1] units, PSNR in dB) over the missing pixels of the whole set."""
    h = holes.expand_as(ref)
    d = out.float()[h] - ref.float()[h]
    l1 = float(d.abs().mean()) / 255
    mse = float((d * d).mean())
    return l1, 10 * math.log10(255**2 / max(mse, 1e-10))


def emit(part: str, masks: str, method: str, name: str, value: float, unit: str = "") -> None:
    print(f"{part:6s} {masks:12s} {method:14s} {name:10s} {value:10.4f}{(' ' + unit) if unit else ''}", flush=True)


# ---- models ------------------------------------------------------------------------------
def train_gan(minutes: float, runs_dir: Path) -> Path:
    import ganforge

    t0 = time.perf_counter()
    run = ganforge.train(
        overrides=[
            "data.heldout=2000",
            "data.part=train",
            f"train.minutes={minutes}",
            "train.progress=false",
            "train.tensorboard=false",
        ],
        runs_dir=runs_dir,
    )
    print(f"# trained GAN {run} in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return run


def train_net(overrides: List[str], runs_dir: Path, what: str) -> Path:
    from ganforge.tasks import resolve
    from ganforge.tasks.inpaint.trainer import InpaintTrainer

    t0 = time.perf_counter()
    cfg = resolve(
        None, ["task=inpaint", "train.progress=false", "train.tensorboard=false", "train.threads=1", *overrides]
    )
    run = InpaintTrainer(cfg, runs_dir=runs_dir, log=lambda m: None).run()
    print(f"# trained {what} completion network {run} in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return run


PHOTO_TEST = ("astronaut", "coffee", "chelsea")
PHOTO_TRAIN = ("rocket", "hubble_deep_field", "immunohistochemistry", "china", "flower")
# the larger training set of --make-photo-set (for a network trained on a GPU): every colour
# photograph shipped with scikit-image / scikit-learn except the three test photographs
PHOTO_TRAIN_LARGE = PHOTO_TRAIN + ("stereo_motorcycle", "retina")


def _photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    img = getattr(skimage.data, name)()
    return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)


def photo_patches(names, size: int = 64, stride: int = 64, scales=(1.0,), cap: int = 0, seed: int = 0) -> torch.Tensor:
    """uint8 [N, 3, size, size]: a grid of patches of each photograph (at each scale)."""
    from PIL import Image

    out = []
    rng = np.random.default_rng(seed)
    for name in names:
        full = Image.fromarray(_photo(name)).convert("RGB")
        per = []
        for s in scales:
            im = full if s == 1.0 else full.resize((round(full.width * s), round(full.height * s)), Image.BILINEAR)
            a = np.asarray(im)
            for y in range(0, a.shape[0] - size + 1, stride):
                for x in range(0, a.shape[1] - size + 1, stride):
                    per.append(a[y : y + size, x : x + size])
        if cap and len(per) > cap:
            per = [per[i] for i in sorted(rng.choice(len(per), cap, replace=False))]
        out += per
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def write_patches(patches: torch.Tensor, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(patches):
        Image.fromarray(p.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return folder


def make_photo_set(folder: Path) -> None:
    """The larger colour training set: 64x64 patches at stride 16 and three scales of every
    photograph in PHOTO_TRAIN_LARGE (none of the test photographs), up to 4,000 per photograph."""
    patches = photo_patches(PHOTO_TRAIN_LARGE, stride=16, scales=(1.0, 0.75, 0.5), cap=4000)
    write_patches(patches, folder)
    print(f"# {len(patches)} training patches of {', '.join(PHOTO_TRAIN_LARGE)} in {folder}", flush=True)


def train_photo_net(minutes: float, runs_dir: Path, overrides: List[str]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="photo_patches_", dir=runs_dir))
    patches = photo_patches(PHOTO_TRAIN, stride=32, scales=(1.0, 0.5), cap=600)
    write_patches(patches, folder)
    print(f"# {len(patches)} training patches of {', '.join(PHOTO_TRAIN)} in {folder}", flush=True)
    return train_net(
        [
            "data.dataset=folder",
            f"data.root={folder}",
            "data.channels=3",
            "data.hflip=true",
            f"train.minutes={minutes}",
            "name=photos-inpaint",
            *overrides,
        ],
        runs_dir,
        "colour",
    )


# ---- the parts -------------------------------------------------------------------------------
def run_methods(
    part: str,
    images: torch.Tensor,
    masks: Masks,
    methods: Dict[str, Callable],
    on_result: Callable[[str, str, torch.Tensor], None],
) -> Dict[Tuple[str, str], Dict[str, float]]:
    res: Dict[Tuple[str, str], Dict[str, float]] = {}
    for mname, holes in masks.items():
        for meth, fn in methods.items():
            t0 = time.perf_counter()
            out = fn(images, holes)
            dt = time.perf_counter() - t0
            assert torch.equal(out[~holes.expand_as(out)], images[~holes.expand_as(images)]), (
                f"{meth} changed known pixels"
            )
            l1, psnr = hole_errors(out, images, holes)
            emit(part, mname, meth, "hole_L1", l1)
            emit(part, mname, meth, "hole_PSNR", psnr, "dB")
            emit(part, mname, meth, "seconds", dt, "s")
            res[(mname, meth)] = {"l1": l1, "psnr": psnr, "s": dt}
            extra = on_result(mname, meth, out)
            res[(mname, meth)].update(extra or {})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--gan", help="an unconditional GAN run trained on data.heldout=2000 data.part=train")
    ap.add_argument("--net", help="a task=inpaint run on MNIST (data.heldout=2000 data.part=train)")
    ap.add_argument("--net-rgb", help="a colour task=inpaint run of 64x64 images, for the photographs")
    ap.add_argument("--minutes", type=float, default=None, help="train each model that is not given for this long")
    ap.add_argument("--runs-dir", default="runs/inpaint_bench")
    ap.add_argument("--n", type=int, default=500, help="held-out digits to complete (default 500)")
    ap.add_argument("--steps", type=int, default=300, help="latent optimisation steps (default 300)")
    ap.add_argument("--restarts", type=int, default=4, help="latent restarts (default 4)")
    ap.add_argument("--blend", default="poisson", choices=["poisson", "feather", "none"])
    ap.add_argument("--chunk", type=int, default=250, help="images per latent-optimisation batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-photos", action="store_true", help="skip the colour photograph part")
    ap.add_argument("--no-mnist", action="store_true", help="skip the MNIST part (photographs only)")
    ap.add_argument(
        "--photo-overrides",
        default="inpaint.width=16 train.batch_size=32",
        help="config overrides for the colour network the benchmark trains (default: a narrower U-Net, "
        "so a few CPU minutes are hundreds of steps)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--make-photo-set",
        metavar="DIR",
        help="only write the larger colour training set (patches of the non-test photographs) to DIR "
        "as PNGs, for training a colour network with ganforge train task=inpaint, and exit",
    )
    args = ap.parse_args()
    if args.make_photo_set:
        make_photo_set(Path(args.make_photo_set))
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)

    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics import get_feature_space
    from ganforge.metrics.compute import fid
    from ganforge.tasks.inpaint.app import complete_batch, load_completer

    runs_dir = Path(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    gan = (
        Path(args.gan)
        if args.gan
        else (train_gan(args.minutes, runs_dir) if args.minutes and not args.no_mnist else None)
    )

    net = Path(args.net) if args.net else None
    if net is None and args.minutes and not args.no_mnist:
        net = train_net(["data.heldout=2000", "data.part=train", f"train.minutes={args.minutes}"], runs_dir, "MNIST")
    net_rgb = Path(args.net_rgb) if args.net_rgb else None
    if net_rgb is None and args.minutes and not args.no_photos:
        net_rgb = train_photo_net(args.minutes, runs_dir, args.photo_overrides.split())

    # ---- MNIST ----
    res: Dict = {}
    if not args.no_mnist:
        held = load_dataset(DataConfig(heldout=2000, part="heldout"))
        n = min(args.n, len(held))
        x, y = held.images[:n].contiguous(), held.labels[:n]
        _, h, w = held.shape
        space = get_feature_space("mnist")
        ref = space.extract(held.images)["features"]
        orig = space.extract(x)
        acc_orig = float((orig["logits"].argmax(1) == y).float().mean())
        fid_floor = fid(orig["features"], ref)
        print(
            f"# MNIST: {n} held-out digits, FID reference: all {len(held)} held-out originals (mnist classifier "
            f"features, {space.feature_dim}-d)",
            flush=True,
        )
        emit("mnist", "-", "originals", "FID", fid_floor)
        emit("mnist", "-", "originals", "accuracy", acc_orig)
        masks = make_masks(n, h, w, 14, args.seed)

        methods: Dict[str, Callable] = {
            "mean": mean_fill,
            "telea": lambda a, m: opencv_fill(a, m, "telea"),
            "navier-stokes": lambda a, m: opencv_fill(a, m, "ns"),
        }
        latent_opts = dict(steps=args.steps, restarts=args.restarts, seed=args.seed)
        if gan is not None:
            comp = load_completer(gan, "latent")
            print(
                f"# latent: {comp.checkpoint_path}, {args.restarts} restarts x {args.steps} steps, blend {args.blend}",
                flush=True,
            )

            def latent(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
                parts = []
                for i in range(0, a.shape[0], args.chunk):
                    out, _ = complete_batch(
                        comp, a[i : i + args.chunk], m[i : i + args.chunk], args.blend, **latent_opts
                    )
                    parts.append(out)
                return torch.cat(parts)

            methods["latent"] = latent
        if net is not None:
            ncomp = load_completer(net, "network")
            print(f"# network: {ncomp.checkpoint_path}, blend {args.blend}", flush=True)
            methods["network"] = lambda a, m: complete_batch(ncomp, a, m, args.blend)[0]

        def mnist_extra(mname: str, meth: str, out: torch.Tensor) -> Dict[str, float]:
            e = space.extract(out)
            f = fid(e["features"], ref)
            acc = float((e["logits"].argmax(1) == y).float().mean())
            emit("mnist", mname, meth, "FID", f)
            emit("mnist", mname, meth, "accuracy", acc)
            return {"fid": f, "acc": acc}

        res = run_methods("mnist", x, masks, methods, mnist_extra)

    # ---- photographs ----
    if not args.no_photos:
        test = photo_patches(PHOTO_TEST, stride=64)
        print(
            f"# photos: {len(test)} 64x64 patches of {', '.join(PHOTO_TEST)} (scikit-image sample images)", flush=True
        )
        pmasks = make_masks(len(test), 64, 64, 32, args.seed + 100)
        pmethods: Dict[str, Callable] = {
            "mean": mean_fill,
            "telea": lambda a, m: opencv_fill(a, m, "telea"),
            "navier-stokes": lambda a, m: opencv_fill(a, m, "ns"),
        }
        if net_rgb is not None:
            pcomp = load_completer(net_rgb, "network")
            print(f"# network: {pcomp.checkpoint_path}", flush=True)
            pmethods["network"] = lambda a, m: complete_batch(pcomp, a, m, args.blend)[0]
        run_methods("photo", test, pmasks, pmethods, lambda *a: None)

    # ---- summary ----
    if args.no_mnist:
        print(f"summary: photographs only; {(time.perf_counter() - t_start) / 60:.1f} min", flush=True)
        return
    c = "centre14x14"
    bits, ok = [], True
    telea = res[(c, "telea")]
    for meth in ("latent", "network"):
        if (c, meth) not in res:
            bits.append(f"{meth}: not run")
            continue
        r = res[(c, meth)]
        ratio = telea["fid"] / max(r["fid"], 1e-9)
        good = ratio >= 2
        line = (
            f"{meth} FID {r['fid']:.2f} vs Telea {telea['fid']:.2f} "
            f"({ratio:.1f}x, target >= 2x {'met' if good else 'MISSED'})"
        )
        if meth == "network":
            l1_good = r["l1"] < telea["l1"]
            good = good and l1_good
            line += f", hole L1 {r['l1']:.4f} vs {telea['l1']:.4f} ({'met' if l1_good else 'MISSED'})"
        ok = ok and good
        bits.append(line)
    print(
        f"summary: MNIST {c}, {n} digits: "
        + "; ".join(bits)
        + f"; accuracy originals {acc_orig:.3f}"
        + "".join(f", {m} {res[(c, m)]['acc']:.3f}" for m in ("latent", "network", "telea") if (c, m) in res)
        + f"; {'all targets met' if ok else 'targets not all met'}; {(time.perf_counter() - t_start) / 60:.1f} min",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
