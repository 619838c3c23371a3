"""Robustness of ganforge's invisible watermark next to the ``invisible-watermark`` package's dwtDct,
dwtDctSvd and rivaGan (issue 15), on held-out photographs and on generated digits.

    python benchmarks/watermark_robustness.py --model runs/NNNNN-photos128-wm32 [--gan runs/NNNNN-mnist-dcgan]
        [--crops 8] [--digits 200] [--sizes 256,full] [--no-peers]

Test images: the photographs no ganforge model trains on (scikit-image's astronaut, coffee, chelsea,
camera; matplotlib's grace_hopper), each resized to 256x256 plus ``--crops`` seeded 256x256 crops of
each (the "256" set), and the photographs at full size (the "full" set). Every image gets a seeded
random 32-bit message (for ganforge: a 2-byte payload coded with BCH into its 32 bits; for the peers
the same 32 bits), is marked by each method, and attacked:

    none, jpeg90/75/50 (OpenCV), resize0.5/0.75 (area), crop10/25 (a centred window of 90%/75% of each
    side, resized back), blur1 (Gaussian sigma 1), noise (Gaussian, sigma 5 grey levels), bright+20 /
    bright-20 (intensities x1.2 / x0.8), rotate2 (2 degrees about the centre, reflected border),
    combo (resize 0.75, JPEG 75, brightness x1.1)

Figures per method and attack: PSNR and SSIM of marked vs original (no attack), the mean bit accuracy
of the raw 32 bits, and the detection TPR at FPR 1e-6: for ganforge the test ``ganforge watermark
detect`` makes (the better of the soft statistic, bits weighed by the decoder's confidence, and the count
of matching bits, over its 4 readings, the p-value multiplied by 8), and in the column "ganforge
(binomial)" the count alone (at least 30 of 32 with the 4 readings); for the peers, which give bits only,
the binomial test on their one reading (at least 30 of 32). The FPR is measured on the unmarked images
under the same attacks (the fraction declared marked; for the peers, which are slow, on the unattacked
unmarked images only, and the peers run on the first ``--peer-images`` images of each set, rivaGan at
full size only with ``--riva-full``). The peers' decoders get images resized back to the original size
where an attack shrank them (rivaGan needs at least 256x256); ganforge reads any size. Embed and decode
times are per image, on one thread (``--threads``), on whatever else the machine is doing.

With ``--gan RUN``: ``--digits`` digits sampled from a GAN run (28x28) are marked the way ``ganforge
sample --watermark`` marks them; the same figures, and the FID (MNIST classifier features, against the
run's training digits) of the marked and of the unmarked samples. ``--digits-model WM_RUN`` repeats that
section with a second watermark model (one trained on the digits' own domain and size).

With ``--validation``: the same table for ganforge alone on the **validation** photographs instead (scikit-image's
grey brick, grass, gravel, coins, moon, clock, cell, text and page, which neither the preset's training
data nor the test set contains: each resized to 256x256 plus 6 seeded crops, 63 images), for choosing
settings without looking at the test photographs.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Tuple

import cv2
import numpy as np
import torch

ATTACKS = [
    "none",
    "jpeg90",
    "jpeg75",
    "jpeg50",
    "resize0.5",
    "resize0.75",
    "crop10",
    "crop25",
    "blur1",
    "noise",
    "bright+20",
    "bright-20",
    "rotate2",
    "combo",
]
FPR = 1e-6


def photos() -> Dict[str, np.ndarray]:
    """The held-out photographs, uint8 H x W x 3 RGB (grey ones as three equal channels)."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    out = {}
    for name in ("astronaut", "coffee", "chelsea", "camera"):
        a = getattr(data, name)()
        out[name] = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        out["grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    return out


def resized_and_crops(a: np.ndarray, crops: int, rng: np.random.Generator) -> List[np.ndarray]:
    """``a`` resized to 256x256 (area), then ``crops`` 256x256 crops of it at places drawn from ``rng``."""
    out = [cv2.resize(a, (256, 256), interpolation=cv2.INTER_AREA)]
    h, w = a.shape[:2]
    for _ in range(crops):
        y, x = rng.integers(0, h - 256 + 1), rng.integers(0, w - 256 + 1)
        out.append(a[y : y + 256, x : x + 256].copy())
    return out


def test_sets(crops: int, seed: int = 0) -> Dict[str, List[np.ndarray]]:
    rng = np.random.default_rng(seed)
    full = photos()
    s256 = []
    for a in full.values():
        s256 += resized_and_crops(a, crops, rng)
    return {"256": s256, "full": list(full.values())}


def validation_set(crops: int = 6, seed: int = 11) -> List[np.ndarray]:
    """The validation photographs (module docstring), uint8 256 x 256 x 3."""
    from skimage import data

    rng = np.random.default_rng(seed)
    out = []
    for name in ("brick", "grass", "gravel", "coins", "moon", "clock", "cell", "text", "page"):
        a = getattr(data, name)()
        a = np.repeat(a[..., None], 3, axis=2)
        h, w = a.shape[:2]
        if min(h, w) < 256:  # text and page: enlarged so that 256x256 crops fit
            f = 256 / min(h, w)
            a = cv2.resize(a, (max(256, round(w * f)), max(256, round(h * f))), interpolation=cv2.INTER_LINEAR)
        out += resized_and_crops(a, crops, rng)
    return out


# ---- attacks on uint8 H x W x C (RGB) ----------------------------------------------------------------


def _jpeg(a: np.ndarray, q: int) -> np.ndarray:
    grey = a.shape[2] == 1
    ok, buf = cv2.imencode(".jpg", a[..., 0] if grey else a[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    d = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    return d[..., None] if grey else d[..., ::-1].copy()


def _fit(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    return a if a.ndim == 3 else a[..., None]


def _resize(a: np.ndarray, s: float) -> np.ndarray:
    h, w = a.shape[:2]
    return _fit(cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), a)


def _crop(a: np.ndarray, cut: float) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = round(h * (1 - cut)), round(w * (1 - cut))
    y, x = (h - ch) // 2, (w - cw) // 2
    return _fit(cv2.resize(a[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR), a)


def _rotate(a: np.ndarray, deg: float) -> np.ndarray:
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return _fit(cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), a)


def attack(a: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 H x W x C -> the attacked image (smaller for resize attacks)."""
    if name == "none":
        return a
    if name.startswith("jpeg"):
        return _jpeg(a, int(name[4:]))
    if name.startswith("resize"):
        return _resize(a, float(name[6:]))
    if name.startswith("crop"):
        return _crop(a, int(name[4:]) / 100)
    if name == "blur1":
        return _fit(cv2.GaussianBlur(a, (0, 0), 1.0), a)
    if name == "noise":
        return np.clip(a + rng.normal(0, 5, a.shape), 0, 255).round().astype(np.uint8)
    if name in ("bright+20", "bright-20"):
        return np.clip(a * (1.2 if "+" in name else 0.8), 0, 255).round().astype(np.uint8)
    if name == "rotate2":
        return _rotate(a, 2.0)
    if name == "combo":
        return np.clip(_jpeg(_resize(a, 0.75), 75) * 1.1, 0, 255).round().astype(np.uint8)
    raise ValueError(name)


# ---- methods: embed(img, bits) -> img, decode(img) -> bits -------------------------------------------


def _read_once(method, a: np.ndarray, extra, read):
    """``read()`` for image ``a`` (and ``extra``), remembered for the last image: :func:`measure` decodes an
    attacked image, then tests it, and a reading (rivaGan's takes a second) is not made twice."""
    key = (a.shape, hash(a.tobytes()), extra)
    if getattr(method, "_last", (None,))[0] != key:
        method._last = (key, read())
    return method._last[1]


class Ganforge:
    name = "ganforge"
    min_side = 16

    def __init__(self, run: str):
        from ganforge.tasks.watermark import app as wm

        self.wm = wm
        self.h = wm.load_watermarker(run)
        self.code = wm.message_code(self.h.bits)

    def message(self, rng) -> np.ndarray:
        return self.code.encode(bytes(rng.integers(0, 256, self.code.payload_bytes, dtype=np.uint8)))

    strength = 1.0

    def embed(self, a: np.ndarray, bits: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None]
        return self.h.embed(x, torch.from_numpy(bits.astype(np.float32)), self.strength)[0].permute(1, 2, 0).numpy()

    def logits(self, a: np.ndarray) -> np.ndarray:
        """The readings' logits ``[K, 32]`` (as it is, and as centred crops), as ``detect`` and ``extract`` read
        them."""
        x = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None]
        return _read_once(self, a, None, lambda: self.h.logits_search(x)[0].numpy())

    def decode(self, a: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
        """The bits ``extract`` reports (apps.watermark.best_reading)."""
        logits = self.logits(a)
        return (logits[self.wm.best_reading(logits, self.h.crop_margin)] > 0).astype(np.uint8)

    def p_values(self, a: np.ndarray, bits: np.ndarray, size=None) -> Dict[str, float]:
        """Detection's p-values (``apps.watermark.detect``): its default test (``combined``: the better of the
        soft statistic and the count over the 4 readings, times 8) and the count alone (times 4)."""
        logits = self.logits(a)  # [K, 32]
        return {t: self.wm.detection_p_value(logits, bits, t)[0] for t in ("combined", "binomial")}


class Peer:
    """``invisible-watermark``'s method ``method`` (dwtDct, dwtDctSvd, rivaGan) on 32 bits, BGR as it expects."""

    def __init__(self, method: str):
        from imwatermark import WatermarkDecoder, WatermarkEncoder

        self.name, self.method = method, method
        self.E, self.D = WatermarkEncoder, WatermarkDecoder
        if method == "rivaGan":
            WatermarkEncoder.loadModel()
            WatermarkDecoder.loadModel()
        self.min_side = 256 if method == "rivaGan" else 64

    def embed(self, a: np.ndarray, bits: np.ndarray) -> np.ndarray:
        enc = self.E()
        enc.set_watermark("bits", [int(b) for b in bits])
        return enc.encode(np.ascontiguousarray(a[..., ::-1]), self.method)[..., ::-1].copy()

    def decode(self, a: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
        return _read_once(self, a, tuple(size), lambda: self._decode(a, size))

    def _decode(self, a: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
        if a.shape[:2] != size:  # resized back where an attack shrank the image
            a = cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        dec = self.D("bits", 32)
        return np.array(dec.decode(np.ascontiguousarray(a[..., ::-1]), self.method), dtype=np.uint8)[:32]

    def p_values(self, a: np.ndarray, bits: np.ndarray, size: Tuple[int, int]) -> Dict[str, float]:
        from ganforge.tasks.watermark.app import p_value

        return {"binomial": p_value(int((self.decode(a, size) == bits).sum()), 32)}


# ---- measuring ---------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def measure(
    method, images: List[np.ndarray], messages: List[np.ndarray], seed: int = 0, fpr_all: bool = True
) -> Dict[str, object]:
    """Every figure of ``method`` on ``images``; ``fpr_all=False`` measures the FPR on the unattacked
    unmarked images only (for the slow peers). Detection figures per test of ``method.p_values``."""
    rows: Dict[str, Dict[str, list]] = {k: {"acc": [], "tp": [], "fp": []} for k in ATTACKS}
    ps, ss, t_embed, t_dec = [], [], [], []
    for i, (a, bits) in enumerate(zip(images, messages)):
        t0 = time.perf_counter()
        m = method.embed(a, bits)
        t_embed.append(time.perf_counter() - t0)
        ps.append(psnr(m, a))
        ss.append(ssim(m, a))
        for name in ATTACKS:
            rng = np.random.default_rng(seed * 1000 + i)
            am, ac = attack(m, name, rng), attack(a, name, rng)
            t0 = time.perf_counter()
            got = method.decode(am, a.shape[:2])
            t_dec.append(time.perf_counter() - t0)
            rows[name]["acc"].append(int((got == bits).sum()) / 32)
            rows[name]["tp"].append({t: p <= FPR for t, p in method.p_values(am, bits, a.shape[:2]).items()})
            if fpr_all or name == "none":
                rows[name]["fp"].append({t: p <= FPR for t, p in method.p_values(ac, bits, a.shape[:2]).items()})
    tests = list(rows["none"]["tp"][0])

    def rate(v: list, t: str) -> float:
        return float(np.mean([d[t] for d in v])) if v else float("nan")

    return {
        "psnr": float(np.mean(ps)),
        "ssim": float(np.mean(ss)),
        "embed_s": float(np.median(t_embed)),
        "decode_s": float(np.median(t_dec)),
        "n": len(images),
        "tests": tests,
        "attacks": {
            k: {
                "acc": float(np.mean(v["acc"])),
                **{f"tp_{t}": rate(v["tp"], t) for t in tests},
                **{f"fp_{t}": rate(v["fp"], t) for t in tests},
            }
            for k, v in rows.items()
        },
    }


def report(title: str, results: Dict[str, Dict[str, object]], n: int) -> None:
    """One table: a column per method and detection test (ganforge: detect's combined test, then the count alone)."""
    cols = [(m, t) for m in results for t in results[m]["tests"]]
    print(f"\n## {title} (bit accuracy / TPR at FPR 1e-6 / measured FPR; '-': not measured)")
    print(
        "| attack | "
        + " | ".join(
            f"{m}{' (binomial)' if t == 'binomial' and len(results[m]['tests']) > 1 else ''} ({results[m]['n']} images)"
            for m, t in cols
        )
        + " |"
    )
    print("|---|" + "---|" * len(cols))
    for key, fmt in (("psnr", "{:.2f} dB"), ("ssim", "{:.4f}"), ("embed_s", "{:.3f} s"), ("decode_s", "{:.3f} s")):
        print(f"| {key} | " + " | ".join(fmt.format(results[m][key]) for m, _ in cols) + " |")
    for k in ATTACKS:
        cells = []
        for m, t in cols:
            r = results[m]["attacks"][k]
            fp = "-" if r[f"fp_{t}"] != r[f"fp_{t}"] else f"{r[f'fp_{t}']:.2f}"
            cells.append(f"{r['acc']:.3f} / {r[f'tp_{t}']:.2f} / {fp}")
        print(f"| {k} | " + " | ".join(cells) + " |")
    sys.stdout.flush()


def digits(args, gf: Ganforge, label: str) -> None:
    import ganforge
    from ganforge.data import load_dataset
    from ganforge.metrics.evaluation import evaluate
    from ganforge.tasks.watermark.app import mark_batch

    g = ganforge.load_generator(args.gan)
    imgs = g.sample_uint8(args.digits, seed=1)  # [N, 1, 28, 28]
    rng = np.random.default_rng(7)
    messages = [gf.message(rng) for _ in range(args.digits)]
    marked = torch.cat(
        [gf.h.embed(imgs[i : i + 1], torch.from_numpy(messages[i].astype(np.float32))) for i in range(args.digits)]
    )
    assert torch.equal(
        marked[:1], mark_batch(gf.h, imgs[:1], bytes(gf.code.decode(messages[0])[0]))
    )  # what sample does
    arr = [im.permute(1, 2, 0).numpy() for im in imgs]

    class Pre:  # the marked digits were made above (batched); measure() embeds again, identically
        name = "ganforge"

        def embed(self, a, bits):
            return gf.embed(a, bits)

        def decode(self, a, size):
            return gf.decode(a, size)

        def p_values(self, a, bits, size=None):
            return gf.p_values(a, bits)

    res = measure(Pre(), arr, messages, seed=3)
    report(f"generated digits 28x28 from {args.gan}, marked by {label}", {"ganforge": res}, len(arr))
    ref = load_dataset(g.config.data).images
    kw = dict(metrics="fid", features="mnist", coverage=False)
    f0 = float(evaluate(imgs, ref, cache=False, **kw)["fid"])
    f1 = float(evaluate(marked, ref, cache=False, **kw)["fid"])
    print(
        f"\nFID (MNIST classifier features, {args.digits} samples vs {ref.shape[0]} training digits): "
        f"unmarked {f0:.3f}, marked {f1:.3f} ({100 * (f1 - f0) / f0:+.2f}%)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a task=watermark run (32 bits)")
    ap.add_argument("--gan", help="a GAN run whose samples are marked too (generated digits)")
    ap.add_argument("--digits", type=int, default=200)
    ap.add_argument(
        "--digits-model", help="a second watermark run for the generated digits (e.g. trained on MNIST at 28x28)"
    )
    ap.add_argument("--crops", type=int, default=8, help="random 256x256 crops per photograph (besides the whole one)")
    ap.add_argument("--sizes", default="256,full")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument(
        "--peer-images",
        type=int,
        default=8,
        help="the peers run on the first N images of each set (rivaGan takes seconds per image); "
        "their FPR is measured on the unattacked unmarked images",
    )
    ap.add_argument("--riva-full", action="store_true", help="also run rivaGan on the full-size photographs (slow)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--validation",
        action="store_true",
        help="ganforge alone on the validation photographs (not the test set), then stop",
    )
    ap.add_argument(
        "--small-sizes", default="16,24,28,32,48,64", help="image sides of the small-image table ('' for none)"
    )
    ap.add_argument(
        "--strengths", default="0.7,1,1.4,2", help="embedding strengths of the PSNR/robustness curve ('' for none)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    gf = Ganforge(args.model)
    if gf.h.bits != 32:
        sys.exit(f"--model: this benchmark compares 32-bit marks; '{args.model}' carries {gf.h.bits} bits")
    methods = [gf] + ([] if args.no_peers else [Peer("dwtDct"), Peer("dwtDctSvd"), Peer("rivaGan")])
    if args.validation:
        images = validation_set()
        rng = np.random.default_rng(11)
        messages = [gf.message(rng) for _ in images]
        print(f"# watermark robustness, validation photographs: {args.model} ({gf.h!r})")
        report("validation photographs 256", {"ganforge": measure(gf, images, messages)}, len(images))
        return
    sets = test_sets(args.crops)
    print(f"# watermark robustness: {args.model} ({gf.h!r}); torch threads {torch.get_num_threads()}")
    for size in [v for v in args.sizes.split(",") if v]:
        images = sets[size]
        rng = np.random.default_rng(11)
        messages = [gf.message(rng) for _ in images]
        results = {}
        for m in methods:
            if m.name == "rivaGan" and size == "full" and not args.riva_full:
                continue
            t0 = time.perf_counter()
            k = len(images) if m is gf else min(len(images), args.peer_images)
            results[m.name] = measure(m, images[:k], messages[:k], fpr_all=m is gf)
            print(f"# {m.name} on {size}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        report(f"photographs {size}", results, len(images))
    big = cv2.resize(sets["full"][0], (4000, 3000), interpolation=cv2.INTER_LINEAR)  # a 12-megapixel photograph
    bits = gf.message(np.random.default_rng(5))
    gf.embed(big[:64, :64], bits)
    t0 = time.perf_counter()
    marked = gf.embed(big, bits)
    t1 = time.perf_counter()
    got = gf.decode(marked, big.shape[:2])
    t2 = time.perf_counter()
    print(
        f"\n4000x3000 photograph: embed {t1 - t0:.3f} s, decode {t2 - t1:.3f} s, PSNR {psnr(marked, big):.2f} dB, "
        f"bits {int((got == bits).sum())}/32",
        flush=True,
    )
    if args.small_sizes:  # how small an image can be and still be read
        print(
            "\n## small images (ganforge; the 256 set area-downsampled; bit accuracy / TPR at FPR 1e-6, detect's test)"
        )
        print("| side | none | jpeg75 | blur1 |")
        print("|---|---|---|---|")
        rng = np.random.default_rng(11)
        messages = [gf.message(rng) for _ in sets["256"]]
        for side in (int(v) for v in args.small_sizes.split(",")):
            images = [cv2.resize(a, (side, side), interpolation=cv2.INTER_AREA) for a in sets["256"]]
            cells = []
            for att in ("none", "jpeg75", "blur1"):
                attacked = [attack(gf.embed(a, m), att, rng) for a, m in zip(images, messages)]
                ks = [int((gf.decode(b, a.shape[:2]) == m).sum()) for a, b, m in zip(images, attacked, messages)]
                tp = [gf.p_values(b, m)["combined"] <= FPR for b, m in zip(attacked, messages)]
                cells.append(f"{np.mean(ks) / 32:.3f} / {np.mean(tp):.2f}")
            print(f"| {side} | " + " | ".join(cells) + " |", flush=True)
    if args.strengths:
        images = sets["256"]
        rng = np.random.default_rng(11)
        messages = [gf.message(rng) for _ in images]
        print(
            f"\n## strength: PSNR against robustness (ganforge, photographs 256, {len(images)} images; "
            "bit accuracy / TPR at FPR 1e-6, detect's test)"
        )
        keys = ["jpeg50", "resize0.5", "crop10", "blur1", "combo"]
        print("| strength | PSNR | SSIM | " + " | ".join(keys) + " |")
        print("|---|---|---|" + "---|" * len(keys))
        for st in (float(v) for v in args.strengths.split(",")):
            gf.strength = st
            r = measure(gf, images, messages, fpr_all=False)
            print(
                f"| {st:g} | {r['psnr']:.2f} dB | {r['ssim']:.4f} | "
                + " | ".join(f"{r['attacks'][k]['acc']:.3f} / {r['attacks'][k]['tp_combined']:.2f}" for k in keys)
                + " |",
                flush=True,
            )
        gf.strength = 1.0
    if args.gan:
        digits(args, gf, args.model)
        if args.digits_model:
            digits(args, Ganforge(args.digits_model), args.digits_model)


if __name__ == "__main__":
    main()
