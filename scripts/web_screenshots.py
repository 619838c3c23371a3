"""Screenshots of the web app for the README (docs/web_*.png), taken in headless Chromium on copies of
real runs: ``python scripts/web_screenshots.py --gan RUN --superres RUN --translate RUN [--video RUN] ...``.

The runs are copied (the newest checkpoint, samples and metrics) into a temporary folder which the app
serves; each page is driven as the browser tests do (tests/test_web.py) and captured.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from PIL import Image

import ganforge
from ganforge import runs
from ganforge.web.server import BackgroundServer

DOCS = Path(__file__).resolve().parent.parent / "docs"


def copy_run(src: Path, dst: Path) -> None:
    """config, metrics, samples/latest.* and the newest checkpoint of ``src`` into ``dst``."""
    dst.mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    (dst / "samples").mkdir()
    for p in (src / "samples").glob("latest.*"):
        shutil.copy2(p, dst / "samples" / p.name)
    cks = runs.list_checkpoints(src)
    if cks:
        shutil.copytree(cks[-1], dst / "checkpoints" / cks[-1].name)


def wait_done(page, timeout: int) -> None:
    """Wait for the page's job to finish; its error line is an error here too."""
    page.wait_for_selector(".status .done, .status .error", timeout=timeout)
    if page.locator(".status .error").count():
        raise SystemExit(page.locator(".status .error").inner_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for task in ("gan", "superres", "translate", "inpaint", "video", "watermark"):
        ap.add_argument(f"--{task}", type=Path, action="append", default=[])
    ap.add_argument("--out", type=Path, default=DOCS)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ganforge-shots-"))
    try:
        shoot(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def shoot(args: argparse.Namespace, work: Path) -> None:
    """Copy the runs into ``work``, serve them, and take the screenshots."""
    from playwright.sync_api import sync_playwright

    root = work / "runs"
    root.mkdir()
    for task in ("gan", "superres", "translate", "inpaint", "video", "watermark"):
        for src in getattr(args, task):
            copy_run(src.expanduser(), root / src.name)
    data = ganforge.load_dataset(ganforge.resolve("default").data)
    digit = work / "digit.png"
    Image.fromarray(data.images[7, 0].numpy()).save(digit)
    small = work / "digit7x7.png"
    Image.fromarray(data.images[7, 0].numpy()).resize((14, 14), Image.BICUBIC).save(small)
    with BackgroundServer(root) as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = b.new_page(viewport={"width": 1200, "height": 860})

        def shot(name):
            page.screenshot(path=str(args.out / f"web_{name}.png"), full_page=False)
            print(args.out / f"web_{name}.png")

        page.goto(url + "/")
        page.wait_for_selector(".run img.grid")
        page.wait_for_timeout(500)
        shot("runs")
        if args.gan:
            page.goto(url + "/#generate")
            page.wait_for_selector("form[data-ready]")
            page.select_option("select[name=run]", args.gan[0].name)
            page.wait_for_timeout(500)
            page.fill("input[name=count]", "40")
            page.fill("input[name=truncation]", "1.5")
            page.fill("input[name=seed_b]", "1")
            page.fill("input[name=frames]", "12")
            page.click("form button[type=submit]")
            wait_done(page, timeout=120_000)
            page.locator(".outputs").scroll_into_view_if_needed()
            shot("generate")
            page.goto(url + "/#complete")
            page.wait_for_selector("form[data-ready]")
            page.select_option("select[name=run]", args.gan[0].name)
            page.set_input_files("input[name=image]", str(digit))
            page.wait_for_selector(".mask-box[data-ready]")
            page.fill("input[name=mask_brush]", "5")
            c = page.locator("canvas.overlay").bounding_box()
            y = c["y"] + c["height"] * 0.62
            page.mouse.move(c["x"] + c["width"] * 0.2, y)
            page.mouse.down()
            page.mouse.move(c["x"] + c["width"] * 0.8, y, steps=10)
            page.mouse.up()
            page.fill("input[name=steps]", "300")
            page.click("form button[type=submit]")
            wait_done(page, timeout=300_000)
            page.mouse.wheel(0, 400)
            shot("complete")
        if args.superres:
            page.goto(url + "/#upscale")
            page.wait_for_selector("form[data-ready]")
            page.select_option("select[name=run]", args.superres[0].name)
            page.set_input_files("input[name=image]", str(small))
            page.click("form button[type=submit]")
            wait_done(page, timeout=120_000)
            page.mouse.wheel(0, 300)
            shot("upscale")
        if args.translate:
            page.goto(url + "/#translate")
            page.wait_for_selector("form[data-ready]")
            page.select_option("select[name=run]", args.translate[0].name)
            page.wait_for_timeout(500)
            page.set_input_files("input[name=image]", str(digit))
            if page.locator("select[name=direction] option[value=b2a]").count():
                page.select_option("select[name=direction]", "b2a")
            page.click("form button[type=submit]")
            wait_done(page, timeout=120_000)
            shot("translate")
        if args.video:
            page.goto(url + "/#video")
            page.wait_for_selector("form[data-ready]")
            page.select_option("select[name=run]", args.video[0].name)
            page.fill("input[name=count]", "8")
            page.click("form button[type=submit]")
            wait_done(page, timeout=120_000)
            page.mouse.wheel(0, 300)
            shot("video")
        if args.watermark:
            from skimage import data as skdata

            photo = work / "coffee.png"
            Image.fromarray(skdata.coffee()).resize((300, 200), Image.LANCZOS).save(photo)
            page.goto(url + "/#watermark")
            page.wait_for_selector("form[data-ready]")
            page.select_option("select[name=run]", args.watermark[0].name)
            page.set_input_files("input[name=image]", str(photo))
            page.fill("input[name=message]", "gf")
            page.click("form button[type=submit]")
            wait_done(page, timeout=120_000)
            page.mouse.wheel(0, 300)
            shot("watermark")
        b.close()


if __name__ == "__main__":
    main()
