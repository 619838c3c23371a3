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
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(60_000)
    pg.base = server
    yield pg
    pg.close()
    assert errors == [], f"JavaScript errors: {errors}"


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
    assert (
        page.locator(".run[data-run='00005-broken'] .error").inner_text().startswith("error: cannot read '")
        and "config.yaml" in page.locator(".run[data-run='00005-broken'] .error").inner_text()
    )
    assert page.locator(".run[data-run='00002-superres'] svg.curves").count() >= 2  # losses, and PSNR on its own scale
    card = page.locator(".run[data-run='live']")
    assert card.locator(".badge.live").inner_text() == "training"
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
    submit_and_wait(page)
    job = page.request.get(f"{page.base}/api/jobs/{page.locator('.status').get_attribute('data-job')}").json()
    assert job["state"] == "done" and (job["done"], job["total"]) == (5, 5)
    assert job["message"] == "latent search step 5/5"
    assert fetch_image(page, "completed.png").shape == (28, 28)


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


def wait_job(client, job_id: str) -> dict:
    import time

    for _ in range(600):
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_builtin_models_are_listed_for_their_pages_and_run_jobs(web_runs, builtins, tmp_path):
    from fastapi.testclient import TestClient

    from ganforge.tasks.gan.app import write_samples
    from ganforge.tasks.gan.cli import DEFAULT_MODEL as GAN_DEFAULT
    from ganforge.tasks.superres.cli import DEFAULT_MODEL as SR_DEFAULT

    client = TestClient(create_app(web_runs), base_url="http://localhost")
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
        (GAN_DEFAULT, f"error: run '{GAN_DEFAULT}' is not a run folder in '{web_runs}'"),  # a name alone is a run
    ]:
        r = client.post("/api/pages/generate", data=form | {"run": value})
        assert (r.status_code, r.json()["error"]) == (400, error), value
    for url in ("/api/runs/builtin:..%2fx/options/generate", "/api/runs/builtin%3A..%2F..%2Fetc/options/generate"):
        r = client.get(url)
        assert r.status_code == 400 and r.json()["error"].startswith("error: no built-in model named '.."), url
    for url in (f"/files/builtin:{GAN_DEFAULT}/README.md", f"/files/builtin:{GAN_DEFAULT}/config.json"):
        assert client.get(url).status_code == 404


def test_a_run_called_like_a_builtin_model_stays_a_run(web_runs, builtins, tmp_path):
    from fastapi.testclient import TestClient

    from ganforge.tasks.gan.app import write_samples
    from ganforge.tasks.gan.cli import DEFAULT_MODEL as GAN_DEFAULT

    runs = tmp_path / "runs"
    shutil.copytree(web_runs / "00010-uncond", runs / GAN_DEFAULT)  # an unconditional run, named like the model
    client = TestClient(create_app(runs), base_url="http://localhost")
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
    from fastapi.testclient import TestClient

    client = TestClient(create_app(web_runs, max_pixels=600, max_upload_mb=0.01), base_url="http://localhost")
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
    assert r.status_code == 400 and r.json()["error"].startswith(
        "error: run '../00002-superres' is not a run folder in"
    )


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
