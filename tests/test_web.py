"""The web app (``ganforge serve``), tested in a real browser: headless Chromium driven by playwright clicks
through every page and checks what it shows against the same calls the command line makes; plus the
security rules (paths outside the runs folder, upload limits, run folders never written) over HTTP.

Needs the ``web`` extra, the pip ``playwright`` package and Chromium (``apt-get install chromium``; the
path can be set with ``GANFORGE_CHROMIUM``). Where they are missing the tests are skipped with the
reason, except in CI (``CI`` set), where that is a failure.
"""

import base64
import http.client
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = os.environ.get("GANFORGE_CHROMIUM", "/usr/bin/chromium")
FIXTURES = Path(__file__).parent / "fixtures"


def missing(what: str) -> None:
    """Skip (or, in CI, fail) for a missing requirement of these tests."""
    if IN_CI:
        pytest.fail(f"{what}; CI must run the browser tests (see .ci/run)", pytrace=False)
    pytest.skip(f"{what} (pip install -e '.[dev]' and apt-get install chromium)", allow_module_level=True)


try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as e:
    missing(f"the web extra is not installed ({e.name})")

import ganforge  # noqa: E402
from ganforge import cli  # noqa: E402
from ganforge.web.server import BackgroundServer, create_app  # noqa: E402

# ---- the runs the app shows ----------------------------------------------------------------------------


def tiny(task: str):
    from ganforge.tasks import get_task

    return [
        f"task={task}",
        "data.limit=32",
        "train.batch_size=16",
        "train.progress=false",
        "train.tensorboard=false",
        "train.log_every=1",
        "train.sample_every=1000",
        "train.checkpoint_every=1000",
        "train.sample_count=8",
        "train.minutes=null",
        "train.steps=1",
        *get_task(task).tiny,
    ]


def snapshot(root: Path, skip=()):
    """Every file under ``root`` with its size and modification time (folders named in ``skip`` left out)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in skip
    }


@pytest.fixture(scope="session")
def web_runs(tmp_path_factory):
    """A runs folder with a conditional GAN and a completion network (the kept v0 runs), a tiny
    super-resolution, pix2pix, video and watermark run (one step each, curves not plotted: matplotlib alone
    would take most of the time), a run of a task this version does not know, and an unreadable one."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(FIXTURES / "v0-gan-run", root / "00000-gan")
    shutil.copytree(FIXTURES / "v0-inpaint-run", root / "00001-inpaint")
    mp = pytest.MonkeyPatch()
    for mod in ("ganforge.training.monitor", "ganforge.tasks.superres.trainer", "ganforge.tasks.translate.trainer"):
        mp.setattr(
            f"{mod}.save_figure", lambda fig, path: __import__("matplotlib.pyplot").pyplot.close(fig), raising=False
        )  # wherever the curves are drawn from
    try:
        for task, name in (
            ("superres", "00002-superres"),
            ("translate", "00003-translate"),
            ("video", "00004-video"),
            ("watermark", "00006-watermark"),
            ("gan", "00010-uncond"),
        ):
            extra = ["model.conditional=false"] if task == "gan" else []
            run = ganforge.train(overrides=tiny(task) + extra, runs_dir=root / "trained")
            shutil.move(str(run), str(root / name))
    finally:
        mp.undo()
    shutil.rmtree(root / "trained")
    future = root / "00007-future"  # a run of a task this version does not know
    (future / "samples").mkdir(parents=True)
    (future / "config.yaml").write_text("task: hologram\ndata: {dataset: stars}\ntrain: {steps: 10}\n")
    (future / "metrics.jsonl").write_text('{"step": 5, "kimg": 0.1, "loss_d": 1.2, "loss_g": 0.8}\n')
    frames = [Image.new("L", (16, 16), v) for v in (0, 128, 255)]
    frames[0].save(future / "samples" / "latest.gif", save_all=True, append_images=frames[1:], duration=80, loop=0)
    shutil.copytree(FIXTURES / "v0-gan-run", root / "exp" / "00008-nested")  # runs one folder down are listed too
    (root / "00005-broken").mkdir()
    (root / "00005-broken" / "config.yaml").write_text("task: [unclosed\n")
    return root


@pytest.fixture(scope="session")
def server(web_runs):
    """The app on a free local port; on the way out, checks that no run folder was written (the
    ``live`` run is the one the tests write to, as training would)."""
    before = snapshot(web_runs, skip=("live",))
    with BackgroundServer(web_runs) as url:
        yield url
    assert snapshot(web_runs, skip=("live",)) == before, "the web app wrote into the runs folder"


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed")
    if not Path(CHROMIUM).is_file():
        missing(f"Chromium is not installed at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory):
    """Screenshots of every page, as test artifacts in pytest's temporary folder (``screenshots0``; the
    README's pictures come from scripts/web_screenshots.py, on trained runs)."""
    folder = tmp_path_factory.mktemp("screenshots")

    def shoot(page, name):
        page.screenshot(path=str(folder / f"web_{name}.png"), full_page=True)
        return folder / f"web_{name}.png"

    return shoot


@pytest.fixture(scope="session")
def context(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, server):
    """A browser tab on the app; afterwards, no JavaScript error and nothing the Content-Security-Policy
    blocked (an inline script or style attribute would be: Chromium says so on the console)."""
    pg = context.new_page()
    errors, blocked = [], []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    pg.set_default_timeout(60_000)
    pg.base = server
    yield pg
    pg.close()
    assert errors == [], f"JavaScript errors: {errors}"
    assert blocked == [], f"blocked by the Content-Security-Policy: {blocked}"


def open_page(page, name):
    page.goto(f"{page.base}/#{name}")
    page.wait_for_selector(f"form[data-page={name}][data-ready]")


def submit_and_wait(page):
    page.click("form button[type=submit]")
    page.wait_for_selector(".status .done, .status .error")


def fetch_image(page, name) -> np.ndarray:
    """The pixels of the result image ``name`` the page shows (fetched from its URL), and checks the browser
    decoded it at the size the page announces."""
    img = page.locator(f".outputs img[data-name='{name}']")
    # the job can be done before the browser has fetched and decoded the picture: wait for its load (or error)
    img.evaluate(
        "i => i.complete ? null : new Promise((ok, bad) => {"
        " i.addEventListener('load', ok); i.addEventListener('error', () => bad(new Error('not decoded'))); })"
    )
    natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight, i.complete]")
    assert natural[2] and natural[:2] == [int(img.get_attribute("data-width")), int(img.get_attribute("data-height"))]
    body = page.request.get(page.base + img.get_attribute("src")).body()
    with Image.open(io.BytesIO(body)) as im:
        assert list(im.size) == natural[:2]
        return np.asarray(im)


def digit(path: Path, size=(28, 28), mode="L") -> Path:
    """A hand-drawn-looking seven, white on black."""
    im = Image.new(mode, size, 0)
    d = ImageDraw.Draw(im)
    w, h = size
    d.line(
        [(0.25 * w, 0.2 * h), (0.75 * w, 0.2 * h), (0.4 * w, 0.85 * h)], fill=(255,) * len(mode), width=max(1, w // 9)
    )
    im.save(path)
    return path


# ---- pages in the browser ------------------------------------------------------------------------------


def test_runs_page_shows_every_run_and_refreshes_live(page, web_runs, shots):
    live = web_runs / "live"
    shutil.copytree(web_runs / "00000-gan", live)
    (live / "metrics.jsonl").write_text('{"step": 4, "kimg": 0.06, "loss_d": 1.3, "loss_g": 0.7}\n')
    (live / "config.yaml").write_text((live / "config.yaml").read_text().replace("  steps: 4\n", "  steps: 100\n"))
    page.goto(page.base + "/")
    page.wait_for_selector(".run[data-run='live']")
    for name, task in [
        ("00000-gan", "gan"),
        ("00001-inpaint", "inpaint"),
        ("00002-superres", "superres"),
        ("00003-translate", "translate"),
        ("00004-video", "video"),
        ("00006-watermark", "watermark"),
        ("00007-future", "hologram"),
    ]:
        card = page.locator(f".run[data-run='{name}']")
        assert card.get_attribute("data-task") == task
        img = card.locator("img.grid")
        img.wait_for()
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
    nested = page.locator(".run[data-run='exp/00008-nested'] img.grid")
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=nested.element_handle())
    assert page.request.get(page.base + "/api/runs/exp/00008-nested/options/generate").json()["options"]["class"][
        1:
    ] == [str(i) for i in range(10)]
    for name in ("00004-video", "00007-future"):  # animated grids first
        assert (
            page.locator(f".run[data-run='{name}'] img.grid")
            .get_attribute("src")
            .startswith(f"/files/{name}/samples/latest.gif")
        )
    broken = page.locator(".run[data-run='00005-broken'] .error").inner_text()
    assert broken.startswith("error: ") and "'00005-broken/config.yaml'" in broken  # relative to the runs folder
    assert str(web_runs) not in broken
    assert page.locator(".run[data-run='00002-superres'] svg.curves").count() >= 2  # losses, and PSNR on its own scale
    card = page.locator(".run[data-run='live']")
    assert card.locator(".badge.live").inner_text() == "training"
    # its progress bar, drawn under the app's CSP (no style attributes): 4 steps of 100
    assert card.locator(".bar > div").evaluate("d => [d.style.width, d.getBoundingClientRect().width > 0]") == [
        "4%",
        True,
    ]
    shots(page, "runs")
    # training goes on: a new record appears without reloading the page
    with open(live / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "kimg": 0.14, "loss_d": 1.1, "loss_g": 0.9}\n')
    page.wait_for_function(
        "() => [...document.querySelectorAll(\".run[data-run='live'] td\")].some(td => td.textContent === '9')",
        timeout=15_000,
    )


def test_generate_page_shows_the_cli_samples_walk_and_downloads(page, web_runs, shots, tmp_path):
    from ganforge.tasks.gan.app import write_samples

    open_page(page, "generate")
    page.select_option("select[name=run]", "00000-gan")
    page.wait_for_function("() => document.querySelector('select[name=class]').options.length === 11")
    page.fill("input[name=seed]", "3")
    page.fill("input[name=count]", "6")
    page.select_option("select[name=class]", "7")
    page.fill("input[name=truncation]", "1.5")
    page.fill("input[name=seed_b]", "4")
    page.fill("input[name=frames]", "3")
    submit_and_wait(page)
    assert page.locator(".status .error").count() == 0
    g = ganforge.load_generator(web_runs / "00000-gan")
    write_samples(
        g, tmp_path / "cli.png", 6, seed=3, cls="7", truncation=1.5
    )  # = ganforge sample --class 7 --truncation 1.5
    write_samples(g, tmp_path / "cli.npz", 6, seed=3, cls="7", truncation=1.5)
    shown = fetch_image(page, "samples.png")
    assert np.array_equal(shown, np.asarray(Image.open(tmp_path / "cli.png")))
    npz = page.request.get(page.base + page.locator("a[download='samples.npz']").get_attribute("href")).body()
    with np.load(io.BytesIO(npz)) as got, np.load(tmp_path / "cli.npz") as want:
        assert np.array_equal(got["arr_0"], want["arr_0"]) and got["arr_0"].shape == (6, 28, 28, 1)
        assert (got["arr_1"] == 7).all()
        for other in ({"seed": 4}, {"truncation": None}, {"cls": "3"}):  # each setting changes the pixels
            write_samples(g, tmp_path / "other.npz", 6, **({"seed": 3, "cls": "7", "truncation": 1.5} | other))
            assert not np.array_equal(got["arr_0"], np.load(tmp_path / "other.npz")["arr_0"]), other
    walk = page.locator(".outputs img[data-name='walk.gif']")
    gif = Image.open(io.BytesIO(page.request.get(page.base + walk.get_attribute("src")).body()))
    assert gif.n_frames == 4 and gif.size == (
        int(walk.get_attribute("data-width")),
        int(walk.get_attribute("data-height")),
    )
    first = np.asarray(gif.convert("L")).astype(int)
    assert first.shape == shown.shape  # the frames are laid out as the grid
    assert np.abs(first - shown.astype(int)).max() <= 1  # and start at the samples of the seed (slerp at t=0)
    shots(page, "generate")
    # an unconditional run: no class to choose
    page.select_option("select[name=run]", "00010-uncond")
    page.wait_for_selector("label[data-field=class]", state="hidden")
    page.fill("input[name=seed_b]", "")
    submit_and_wait(page)
    assert page.locator(".status .error").count() == 0 and fetch_image(page, "samples.png").shape == (62, 92)
    # a bad value: the error line, as the command line prints it
    page.fill("input[name=count]", "0")
    page.click("form button[type=submit]")
    assert page.locator(".status .error").inner_text() == "error: count 0: expected a value from 1 to 256"


def draw(page, points):
    """A stroke with the mouse over the mask canvas; points in image pixels."""
    canvas = page.locator("canvas.overlay")
    box = canvas.bounding_box()
    w, h = canvas.evaluate("c => [c.width, c.height]")
    xy = [(box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p, steps=4)
    page.mouse.up()


def mask_png(page) -> np.ndarray:
    data = page.locator(".mask-box").evaluate(
        "async m => { const b = await m.toBlob(); const a = new Uint8Array(await b.arrayBuffer());"
        " let s = ''; for (const x of a) s += String.fromCharCode(x); return btoa(s); }"
    )
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"))


def test_complete_page_draws_a_mask_with_the_mouse_and_completes(page, web_runs, shots, tmp_path):
    from ganforge.tasks.inpaint.app import inpaint_detailed

    (tmp_path / "in").mkdir()
    image = digit(tmp_path / "in" / "mask.png")  # named like the drawn mask: the two uploads must not meet
    open_page(page, "complete")
    page.select_option("select[name=run]", "00001-inpaint")
    page.set_input_files("input[name=image]", str(image))
    page.wait_for_selector(".mask-box[data-ready]")
    page.fill("input[name=mask_brush]", "4")
    draw(page, [(8, 8), (18, 8)])
    first = mask_png(page)
    draw(page, [(5, 22), (22, 22)])
    assert (mask_png(page) > 0).sum() > (first > 0).sum()
    page.click("text=Undo")  # the second stroke goes, the first stays
    mask = mask_png(page)
    assert np.array_equal(mask, first)
    assert mask.shape == (28, 28) and 30 < (mask > 0).sum() < 120 and mask[8, 12] == 255 and mask[22, 12] == 0
    submit_and_wait(page)
    assert page.locator(".status .error").count() == 0
    got = fetch_image(page, "completed.png")
    assert got.shape == (28, 28)
    assert np.array_equal(fetch_image(page, "input.png"), np.asarray(Image.open(image)))
    Image.fromarray(mask).save(tmp_path / "mask.png")
    want = np.asarray(inpaint_detailed(web_runs / "00001-inpaint", image, mask=tmp_path / "mask.png").image)
    assert np.array_equal(got, want)  # what `ganforge inpaint --mask` gives
    known = mask == 0
    assert np.array_equal(got[known], np.asarray(Image.open(image))[known])
    shots(page, "complete")
    # the latent search of a GAN run reports its steps as progress
    page.select_option("select[name=run]", "00000-gan")
    page.fill("input[name=steps]", "5")
    page.fill("input[name=restarts]", "2")
    # the server's limits are the fields' maxima, and the page says them
    assert page.get_attribute("input[name=steps]", "max") == "1000"
    assert page.locator("label[data-field=steps] .help").inner_text() == "latent search only; at most 1000 here"
    assert page.locator("label[data-field=image] .help").inner_text().endswith("at most 20 MB and 16 megapixels")
    submit_and_wait(page)
    job = page.request.get(f"{page.base}/api/jobs/{page.locator('.status').get_attribute('data-job')}").json()
    assert job["state"] == "done" and (job["done"], job["total"]) == (5, 5)
    assert job["message"] == "latent search step 5/5"
    assert fetch_image(page, "completed.png").shape == (28, 28)


def test_a_running_job_is_cancelled_from_its_page(page, tmp_path):
    image = digit(tmp_path / "seven.png")
    open_page(page, "complete")
    page.select_option("select[name=run]", "00000-gan")
    page.set_input_files("input[name=image]", str(image))
    page.wait_for_selector(".mask-box[data-ready]")
    draw(page, [(6, 12), (22, 12)])
    page.fill("input[name=steps]", "1000")
    page.fill("input[name=restarts]", "16")
    page.click("form button[type=submit]")
    page.wait_for_function("() => /latent search step/.test(document.querySelector('.status').textContent)")
    assert page.locator("form button[type=submit]").is_disabled()
    page.click(".status button.cancel")
    page.wait_for_selector(".status .cancelled")
    job = page.request.get(f"{page.base}/api/jobs/{page.locator('.status').get_attribute('data-job')}").json()
    assert job["state"] == "cancelled" and 0 < job["done"] < 1000 and job["outputs"] == []
    assert page.locator(".status").inner_text().startswith("cancelled after ")
    assert page.locator("form button[type=submit]").is_enabled() and page.locator(".outputs *").count() == 0


def test_a_bad_upload_shows_the_cli_error_line(page, shots, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    open_page(page, "complete")
    page.set_input_files("input[name=image]", str(bad))
    page.click("form button[type=submit]")
    err = page.locator(".status .error")
    err.wait_for()
    from ganforge.errors import ImageError
    from ganforge.imaging import image_size

    with pytest.raises(ImageError) as cli:
        image_size(bad)
    assert err.inner_text() == f"error: {cli.value}".replace(str(tmp_path) + "/", "")
    assert err.inner_text() == "error: cannot read image 'bad.png': cannot identify image file 'bad.png'"
    shots(page, "complete_error")


def test_upscale_page_and_its_channel_error(page, web_runs, shots, tmp_path):
    from ganforge.errors import UpscaleError
    from ganforge.tasks.superres.app import upscale_detailed

    image = digit(tmp_path / "small.png", size=(9, 7))
    open_page(page, "upscale")
    page.set_input_files("input[name=image]", str(image))
    submit_and_wait(page)
    got = fetch_image(page, "upscaled.png")
    assert got.shape == (28, 36)  # x4, height x width
    assert np.array_equal(got, np.asarray(upscale_detailed(web_runs / "00002-superres", image).image))
    assert fetch_image(page, "compare.png").shape[1] > 3 * 36
    shots(page, "upscale")
    colour = tmp_path / "colour.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (7, 9, 3), dtype=np.uint8)).save(colour)
    page.set_input_files("input[name=image]", str(colour))
    page.click("form button[type=submit]")
    page.wait_for_selector(".status .error")
    with pytest.raises(UpscaleError) as cli:
        upscale_detailed(web_runs / "00002-superres", colour)
    assert page.locator(".status .error").inner_text() == f"error: {cli.value}".replace(str(tmp_path) + "/", "")


def test_translate_page_offers_the_runs_directions(page, web_runs, shots, tmp_path):
    from ganforge.tasks.translate.app import translate_detailed

    image = digit(tmp_path / "edges.png", size=(20, 24))
    open_page(page, "translate")
    assert page.locator("select[name=direction] option").all_inner_texts() == ["a2b"]  # pix2pix: one way
    page.set_input_files("input[name=image]", str(image))
    submit_and_wait(page)
    got = fetch_image(page, "translated.png")
    assert got.shape == (24, 20)
    assert np.array_equal(got, np.asarray(translate_detailed(web_runs / "00003-translate", image).image))
    shots(page, "translate")


def test_video_page_shows_the_clips_sample_writes(page, web_runs, shots, tmp_path):
    from ganforge.api import sample_writer

    open_page(page, "video")
    page.fill("input[name=count]", "3")
    page.fill("input[name=scale]", "1")
    submit_and_wait(page)
    assert page.locator(".status .error").count() == 0
    h = ganforge.load(web_runs / "00004-video")
    sample_writer(h).write_samples(h, tmp_path / "cli.gif", 3, seed=0)  # = ganforge sample RUN --n 3 --out cli.gif
    fetch_image(page, "clips.gif")
    shown = Image.open(
        io.BytesIO(
            page.request.get(
                page.base + page.locator(".outputs img[data-name='clips.gif']").get_attribute("src")
            ).body()
        )
    )
    want = Image.open(tmp_path / "cli.gif")
    assert shown.n_frames == want.n_frames and shown.size == want.size  # (Pillow merges identical frames)
    for t in range(want.n_frames):
        shown.seek(t)
        want.seek(t)
        assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(want.convert("RGB")))
    npz = page.request.get(page.base + page.locator("a[download='clips.npz']").get_attribute("href")).body()
    with np.load(io.BytesIO(npz)) as z:
        assert z["arr_0"].shape == (3, 4, 16, 16, 1)
    shots(page, "video")


def test_watermark_page_embeds_detects_and_extracts(page, web_runs, shots, tmp_path):
    from ganforge.tasks.watermark import app as wm

    run = web_runs / "00006-watermark"
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.RandomState(1).randint(0, 256, (30, 40), dtype=np.uint8)).save(image)
    open_page(page, "watermark")
    page.set_input_files("input[name=image]", str(image))
    page.fill("input[name=message]", "g")
    page.fill("input[name=strength]", "2")
    submit_and_wait(page)
    got = fetch_image(page, "marked.png")
    assert got.shape == (30, 40) and np.array_equal(got, wm.embed(run, image, "g", strength=2.0))
    back = wm.extract(run, got)
    said = back["text"] if back["text"] is not None else "0x" + back["hex"]
    assert (
        page.locator(".outputs .about")
        .inner_text()
        .endswith(
            f"it reads back as {said!r} ({back['corrected']} bit errors corrected)"
            if back["ok"]
            else "it does not read back (too many bit errors to correct: a stronger strength may help)"
        )
    )
    shots(page, "watermark")
    marked = tmp_path / "marked.png"
    Image.fromarray(got).save(marked)
    page.set_input_files("input[name=image]", str(marked))
    page.select_option("select[name=action]", "detect")
    submit_and_wait(page)
    r = wm.detect(run, marked, "g")
    assert (
        page.locator(".outputs .about")
        .inner_text()
        .endswith(
            f"{r['matches']}/8 bits match (p-value {r['p_value']:.3g}; "
            f"{r['threshold']} matching bits pass on their own "
            "at a false-positive rate of 1e-06)"
        )
    )
    page.select_option("select[name=action]", "extract")
    submit_and_wait(page)
    r = wm.extract(run, marked)
    assert (
        page.locator(".outputs .about")
        .first.inner_text()
        .startswith(f"message {r['text'] or '0x' + r['hex']!r} (hex {r['hex']})")
    )
    # an image too small to carry a mark: the command line's error line, naming the file
    small = tmp_path / "tiny.png"
    Image.new("L", (10, 12)).save(small)
    page.set_input_files("input[name=image]", str(small))
    page.click("form button[type=submit]")
    page.wait_for_selector(".status .error")
    with pytest.raises(wm.WatermarkError) as cli:
        wm.extract(run, small)
    assert page.locator(".status .error").inner_text() == f"error: {cli.value}".replace(str(tmp_path) + "/", "")


# ---- built-in models -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def packed_models(tmp_path_factory, web_runs):
    """A folder of built-in models packed from tiny runs: the conditional GAN under the name of the GAN pages'
    default, another (unconditional) GAN and a super-resolution model."""
    from ganforge.models.pack import pack
    from ganforge.tasks.gan.cli import DEFAULT_MODEL

    root = tmp_path_factory.mktemp("builtin")
    card = {"summary": "A tiny conditional GAN of digits.", "input": "a seed and a class", "output": "28x28 digits"}
    pack(FIXTURES / "v0-gan-run", root / DEFAULT_MODEL, card=card | {"figures": [{"what": "FID", "value": 99.5}]})
    pack(web_runs / "00010-uncond", root / "another-gan", card={"summary": "A tiny unconditional GAN."})
    pack(web_runs / "00002-superres", root / "tiny-sr", card={"summary": "A tiny x4 upscaler.", "input": "an image"})
    return root


@pytest.fixture
def builtins(packed_models, monkeypatch):
    """The packed models as the built-in models (``ganforge.models.ROOT``), checked unchanged afterwards."""
    import ganforge.models

    before = snapshot(packed_models)
    monkeypatch.setattr(ganforge.models, "ROOT", packed_models)
    yield packed_models
    assert snapshot(packed_models) == before, "the web app wrote into a built-in model"


def local_client(app):
    """A test client of ``app`` that sends what the app's own pages send: its address and its ``Origin``."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://localhost", headers={"Origin": "http://localhost"})


def wait_job(client, job_id: str) -> dict:
    import time

    for _ in range(600):
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "error", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_builtin_models_are_listed_for_their_pages_and_run_jobs(web_runs, builtins, tmp_path):

    from ganforge.tasks.gan.app import write_samples
    from ganforge.tasks.gan.cli import DEFAULT_MODEL as GAN_DEFAULT
    from ganforge.tasks.superres.cli import DEFAULT_MODEL as SR_DEFAULT

    client = local_client(create_app(web_runs))
    data = client.get("/api/runs").json()
    assert [r["name"] for r in data["runs"]][:2] == ["00000-gan", "00001-inpaint"]  # the runs, as before
    models = {m["name"]: m for m in data["builtin"]}
    assert sorted(models) == ["another-gan", GAN_DEFAULT, "tiny-sr"]
    m = models[GAN_DEFAULT]
    assert (m["value"], m["task"], m["summary"]) == (
        f"builtin:{GAN_DEFAULT}",
        "gan",
        "A tiny conditional GAN of digits.",
    )
    assert (m["input"], m["output"], m["headline"]) == ("a seed and a class", "28x28 digits", "FID: 99.5")
    assert models["tiny-sr"]["task"] == "superres" and "folder" not in m and str(builtins) not in str(data)
    pages = {p["name"]: p for p in client.get("/api/pages").json()["pages"]}
    assert pages["generate"]["default_model"] == GAN_DEFAULT and pages["upscale"]["default_model"] == SR_DEFAULT
    assert pages["video"]["default_model"] and pages["complete"]["default_model"]
    # a model's options, and a model of another task refused by the page
    opts = client.get(f"/api/runs/builtin:{GAN_DEFAULT}/options/generate").json()["options"]
    assert opts["class"][1:] == [str(i) for i in range(10)]
    assert client.get("/api/runs/builtin%3Aanother-gan/options/generate").json()["options"] == {"class": []}
    r = client.get("/api/runs/builtin:tiny-sr/options/generate")
    assert r.status_code == 400
    assert r.json()["error"] == "error: built-in model 'tiny-sr' is a superres model; this page takes gan models"
    # a job with a built-in model: the samples `ganforge sample builtin:NAME` writes
    form = {"run": f"builtin:{GAN_DEFAULT}", "seed": "3", "count": "6", "class": "7", "ema": "true"}
    r = client.post("/api/pages/generate", data=form)
    assert r.status_code == 200, r.text
    job = wait_job(client, r.json()["job"])
    assert job["state"] == "done", job["error"]
    shown = [o for o in job["outputs"] if o["name"] == "samples.png" and o["kind"] == "image"][0]
    write_samples(ganforge.load_generator(f"builtin:{GAN_DEFAULT}"), tmp_path / "cli.png", 6, seed=3, cls="7")
    got = np.asarray(Image.open(io.BytesIO(client.get(shown["url"]).content)))
    assert np.array_equal(got, np.asarray(Image.open(tmp_path / "cli.png")))
    # only names the package lists, of the page's tasks; nothing of the package's folder is served
    listed = f"built-in models: another-gan, {GAN_DEFAULT}, tiny-sr"
    for value, error in [
        ("builtin:nosuch", f"error: no built-in model named 'nosuch'; {listed}"),
        ("builtin:../x", f"error: no built-in model named '../x'; {listed}"),
        (
            f"builtin:../{builtins.name}/{GAN_DEFAULT}",
            f"error: no built-in model named '../{builtins.name}/{GAN_DEFAULT}'; {listed}",
        ),
        ("builtin:", f"error: no built-in model named ''; {listed}"),
        ("builtin:tiny-sr", "error: built-in model 'tiny-sr' is a superres model; this page takes gan models"),
        (  # a name alone is a run
            GAN_DEFAULT,
            f"error: run '{GAN_DEFAULT}' is not a run folder of the runs folder (the Runs page lists them)",
        ),
    ]:
        r = client.post("/api/pages/generate", data=form | {"run": value})
        assert (r.status_code, r.json()["error"]) == (400, error), value
    for url in ("/api/runs/builtin:..%2fx/options/generate", "/api/runs/builtin%3A..%2F..%2Fetc/options/generate"):
        r = client.get(url)
        assert r.status_code == 400 and r.json()["error"].startswith("error: no built-in model named '.."), url
    for url in (f"/files/builtin:{GAN_DEFAULT}/README.md", f"/files/builtin:{GAN_DEFAULT}/config.json"):
        assert client.get(url).status_code == 404


def test_a_run_called_like_a_builtin_model_stays_a_run(web_runs, builtins, tmp_path):

    from ganforge.tasks.gan.app import write_samples
    from ganforge.tasks.gan.cli import DEFAULT_MODEL as GAN_DEFAULT

    runs = tmp_path / "runs"
    shutil.copytree(web_runs / "00010-uncond", runs / GAN_DEFAULT)  # an unconditional run, named like the model
    client = local_client(create_app(runs))
    assert [r["name"] for r in client.get("/api/runs").json()["runs"]] == [GAN_DEFAULT]
    assert client.get(f"/api/runs/{GAN_DEFAULT}/options/generate").json()["options"]["class"] == []
    assert len(client.get(f"/api/runs/builtin:{GAN_DEFAULT}/options/generate").json()["options"]["class"]) == 11
    for run, model in ((GAN_DEFAULT, runs / GAN_DEFAULT), (f"builtin:{GAN_DEFAULT}", f"builtin:{GAN_DEFAULT}")):
        r = client.post("/api/pages/generate", data={"run": run, "count": "6", "ema": "true"})
        job = wait_job(client, r.json()["job"])
        assert job["state"] == "done", job["error"]
        out = [o for o in job["outputs"] if o["name"] == "samples.png"][0]
        write_samples(ganforge.load_generator(model), tmp_path / "cli.png", 6, seed=0)
        got = np.asarray(Image.open(io.BytesIO(client.get(out["url"]).content)))
        assert np.array_equal(got, np.asarray(Image.open(tmp_path / "cli.png"))), run


def test_builtin_models_in_the_browser(context, page, builtins, web_runs, shots, tmp_path):
    from ganforge.tasks.gan.app import write_samples
    from ganforge.tasks.gan.cli import DEFAULT_MODEL as GAN_DEFAULT

    def picker(pg):
        return pg.locator("select[name=run]")

    # beside the runs: a page offers its task's models after the folder's runs, and starts with the newest run
    open_page(page, "generate")
    first = picker(page).locator("option").first.get_attribute("value")
    assert picker(page).input_value() == first and not first.startswith("builtin:")
    builtin = picker(page).locator("optgroup[label='built-in models'] option")
    assert builtin.all_inner_texts() == ["another-gan (built-in)", f"{GAN_DEFAULT} (built-in)"]
    assert [builtin.nth(i).get_attribute("value") for i in range(2)] == [
        "builtin:another-gan",
        f"builtin:{GAN_DEFAULT}",
    ]
    assert page.locator("label[data-field=checkpoint]").is_visible()
    open_page(page, "upscale")
    assert picker(page).locator("optgroup option").all_inner_texts() == ["tiny-sr (built-in)"]
    open_page(page, "translate")
    assert picker(page).locator("optgroup").count() == 0
    # a folder without runs: each page starts with its task's default model (else its first), and uses it
    (tmp_path / "empty").mkdir()
    with BackgroundServer(tmp_path / "empty") as url:
        pg = context.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.set_default_timeout(60_000)
        pg.base = url
        pg.goto(url + "/")
        card = pg.locator(f".model[data-model='{GAN_DEFAULT}']")
        card.wait_for()
        assert pg.locator("section.builtin h1").inner_text() == "Built-in models"
        assert pg.locator("section.builtin .model").count() == 3 and pg.locator("section.builtin button").count() == 0
        assert card.locator(".badge").all_inner_texts() == ["gan", "built-in"]
        assert card.locator(".summary").inner_text() == "A tiny conditional GAN of digits."
        assert (
            card.locator("tr[data-row='input → output'] td").nth(1).inner_text() == "a seed and a class → 28x28 digits"
        )
        assert card.locator("tr[data-row='measured'] td").nth(1).inner_text() == "FID: 99.5"
        assert card.locator("tr[data-row='use it as'] td").nth(1).inner_text() == f"builtin:{GAN_DEFAULT}"
        assert pg.locator(".model[data-model='tiny-sr'] .badge").first.inner_text() == "superres"
        shots(pg, "runs_builtin")
        open_page(pg, "upscale")
        assert picker(pg).input_value() == "builtin:tiny-sr"  # the only superres model (the default is not here)
        open_page(pg, "translate")
        assert picker(pg).locator("option").all_inner_texts() == ["no translate runs in the folder"]
        open_page(pg, "generate")
        assert picker(pg).input_value() == f"builtin:{GAN_DEFAULT}"  # the default, not the first
        assert not pg.locator("label[data-field=checkpoint]").is_visible()  # a built-in model has one checkpoint
        pg.wait_for_function("() => document.querySelector('select[name=class]').options.length === 11")
        pg.fill("input[name=seed]", "5")
        pg.fill("input[name=count]", "4")
        pg.select_option("select[name=class]", "2")
        submit_and_wait(pg)
        assert pg.locator(".status .error").count() == 0
        write_samples(ganforge.load_generator(f"builtin:{GAN_DEFAULT}"), tmp_path / "cli.png", 4, seed=5, cls="2")
        assert np.array_equal(fetch_image(pg, "samples.png"), np.asarray(Image.open(tmp_path / "cli.png")))
        shots(pg, "generate_builtin")
        pg.select_option("select[name=run]", "builtin:another-gan")  # an unconditional model: no class
        pg.wait_for_selector("label[data-field=class]", state="hidden")
        pg.close()
    assert errors == [], f"JavaScript errors: {errors}"


# ---- security and the command -----------------------------------------------------------------------------


def raw_get(url: str, path: str):
    """GET ``path`` exactly as written (no normalisation by the client)."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, r.read()


def test_files_outside_the_runs_folder_are_refused(server, web_runs, tmp_path_factory):
    secret = tmp_path_factory.mktemp("outside") / "secret.png"
    Image.new("L", (4, 4), 7).save(secret)
    link = web_runs / "00007-future" / "samples" / "escape.png"
    status, _ = raw_get(server, "/files/00000-gan/samples/latest.png")
    assert status == 200
    rel = os.path.relpath(secret, web_runs)
    for path in [
        f"/files/{rel}",
        "/files/../../../../etc/passwd",
        "/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/files/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/files/00000-gan/..%2f..%2f..%2fetc/passwd",
        f"/files/{rel.replace('/', '%2f')}",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
    ]:
        status, body = raw_get(server, path)
        assert status in (403, 404) and b"root:" not in body and body[:4] != b"\x89PNG", path
    try:
        link.symlink_to(secret)  # a link inside the folder that leads out of it
        status, body = raw_get(server, "/files/00007-future/samples/escape.png")
        assert status == 403 and body == b'{"error":"error: that path is outside the runs folder"}'
    finally:
        link.unlink()
    assert raw_get(server, "/files/00000-gan/config.yaml")[0] == 404  # only images are served
    outside_run = web_runs / "00009-link"
    try:
        outside_run.symlink_to(FIXTURES / "v0-gan-run")  # a run folder elsewhere, linked in: not offered
        assert b"00009-link" not in raw_get(server, "/api/runs")[1]
        assert raw_get(server, "/api/runs/00009-link/options/generate")[0] == 400
    finally:
        outside_run.unlink()


def test_other_hosts_and_sites_are_refused(server):
    host, port = server.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/api/runs", headers={"Host": f"evil.example:{port}"})  # DNS rebinding
    r = conn.getresponse()
    assert r.status == 400 and b"00000-gan" not in r.read()
    conn.request(
        "POST",
        "/api/pages/upscale",
        body=b"run=00002-superres",
        headers={"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
    )
    r = conn.getresponse()
    assert (
        r.status == 403
        and r.read() == b'{"error":"error: a form from another site (http://evil.example) is not accepted"}'
    )


def test_upload_limits(web_runs, tmp_path):
    client = local_client(create_app(web_runs, max_pixels=600, max_upload_mb=0.01))
    big = io.BytesIO()
    Image.new("L", (30, 30)).save(big, format="PNG")
    r = client.post("/api/pages/upscale", data={"run": "00002-superres"}, files={"image": ("wide.png", big.getvalue())})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "error: image 'wide.png' is 30x30 (900 pixels); this server accepts at most 600 pixels "
        "(ganforge serve --max-pixels)"
    )
    noise = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (60, 80), dtype=np.uint8)).save(noise, format="BMP")
    assert len(noise.getvalue()) < 10 * 2**10 < 2 * len(noise.getvalue())
    r = client.post(
        "/api/pages/upscale", data={"run": "00002-superres"}, files={"image": ("n.bmp", noise.getvalue() * 2)}
    )
    assert r.status_code == 400 and r.json()["error"] == (
        "error: image 'n.bmp' is larger than 0.01 MB, the most this server accepts (ganforge serve --max-upload-mb)"
    )
    r = client.post("/api/pages/upscale", data={"run": "00002-superres"}, files={"image": ("n.bmp", b"x" * 2**21)})
    assert r.status_code == 413 and "this server accepts at most" in r.json()["error"]
    r = client.post("/api/pages/upscale", data={"run": "../00002-superres"}, files={"image": ("a.png", big.getvalue())})
    assert r.status_code == 400 and r.json()["error"] == (
        "error: run '../00002-superres' is not a run folder of the runs folder (the Runs page lists them)"
    )


def png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_pages_refuse_runs_of_other_tasks_and_damaged_uploads(web_runs):
    """The server checks a run's task against the page's before the page's code sees it (a 400 line, never
    an AttributeError from a handle of another task), and decodes an upload before queueing it."""
    client = local_client(create_app(web_runs))
    digit7 = png_bytes(np.random.RandomState(0).randint(0, 256, (28, 28)))
    for page, run, files, error in [
        ("generate", "00006-watermark", None, "this page takes gan runs; '00006-watermark' is a watermark run"),
        ("video", "00000-gan", None, "this page takes video runs; '00000-gan' is a gan run"),
        ("upscale", "00003-translate", {"image": ("a.png", digit7)}, "this page takes superres runs; "),
        ("complete", "00002-superres", {"image": ("a.png", digit7)}, "this page takes gan / inpaint runs; "),
        ("watermark", "exp/00008-nested", {"image": ("a.png", digit7)}, "'exp/00008-nested' is a gan run"),
        ("generate", "00007-future", None, "this page takes gan runs; '00007-future' is a hologram run"),
    ]:
        r = client.post(f"/api/pages/{page}", data={"run": run}, files=files)
        assert r.status_code == 400 and r.json()["error"].startswith("error: ") and error in r.json()["error"], (
            page,
            r.text,
        )
    for run, page in [("00006-watermark", "generate"), ("00002-superres", "translate"), ("00000-gan", "watermark")]:
        r = client.get(f"/api/runs/{run}/options/{page}")
        assert r.status_code == 400 and r.json()["error"].startswith("error: this page takes "), r.text
    r = client.get("/api/runs/00005-broken/options/generate")  # an unreadable config: its line, relative
    assert r.status_code == 400 and "'00005-broken/config.yaml'" in r.json()["error"]
    assert str(web_runs) not in r.json()["error"]
    # a truncated PNG: refused when it arrives, with one line (not a job's "internal error: OSError")
    whole = png_bytes(np.random.RandomState(1).randint(0, 256, (40, 40)))
    for page, run in [
        ("watermark", "00006-watermark"),
        ("upscale", "00002-superres"),
        ("translate", "00003-translate"),
    ]:
        r = client.post(f"/api/pages/{page}", data={"run": run}, files={"image": ("cut.png", whole[:-200])})
        assert r.status_code == 400, r.text
        msg = r.json()["error"]
        assert msg.startswith("error: cannot read image 'cut.png': ") and "\n" not in msg, msg
        assert msg.endswith("(a damaged or incomplete file?)")
    assert app_scratch_folders() == 0


def hole_png() -> bytes:
    """A 28 x 28 mask: a band across the middle to fill."""
    m = np.zeros((28, 28), np.uint8)
    m[10:18, 4:24] = 255
    return png_bytes(m)


def app_scratch_folders() -> int:
    from ganforge.web.core import Scratch

    return len(Scratch.live)


def test_limits_are_shown_and_checked(web_runs, monkeypatch):
    from ganforge.errors import UsageError

    client = local_client(create_app(web_runs))
    pages = {p["name"]: {f["name"]: f for f in p["fields"]} for p in client.get("/api/pages").json()["pages"]}
    assert [pages["complete"]["steps"]["max"], pages["complete"]["restarts"]["max"]] == [1000, 16]
    assert [pages["generate"]["frames"]["max"], pages["video"]["frames"]["max"], pages["upscale"]["tile"]["max"]] == [
        64,
        64,
        512,
    ]
    limits = client.get("/api/pages").json()["limits"]
    assert limits["max_output_pixels"] == 40_000_000 and limits["max_queue"] == 8 and limits["max_pixels"] == 16_000_000
    image = {"image": ("d.png", png_bytes(np.zeros((28, 28)))), "mask": ("m.png", hole_png())}
    r = client.post("/api/pages/complete", data={"run": "00000-gan", "steps": "5000"}, files=image)
    assert (r.status_code, r.json()["error"]) == (
        400,
        "error: latent steps 5000: expected a value from 1 to 1000 (this server's limit, GANFORGE_WEB_MAX_STEPS)",
    )
    r = client.post("/api/pages/complete", data={"run": "00000-gan", "restarts": "64"}, files=image)
    assert r.status_code == 400 and "restarts 64: expected a value from 1 to 16" in r.json()["error"]
    r = client.post("/api/pages/video", data={"run": "00004-video", "frames": "200"})
    assert r.status_code == 400 and "frames 200: expected a value from 1 to 64" in r.json()["error"]
    # the output's pixels: an x4 upscale of a 4000 x 4000 upload would be 256 megapixels
    r = client.post(
        "/api/pages/upscale",
        data={"run": "00002-superres"},
        files={"image": ("big.png", png_bytes(np.zeros((4000, 4000))))},
    )
    assert (r.status_code, r.json()["error"]) == (
        400,
        "error: the x4 upscale of a 4000x4000 image (16000x16000) would be 256,000,000 pixels; this server makes "
        "at most 40,000,000 pixels per job (GANFORGE_WEB_MAX_OUTPUT_PIXELS)",
    )
    r = client.post(
        "/api/pages/upscale",
        data={"run": "00002-superres", "tile": "0"},
        files={"image": ("w.png", png_bytes(np.zeros((20, 600))))},
    )
    assert r.status_code == 400 and r.json()["error"].startswith(
        "error: tile 0 (the whole image at once) is for images up to 512 pixels a side; this one is 600x20"
    )
    # the limits from the environment, and from the app's arguments over it
    monkeypatch.setenv("GANFORGE_WEB_MAX_STEPS", "30")
    monkeypatch.setenv("GANFORGE_WEB_MAX_OUTPUT_PIXELS", "10_000")
    client = local_client(create_app(web_runs, limits={"max_restarts": 2}))
    pages = {p["name"]: p for p in client.get("/api/pages").json()["pages"]}
    fields = {f["name"]: f for f in pages["complete"]["fields"]}
    assert (fields["steps"]["max"], fields["restarts"]["max"]) == (30, 2)
    r = client.post("/api/pages/generate", data={"run": "00000-gan", "count": "16", "ema": "true"})
    assert (r.status_code, r.json()["error"]) == (
        400,
        "error: 16 samples of 28x28 would be 12,544 pixels; this server makes at most 10,000 pixels per job "
        "(GANFORGE_WEB_MAX_OUTPUT_PIXELS)",
    )
    r = client.post("/api/pages/generate", data={"run": "00000-gan", "count": "4", "seed_b": "1", "frames": "4"})
    assert r.status_code == 400 and "4 samples of 28x28 and a walk of 4 frames would be 15,680 pixels" in r.text
    r = client.post("/api/pages/video", data={"run": "00004-video", "count": "8", "scale": "4"})
    assert r.status_code == 400 and "8 clips of 4 frames of 64x64 would be 131,072 pixels" in r.text
    r = client.post(
        "/api/pages/upscale", data={"run": "00002-superres"}, files={"image": ("s.png", png_bytes(np.zeros((20, 20))))}
    )
    assert r.status_code == 200, r.text  # 80 x 80 = 6,400 pixels
    assert wait_job(client, r.json()["job"])["state"] == "done"
    monkeypatch.setenv("GANFORGE_WEB_MAX_QUEUE", "many")
    with pytest.raises(UsageError, match=r"GANFORGE_WEB_MAX_QUEUE='many': expected a positive whole number"):
        create_app(web_runs)


def test_the_queue_is_bounded_and_jobs_cancel(web_runs, monkeypatch):
    """A full queue answers 429 before reading the upload; a queued job cancelled goes at once, a running one
    stops at its next progress report; either way its scratch folder (uploads) is removed."""
    import threading

    from ganforge.web.core import PAGES

    started, calls = threading.Event(), []

    def blocker(form, job):  # a job that runs until it is cancelled (at most 60 s)
        calls.append(job.id)
        started.set()
        for i in range(6000):
            job.progress(i, 6000, "working")
            __import__("time").sleep(0.01)
        return []

    monkeypatch.setattr(PAGES.get("complete"), "run", blocker)
    app = create_app(web_runs, limits={"max_queue": 1})
    client = local_client(app)
    files = {"image": ("d.png", png_bytes(np.zeros((28, 28)))), "mask": ("m.png", hole_png())}
    form = {"run": "00001-inpaint"}
    a = client.post("/api/pages/complete", data=form, files=files).json()["job"]
    assert started.wait(30)
    b = client.post("/api/pages/complete", data=form, files=files).json()["job"]
    r = client.post("/api/pages/complete", data=form, files=files)
    assert (r.status_code, r.json()["error"], r.headers["retry-after"]) == (
        429,
        "error: the server is busy: 1 jobs are waiting, the most it queues (GANFORGE_WEB_MAX_QUEUE); try again "
        "when one has finished",
        "2",
    )
    status = client.get("/api/status").json()
    assert (status["jobs"]["queued"], status["jobs"]["running"], status["scratch_folders"]) == (1, 1, 2)
    job_a, job_b = app.state.jobs.get(a), app.state.jobs.get(b)
    assert (job_b.scratch.dir / "image" / "d.png").is_file()
    r = client.post(f"/api/jobs/{b}/cancel")
    assert r.json() == {"id": b, "state": "cancelled", "cancelling": False}
    assert not job_b.scratch.dir.exists() and client.get(f"/api/jobs/{b}").json()["state"] == "cancelled"
    assert client.post(f"/api/jobs/{a}/cancel").json() == {"id": a, "state": "running", "cancelling": True}
    job = wait_job(client, a)
    assert job["state"] == "cancelled" and job["message"] == "cancelled" and job["outputs"] == []
    assert 0 < job["done"] < 6000 and not job_a.scratch.dir.exists() and calls == [a]  # b never ran
    assert client.post(f"/api/jobs/{a}/cancel").json()["state"] == "cancelled"  # again: nothing changes
    assert client.post("/api/jobs/nosuchjob/cancel").status_code == 404
    assert client.get("/api/status").json()["scratch_folders"] == 0
    # a failed job's scratch folder goes too
    monkeypatch.undo()
    small = {"image": ("tiny.png", png_bytes(np.zeros((10, 12))))}
    r = client.post("/api/pages/watermark", data={"run": "00006-watermark", "action": "extract"}, files=small)
    job = wait_job(client, r.json()["job"])
    assert job["state"] == "error" and job["error"].startswith("error: ") and "tiny.png" in job["error"]
    assert client.get("/api/status").json()["scratch_folders"] == 0


def test_stopping_the_server_cancels_its_jobs(web_runs):
    """At shutdown (Ctrl-C), the waiting jobs are cancelled and their uploads removed, the running one stopped."""
    app = create_app(web_runs)
    files = {"image": ("d.png", png_bytes(np.zeros((28, 28)))), "mask": ("m.png", hole_png())}
    with local_client(app) as client:  # as a context: the app's startup and shutdown run
        form = {"run": "00000-gan", "steps": "1000", "restarts": "16"}
        ids = [client.post("/api/pages/complete", data=form, files=files).json()["job"] for _ in range(3)]
        folders = [app.state.jobs.get(i).scratch.dir for i in ids]
        assert all(f.is_dir() for f in folders[1:])
    assert [app.state.jobs.get(i).state for i in ids] == ["cancelled"] * 3
    assert not any(f.exists() for f in folders) and app_scratch_folders() == 0
    assert not app.state.jobs._worker.is_alive()


def test_real_jobs_stop_when_cancelled(web_runs):
    """The latent search (per step) and the upscaler (per tile) stop at a cancel."""
    import time

    client = local_client(create_app(web_runs))

    def cancel_when_running(job_id):
        for _ in range(600):
            j = client.get(f"/api/jobs/{job_id}").json()
            if j["state"] == "running" and j["done"]:
                break
            time.sleep(0.02)
        client.post(f"/api/jobs/{job_id}/cancel")
        return wait_job(client, job_id)

    files = {"image": ("d.png", png_bytes(np.zeros((28, 28)))), "mask": ("m.png", hole_png())}
    r = client.post("/api/pages/complete", data={"run": "00000-gan", "steps": "1000", "restarts": "16"}, files=files)
    job = cancel_when_running(r.json()["job"])
    assert job["state"] == "cancelled" and job["done"] < 1000 and job["total"] == 1000
    noise = png_bytes(np.random.RandomState(0).randint(0, 256, (400, 400)))
    r = client.post(
        "/api/pages/upscale", data={"run": "00002-superres", "tile": "8"}, files={"image": ("n.png", noise)}
    )
    job = cancel_when_running(r.json()["job"])
    assert job["state"] == "cancelled" and job["done"] < job["total"] == 2500


def test_outputs_are_stored_once_and_finished_jobs_bounded(web_runs):
    app = create_app(web_runs, limits={"max_jobs_kept": 2})
    client = local_client(app)
    form = {"run": "00000-gan", "count": "4", "seed_b": "1", "frames": "3", "ema": "true"}
    ids = [client.post("/api/pages/generate", data=form | {"seed": str(i)}).json()["job"] for i in range(3)]
    jobs = [wait_job(client, i) for i in ids[1:]]
    assert client.get(f"/api/jobs/{ids[0]}").status_code == 404  # the oldest finished job dropped
    kept = app.state.jobs.get(ids[2])
    assert sorted(o.name for o in kept.outputs) == ["about", "samples.npz", "samples.png", "walk.gif"]  # once each
    shown = [(o["kind"], o["name"], o["group"]) for o in jobs[1]["outputs"]]
    assert shown == [
        ("image", "samples.png", "samples"),
        ("file", "samples.png", "downloads"),  # the same bytes, offered as a download
        ("image", "walk.gif", "samples"),
        ("file", "walk.gif", "downloads"),
        ("file", "samples.npz", "downloads"),
        ("text", "about", ""),
    ]
    urls = {(o["kind"], o["name"]): o["url"] for o in jobs[1]["outputs"]}
    assert urls[("image", "samples.png")] == urls[("file", "samples.png")]  # one copy, two links
    status = client.get("/api/status").json()
    held = sum(app.state.jobs.get(i).nbytes for i in ids[1:])
    assert (
        status["jobs"] | {"bytes": held}
        == {
            "queued": 0,
            "running": 0,
            "kept": 2,
            "bytes": held,
            "max_queue": 8,
            "max_kept": 2,
            "max_kept_bytes": 256 * 2**20,
        }
        and status["jobs"]["bytes"] == held > 0
    )
    assert status["memory_bytes"] > 0
    # and by bytes: results over max_kept_mb leave only the newest job
    app = create_app(web_runs, limits={"max_kept_mb": 0.001})
    client = local_client(app)
    ids = [client.post("/api/pages/generate", data=form | {"seed": str(i)}).json()["job"] for i in range(2)]
    wait_job(client, ids[1])
    assert (
        client.get(f"/api/jobs/{ids[0]}").status_code == 404 and client.get("/api/status").json()["jobs"]["kept"] == 1
    )


def raw(url: str, method: str, path: str, headers: dict, body: bytes = b""):
    """``method path`` with exactly ``headers`` (no Origin or Sec-Fetch-* added): (status, headers, body)."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path, body=body or None, headers=headers)
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def test_cross_site_requests_are_refused_and_pages_cannot_be_framed(server):
    port = server.rsplit(":", 1)[1]
    me = f"http://127.0.0.1:{port}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = b"run=00002-superres"  # no image: a request that passes the checks is answered 400 by the form

    def post(headers, path="/api/pages/upscale"):
        status, _, text = raw(server, "POST", path, form | headers, body)
        return status, text.decode()

    assert post({"Origin": me})[0] == 400  # the app's own origin
    assert post({"Sec-Fetch-Site": "same-origin"})[0] == 400  # no Origin, but the browser says it is the app
    assert post({"Sec-Fetch-Site": "none"})[0] == 400
    for headers, says in [
        ({"Origin": f"https://127.0.0.1:{port}"}, f"another site (https://127.0.0.1:{port})"),  # the scheme differs
        ({"Origin": f"http://127.0.0.1:{int(port) + 1}"}, "another site"),  # the port
        ({"Origin": f"http://localhost:{port}"}, "another site"),  # the host
        ({"Origin": "http://127.0.0.1"}, "another site"),  # port 80
        ({"Origin": "null"}, "another site (null)"),  # a sandboxed frame, a file: page
        ({}, "without an Origin header is not accepted"),  # a script, or an old browser
        ({"Sec-Fetch-Site": "cross-site"}, "(Sec-Fetch-Site: cross-site)"),
        ({"Origin": me, "Sec-Fetch-Site": "cross-site"}, "(Sec-Fetch-Site: cross-site)"),
        ({"Origin": me, "Sec-Fetch-Site": "same-site"}, "(Sec-Fetch-Site: same-site)"),  # another port of this host
    ]:
        status, text = post(headers)
        assert status == 403 and says in text and text.startswith('{"error":"error: '), (headers, text)
    assert post({}, "/api/jobs/abc/cancel")[0] == 403
    # reading from another site: only a link to the app (a top-level navigation) is let in
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    assert raw(server, "GET", "/files/00000-gan/samples/latest.png", cross)[0] == 403
    assert raw(server, "GET", "/api/runs", cross | {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"})[0] == 403
    assert raw(server, "GET", "/", cross | {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})[0] == 200
    # every answer, errors included, forbids framing and carries the CSP
    for method, path, headers in [
        ("GET", "/", {}),
        ("GET", "/static/app.js", {}),
        ("GET", "/api/runs", {}),
        ("GET", "/files/nope.png", {}),
        ("GET", "/files/../../etc/passwd", {}),
        ("GET", "/api/runs", {"Host": "evil.example"}),
        ("POST", "/api/pages/upscale", {}),
        ("POST", "/api/pages/upscale", {"Origin": me}),
    ]:
        status, h, _ = raw(server, method, path, headers | (form if method == "POST" else {}), body)
        assert h["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in h["content-security-policy"], path
        assert "script-src 'self';" in h["content-security-policy"] and h["x-content-type-options"] == "nosniff"


def test_error_lines_show_no_absolute_paths(web_runs, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(web_runs / "00010-uncond", runs / "nockpt")
    shutil.rmtree(runs / "nockpt" / "checkpoints")
    client = local_client(create_app(runs))
    for data in ({"run": "nockpt"}, {"run": "../runs/nockpt"}, {"run": str(runs / "nockpt")}):
        r = client.post("/api/pages/generate", data=data)
        msg = r.json()["error"]
        assert r.status_code == 400 and str(tmp_path) not in msg, msg
    assert "'nockpt" in client.post("/api/pages/generate", data={"run": "nockpt"}).json()["error"]


def test_soak_short(web_runs):
    """benchmarks/web_soak.py, short: 60 mixed requests from 8 clients on a server of its own (a queue of 3,
    so that some are answered 429 and sent again): no 5xx, every answer the expected one, no traceback in the
    server's log, memory at the end within 1.3x of after the first 20 requests, its temporary folder empty."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("web_soak", Path(__file__).parents[1] / "benchmarks" / "web_soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    f = soak.soak(web_runs, requests=60, clients=8, seconds=120, env={"GANFORGE_WEB_MAX_QUEUE": "3"})
    print(soak.report(f))
    assert f["requests"] == 60 and f["server_errors_5xx"] == 0 and f["unexpected"] == [], f["unexpected"]
    assert f["tracebacks"] == 0, f["log_tail"]
    assert f["rss_ratio"] <= 1.3 and f["temp_left"] == [] and f["server_status"]["scratch_folders"] == 0
    assert f["job_states"].get("done", 0) > 10 and f["job_states"].get("cancelled", 0) > 0


def test_serve_command_checks_its_arguments_and_warns_off_localhost(web_runs, monkeypatch, capsys):
    import ganforge.web.server as server

    calls = []
    monkeypatch.setattr(server, "serve", lambda *a, **k: calls.append((a, k)))
    assert cli.main(["serve", "--runs-dir", str(web_runs / "nope")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --runs-dir '{web_runs / 'nope'}' is not a folder")
    assert cli.main(["serve", "--runs-dir", str(web_runs), "--port", "7999"]) == 0
    assert calls[-1][1]["host"] == "127.0.0.1" and calls[-1][1]["port"] == 7999
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["serve", "--runs-dir", str(web_runs), "--host", "0.0.0.0"]) == 0
    assert capsys.readouterr().err.startswith("warning: listening on 0.0.0.0: other machines can reach this app")


def test_truncated_noise_is_seeded_bounded_and_off_by_default(web_runs, tmp_path):
    from ganforge.errors import UsageError
    from ganforge.imaging import to_uint8
    from ganforge.tasks.gan.app import truncated_noise

    g = ganforge.load_generator(web_runs / "00000-gan")
    assert torch.equal(truncated_noise(g, 64, 5), g.noise(64, 5))
    z = truncated_noise(g, 64, 5, 0.5)
    assert z.abs().max() <= 0.5 and torch.equal(z, truncated_noise(g, 64, 5, 0.5))
    inside = g.noise(64, 5).abs() <= 0.5
    assert torch.equal(z[inside], g.noise(64, 5)[inside])  # only the components outside are redrawn
    assert z.std() < 0.35  # a standard normal truncated at 0.5 has std 0.28
    with pytest.raises(UsageError, match=r"truncation 0: expected a number > 0"):
        truncated_noise(g, 4, 0, 0)
    # ganforge sample --truncation draws the same latents
    assert (
        cli.main(
            ["sample", str(web_runs / "00000-gan"), "--n", "6", "--truncation", "0.5", "--out", str(tmp_path / "s.npz")]
        )
        == 0
    )
    want = to_uint8(g.generate(truncated_noise(g, 6, 0, 0.5)))  # the classes in turn, as sample draws them
    assert np.array_equal(np.load(tmp_path / "s.npz")["arr_0"], want.permute(0, 2, 3, 1).numpy())


def test_the_web_app_uses_only_the_api_and_the_apps():
    """The web app (ganforge.web and each task's web.py page) reaches models only through ganforge.api, the
    apps (a page: its own task's app.py), the run folder's reader, the built-in models' cards, image headers,
    errors and the registry, and nothing else imports it."""
    from tests.test_architecture import import_graph

    graph = import_graph()
    allowed = (
        "ganforge.web",
        "ganforge.api",
        "ganforge.apps",
        "ganforge.runs",
        "ganforge.imaging",
        "ganforge.errors",
        "ganforge.registry",
        "ganforge.models",
    )

    def is_page(m):
        return m.startswith("ganforge.tasks.") and m.endswith(".web")

    web = {m: deps for m, deps in graph.items() if m.startswith("ganforge.web") or is_page(m)}
    assert "ganforge.tasks.gan.web" in web and "ganforge.web.server" in web

    def own(m, d):  # a page may use its own task's app functions, options and default model (cli.DEFAULT_MODEL),
        task = m.rsplit(".", 1)[0]  # and the core lists the tasks
        return d in (task + ".app", task + ".options", task + ".cli") if is_page(m) else d == "ganforge.tasks"

    assert {m: sorted(d for d in deps if not d.startswith(allowed) and not own(m, d)) for m, deps in web.items()} == {
        m: [] for m in web
    }
    users = sorted(
        m
        for m, deps in graph.items()
        if not m.startswith(("ganforge.web", "ganforge.cli"))
        and not is_page(m)
        and any(d.startswith("ganforge.web") for d in deps)
    )
    assert users == []
