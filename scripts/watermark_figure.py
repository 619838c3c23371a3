"""Draw the README's watermark picture: a held-out photograph, its marked version and the difference
amplified (x ``--gain``, around mid-grey), side by side, with the PSNR and what extraction reads.

    python scripts/watermark_figure.py --model runs/NNNNN-photos128-wm32 --out docs/watermark_example.png
    python scripts/watermark_figure.py --model WM_RUN --gan GAN_RUN --out docs/watermark_digits.png   # generated digits
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw


def panel_row(images, labels, scale: int = 1) -> Image.Image:
    tiles = [Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a).convert("RGB") for a in images]
    tiles = [t.resize((t.width * scale, t.height * scale), Image.NEAREST) for t in tiles]
    w, h = tiles[0].size
    out = Image.new("RGB", (len(tiles) * (w + 8) + 8, h + 30), "white")
    draw = ImageDraw.Draw(out)
    for i, (t, lab) in enumerate(zip(tiles, labels)):
        out.paste(t, (8 + i * (w + 8), 26))
        draw.text((8 + i * (w + 8), 6), lab, fill="black")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--gan", help="mark generated digits of this GAN run instead of a photograph")
    ap.add_argument("--message", default="gf")
    ap.add_argument("--gain", type=float, default=20.0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from ganforge.tasks.watermark import app as wm

    h = wm.load_watermarker(args.model)
    if args.gan:
        import ganforge

        g = ganforge.load_generator(args.gan)
        imgs = g.sample_uint8(8, seed=0)  # [8, 1, 28, 28]
        marked = wm.mark_batch(h, imgs, args.message)
        a = np.concatenate(list(imgs.permute(0, 2, 3, 1).numpy()), axis=1)
        m = np.concatenate(list(marked.permute(0, 2, 3, 1).numpy()), axis=1)
        first = marked[0].permute(1, 2, 0).numpy()
        scale = 4
    else:
        from skimage import data

        a = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS))
        m = wm.embed(h, a, args.message)
        first = m
        scale = 1
    d = m.astype(np.float64) - a.astype(np.float64)
    psnr = 10 * np.log10(255**2 / max((d**2).mean(), 1e-10))
    amp = np.clip(128 + args.gain * d, 0, 255).astype(np.uint8)
    got = wm.extract(h, first)  # (the first digit)
    labels = [
        "original",
        f"marked ({psnr:.1f} dB), reads {got['text']!r}" + (" (1st)" if args.gan else ""),
        f"difference x{args.gain:g}",
    ]
    panel_row([a, m, amp], labels, scale).save(args.out)
    print(f"{args.out}: PSNR {psnr:.2f} dB, extracted {got['text']!r} ({got['corrected']} corrected)")


if __name__ == "__main__":
    main()
