"""Image completion app: sizes and modes kept, known pixels exact, the latent search, errors, folders, CLI."""

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.cli import main as ganforge_main
from ganforge.imaging import compare_layout
from ganforge.tasks.inpaint.app import (
    InpaintError,
    LatentInpainter,
    complete_batch,
    contextual_weights,
    inpaint,
    inpaint_detailed,
    inpaint_folder,
    load_completer,
)
from ganforge.tasks.inpaint.blend import blend, solve_poisson

TINY_GAN = [
    "data.limit=256",
    "model.z_dim=8",
    "model.g_width=8",
    "model.d_width=8",
    "train.batch_size=16",
    "train.steps=20",
    "train.progress=false",
    "train.tensorboard=false",
    "eval.every_kimg=0",
]
FAST = dict(steps=15, restarts=2)


def cli_main(argv):
    """``ganforge inpaint ARGV``."""
    return ganforge_main(["inpaint", *argv])


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory):
    return ganforge.train(overrides=TINY_GAN, runs_dir=tmp_path_factory.mktemp("grey"))


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    """A 3-channel, class-conditional run (covers colour images and the per-class restarts)."""
    return ganforge.train(
        overrides=TINY_GAN + ["data.channels=3", "model.conditional=true"], runs_dir=tmp_path_factory.mktemp("rgb")
    )


@pytest.fixture(scope="module")
def net_run(tmp_path_factory):
    """A tiny completion network (task=inpaint)."""
    from ganforge.tasks import get_task, resolve

    cfg = resolve(
        None,
        [
            "task=inpaint",
            "data.limit=64",
            "inpaint.width=8",
            "inpaint.d_width=8",
            "train.batch_size=16",
            "train.steps=4",
            "train.progress=false",
            "train.tensorboard=false",
        ],
    )
    return get_task("inpaint").trainer(cfg, runs_dir=tmp_path_factory.mktemp("net"), log=lambda m: None).run()


def digit_image(size=(40, 36), mode="L", seed=0):
    """A real MNIST digit resized to ``size`` (W, H), in ``mode``."""
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset

    d = load_dataset(DataConfig(limit=4))
    im = Image.fromarray(d.images[seed, 0].numpy(), "L").resize(size, Image.BILINEAR)
    if mode == "L":
        return im
    rng = np.random.default_rng(seed)  # a real colour image: tint the channels differently
    a = np.asarray(im).astype(np.float32)
    rgb = np.stack([a, a * 0.6 + 40, 255 - a * 0.8], -1).clip(0, 255).astype(np.uint8)
    if mode == "RGBA":
        alpha = rng.integers(0, 256, size=a.shape, dtype=np.uint8)
        return Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), "RGBA")
    return Image.fromarray(rgb, "RGB")


def box_hole(size, box):
    x, y, w, h = box
    m = np.zeros((size[1], size[0]), bool)
    m[y : y + h, x : x + w] = True
    return m


# ---- sizes, modes, exact known pixels ------------------------------------------------------
def test_grey_image_at_other_size_keeps_size_mode_and_known_pixels(grey_run):
    im = digit_image((40, 36))
    out = inpaint(grey_run, im, box=(10, 8, 16, 14), **FAST)
    assert out.size == (40, 36) and out.mode == "L"
    hole = box_hole(im.size, (10, 8, 16, 14))
    a, b = np.asarray(im), np.asarray(out)
    assert np.array_equal(a[~hole], b[~hole])
    assert not np.array_equal(a[hole], b[hole])  # the hole was filled with something


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_image_keeps_size_mode_alpha_and_known_pixels(rgb_run, mode, tmp_path):
    im = digit_image((50, 30), mode)
    mask = np.zeros((30, 50), np.uint8)
    mask[5:20, 12:30] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    res = inpaint_detailed(rgb_run, im, mask=tmp_path / "m.png", **FAST)
    out = res.image
    assert out.size == (50, 30) and out.mode == mode and res.resized and res.method == "latent"
    a, b, hole = np.asarray(im), np.asarray(out), mask > 0
    assert np.array_equal(a[~hole], b[~hole])
    if mode == "RGBA":
        assert np.array_equal(a[..., 3], b[..., 3])  # alpha passed through, also in the hole
    assert res.details["class"][0] in [str(i) for i in range(10)]  # every class tried, the best kept


def test_model_size_input_and_arrays(grey_run):
    a = np.asarray(digit_image((28, 28)))
    m = np.zeros((28, 28), bool)
    m[7:21, 7:21] = True
    out = inpaint(grey_run, a, mask=m, blend="none", **FAST)
    assert out.size == (28, 28) and np.array_equal(np.asarray(out)[~m], a[~m])
    from ganforge.runs import find_checkpoint

    folder = find_checkpoint(grey_run, "last")  # a checkpoint folder works as the model too
    again = inpaint(folder, a, mask=m, blend="none", **FAST)
    assert np.array_equal(np.asarray(again), np.asarray(out))  # same seed, same weights: same result


def test_grey_image_stored_as_rgb_is_accepted_by_a_grey_model(grey_run):
    rgb = digit_image((32, 32)).convert("RGB")  # equal channels: converting to grey loses nothing
    out = inpaint(grey_run, rgb, box=(8, 8, 12, 12), **FAST)
    b = np.asarray(out)
    assert out.mode == "RGB" and np.array_equal(b[..., 0], b[..., 1]) and np.array_equal(b[..., 0], b[..., 2])


@pytest.mark.parametrize("how", ["poisson", "feather", "none"])
def test_every_blend_keeps_known_pixels(grey_run, how):
    im = digit_image((56, 56))
    out = inpaint(grey_run, im, box=(14, 14, 28, 28), blend=how, steps=5, restarts=1)
    hole = box_hole(im.size, (14, 14, 28, 28))
    assert np.array_equal(np.asarray(im)[~hole], np.asarray(out)[~hole])


# ---- the latent search (Yeh et al. 2017) ----------------------------------------------------
def _batch(n=3):
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset

    x = load_dataset(DataConfig(limit=n)).images.float() / 127.5 - 1
    hole = torch.zeros(n, 1, 28, 28, dtype=torch.bool)
    hole[:, :, 7:21, 7:21] = True
    return x, hole


def test_contextual_weights_follow_the_paper():
    hole = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    hole[0, 0, 4, 4] = True
    w = contextual_weights(hole, window=3)
    assert w[0, 0, 4, 4] == 0  # missing pixels weigh nothing
    assert torch.isclose(w[0, 0, 3, 3], torch.tensor(1 / 9))  # one missing pixel in its 3x3 window
    assert w[0, 0, 0, 0] == 0 and w.sum() > 0  # far from the hole: no weight


def test_contextual_loss_decreases(grey_run):
    comp = LatentInpainter.from_run(grey_run)
    x, hole = _batch()
    res = comp.optimise(x, hole, steps=30, restarts=2, seed=0)
    assert res.history.shape == (31, 3)
    assert (res.history[-1] < res.history[0]).all()
    assert res.fill.shape == (3, 1, 28, 28) and res.fill.abs().max() <= 1


def test_more_restarts_never_give_a_worse_best_loss(grey_run):
    comp = LatentInpainter.from_run(grey_run)
    x, hole = _batch()
    few = comp.optimise(x, hole, steps=10, restarts=2, seed=3)
    many = comp.optimise(x, hole, steps=10, restarts=5, seed=3)
    # the first restarts are the same runs, so the best of more is never worse (up to float noise)
    assert torch.allclose(many.restart_losses[:, :2], few.restart_losses, rtol=1e-4, atol=1e-4)
    assert (many.context_loss <= few.context_loss + 1e-4).all()


def test_conditional_class_fixes_the_search(rgb_run):
    comp = load_completer(rgb_run)
    x, hole = _batch(2)
    x = x.repeat(1, 3, 1, 1)
    res = comp.optimise(x, hole, steps=3, restarts=2, class_=4)
    assert res.labels.tolist() == [4, 4] and res.restart_losses.shape == (2, 2)
    res = comp.optimise(x, hole, steps=3, restarts=2)
    assert res.restart_losses.shape == (2, 20)  # 10 classes x 2 restarts


# ---- Poisson / feather blending ---------------------------------------------------------
def test_poisson_blend_removes_a_constant_offset_exactly():
    yy, xx = torch.meshgrid(torch.arange(20.0), torch.arange(24.0), indexing="ij")
    img = (torch.sin(xx / 3) + torch.cos(yy / 4))[None, None] * 50 + 100
    hole = torch.zeros(1, 1, 20, 24, dtype=torch.bool)
    hole[..., 5:15, 0:10] = True  # touches the image border (Neumann there)
    x = solve_poisson(img + 30, img, hole)  # the fill has the right gradients but the wrong level
    assert (x - img).abs().max() < 0.05
    for how in ("poisson", "feather", "none"):
        out = blend(img + 30, img, hole, how)
        assert torch.equal(out[~hole.expand_as(out)], img[~hole.expand_as(img)])


# ---- the completion network (method 2) ----------------------------------------------------
def test_network_method_with_a_task_inpaint_run(net_run, grey_run, tmp_path):
    im = digit_image((40, 36))
    res = inpaint_detailed(net_run, im, box=(10, 8, 16, 14))  # auto: the network
    assert res.method == "network" and res.image.size == (40, 36) and res.image.mode == "L"
    hole = box_hole(im.size, (10, 8, 16, 14))
    assert np.array_equal(np.asarray(im)[~hole], np.asarray(res.image)[~hole])
    with pytest.raises(InpaintError, match="completion-network run"):
        inpaint(net_run, im, box=(10, 8, 16, 14), method="latent")
    with pytest.raises(InpaintError, match="is a GAN run"):
        inpaint(grey_run, im, box=(10, 8, 16, 14), method="network")
    with pytest.raises(InpaintError, match="takes none"):
        inpaint(net_run, im, box=(10, 8, 16, 14), class_=3)


# ---- errors -----------------------------------------------------------------------------
def test_errors_each_say_what_is_wrong(grey_run, rgb_run, tmp_path):
    grey = digit_image((40, 36))
    cases = [
        (dict(image=grey, mask=np.zeros((30, 30), bool)), r"30x30 but the image is 40x36"),
        (dict(image=grey, mask=np.zeros((36, 40), bool)), "marks no pixel as missing"),
        (dict(image=grey, mask=np.ones((36, 40), bool)), "marks every pixel as missing"),
        (dict(image=grey, box=(30, 0, 20, 10)), "out of bounds of the 40x36 image"),
        (dict(image=grey, box="1,2,3"), "four integers"),
        (dict(image=grey), "give a mask"),
        (dict(image=grey, box=(1, 1, 3, 3), mask=np.ones((36, 40), bool)), "not both"),
        (dict(image=digit_image((40, 36), "RGB"), box=(1, 1, 5, 5)), "1-channel .grayscale. images but .* colour"),
        (dict(image=tmp_path / "nope.png", box=(1, 1, 5, 5)), "image file .*nope.png' does not exist"),
        (dict(image=grey, mask=tmp_path / "nomask.png"), "mask file .*nomask.png' does not exist"),
        (dict(image=grey, box=(1, 1, 5, 5), class_=2), "unconditional"),
        (dict(image=grey.convert("P"), box=(1, 1, 5, 5)), "mode 'P'"),
        (dict(image=grey, box=(1, 1, 5, 5), method="magic"), "choose one of"),
    ]
    for kw, msg in cases:
        with pytest.raises(InpaintError, match=msg):
            inpaint(grey_run, steps=1, restarts=1, **kw)
    with pytest.raises(InpaintError, match="3-channel .colour. images but .* grayscale"):
        inpaint(rgb_run, grey, box=(1, 1, 5, 5), steps=1, restarts=1)
    with pytest.raises(ValueError, match="does not exist"):
        inpaint(tmp_path / "no_run", grey, box=(1, 1, 5, 5))


def test_imaging_errors_reach_inpaint_callers_as_inpaint_errors(grey_run, tmp_path):
    """ganforge.imaging raises ImageError; the same problem met by inpaint is an InpaintError (same message)."""
    from ganforge.errors import GanforgeError, ImageError
    from ganforge.imaging import box_mask

    with pytest.raises(ImageError, match="out of bounds of the 40x36 image") as e:
        box_mask((30, 0, 20, 10), (40, 36))
    assert isinstance(e.value, GanforgeError) and not isinstance(e.value, InpaintError)
    with pytest.raises(InpaintError, match="out of bounds of the 40x36 image"):
        inpaint(grey_run, digit_image((40, 36)), box=(30, 0, 20, 10))


# ---- folders and the comparison picture ------------------------------------------------------
def test_folder_mode_matches_masks_by_name(grey_run, tmp_path):
    imgs, masks, out, cmp = (tmp_path / d for d in ("imgs", "masks", "out", "cmp"))
    imgs.mkdir(), masks.mkdir()
    for i, name in enumerate(["a", "b"]):
        digit_image((28 + 4 * i, 28), seed=i).save(imgs / f"{name}.png")
        m = np.zeros((28, 28 + 4 * i), np.uint8)
        m[8:18, 6 + i : 16 + i] = 255
        Image.fromarray(m).save(masks / f"{name}.{'png' if i == 0 else 'bmp'}")  # any extension
    results = inpaint_folder(grey_run, imgs, masks, out, cmp, steps=3, restarts=1)
    assert [r.path.name for r in results] == ["a.png", "b.png"]
    assert Image.open(out / "b.png").size == (32, 28)
    assert sorted(p.name for p in cmp.iterdir()) == ["a.png", "b.png"]
    digit_image(seed=2).save(imgs / "c.png")
    digit_image(seed=3).save(imgs / "d.jpg")
    with pytest.raises(InpaintError, match=r"2 of 4 image\(s\) .* have no mask .*: c.png, d.jpg"):
        inpaint_folder(grey_run, imgs, masks, out)
    (imgs / "c.png").unlink(), (imgs / "d.jpg").unlink()
    (masks / "b.bmp").write_bytes(b"not an image")
    with pytest.raises(InpaintError, match="cannot read mask .*b.bmp"):
        inpaint_folder(grey_run, imgs, masks, out)


def test_compare_image_layout(grey_run, tmp_path):
    im = digit_image((40, 36))
    inpaint(grey_run, im, box=(10, 8, 16, 14), compare=tmp_path / "c.png", **FAST)
    c = Image.open(tmp_path / "c.png")
    g = compare_layout(40, 36, 3)  # the input still holds the digit under the hole: original shown
    assert c.size == (g["width"], g["height"]) and g["scale"] == 4 and c.mode == "L"
    a = np.asarray(c)
    s, top = g["scale"], g["label"]
    assert (a[top + 8 * s : top + 22 * s, 10 * s : 26 * s] == 128).all()  # masked panel: the hole in grey
    x0 = 2 * (g["panel_w"] + g["gap"])  # third panel: the original, scaled
    orig = np.asarray(im.resize((40 * s, 36 * s), Image.NEAREST))
    assert np.array_equal(a[top:, x0:], orig)
    painted = np.asarray(im).copy()
    painted[8:22, 10:26] = 255  # a hole painted over: the original is unknown, two panels
    inpaint(grey_run, painted, box=(10, 8, 16, 14), compare=tmp_path / "d.png", **FAST)
    assert Image.open(tmp_path / "d.png").size[0] == compare_layout(40, 36, 2)["width"]


def test_complete_batch_at_model_size(grey_run):
    comp = load_completer(grey_run, "latent")
    x, hole = _batch(2)
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)
    out, info = complete_batch(comp, u8, hole, steps=3, restarts=1)
    assert out.dtype == torch.uint8 and torch.equal(out[~hole.expand_as(out)], u8[~hole.expand_as(u8)])


# ---- command line ------------------------------------------------------------------------
def test_cli_single_image_folder_and_one_line_errors(grey_run, tmp_path, capsys):
    im = digit_image((40, 36))
    im.save(tmp_path / "in.png")
    rc = cli_main(
        [
            "--model",
            str(grey_run),
            "--image",
            str(tmp_path / "in.png"),
            "--box",
            "10,8,16,14",
            "--out",
            str(tmp_path / "out.png"),
            "--steps",
            "3",
            "--restarts",
            "1",
            "--compare",
            str(tmp_path / "cmp.png"),
        ]
    )
    cap = capsys.readouterr()
    assert rc == 0 and cap.out.strip().splitlines()[-1] == str(tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == (40, 36) and (tmp_path / "cmp.png").is_file()
    bad = [
        (["--box", "30,0,20,10"], "out of bounds"),
        (["--box", "1,1,2,2", "--method", "network"], "is a GAN run"),
        (["--mask", str(tmp_path / "missing.png")], "does not exist"),
        (["--box", "1,1,2,2", "--class", "3"], "unconditional"),
    ]
    for extra, msg in bad:
        rc = cli_main(
            [
                "--model",
                str(grey_run),
                "--image",
                str(tmp_path / "in.png"),
                "--out",
                str(tmp_path / "x.png"),
                "--steps",
                "1",
                *extra,
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and msg in err[0], (extra, err)
    rc = cli_main(
        [
            "--model",
            str(tmp_path / "norun"),
            "--image",
            str(tmp_path / "in.png"),
            "--box",
            "1,1,2,2",
            "--out",
            str(tmp_path / "x.png"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "does not exist" in err[0]
    # folder mode: --image is a folder
    (tmp_path / "imgs").mkdir()
    im.save(tmp_path / "imgs" / "q.png")
    rc = cli_main(
        [
            "--model",
            str(grey_run),
            "--image",
            str(tmp_path / "imgs"),
            "--box",
            "10,8,16,14",
            "--out",
            str(tmp_path / "filled"),
            "--steps",
            "2",
            "--restarts",
            "1",
        ]
    )
    assert rc == 0 and (tmp_path / "filled" / "q.png").is_file()


def test_ganforge_inpaint_subcommand_when_wired(grey_run, tmp_path, capsys):
    from ganforge.cli import build_parser, main

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    if "inpaint" not in sub.choices:
        pytest.skip("'ganforge inpaint' is not wired into cli.py yet")
    digit_image().save(tmp_path / "in.png")
    rc = main(
        [
            "inpaint",
            "--model",
            str(grey_run),
            "--image",
            str(tmp_path / "in.png"),
            "--box",
            "50,0,5,5",
            "--out",
            str(tmp_path / "o.png"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "out of bounds" in err[0]


# ---- folder mode in batches ------------------------------------------------------------------
def _mixed_folder(tmp_path, n=5):
    """n digits of different sizes, each with a mask of its own size and place."""
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    for i in range(n):
        size = (28 + 6 * (i % 3), 28 + 4 * (i % 2))  # (W, H): 28x28, 34x32, 40x28, ...
        digit_image(size, seed=i % 4).save(imgs / f"d{i}.png")
        m = np.zeros(size[::-1], np.uint8)
        m[5 + i : 15 + i, 4 + 2 * i : 14 + 2 * i] = 255
        Image.fromarray(m).save(masks / f"d{i}.png")
    return imgs, masks


def test_folder_mode_searches_in_batches_with_the_results_of_one_at_a_time(grey_run, tmp_path, monkeypatch):
    imgs, masks = _mixed_folder(tmp_path)
    calls = []
    optimise = LatentInpainter.optimise

    def counted(self, images, holes, **kw):
        calls.append(images.shape[0])
        return optimise(self, images, holes, **kw)

    monkeypatch.setattr(LatentInpainter, "optimise", counted)
    seen = []
    batched = inpaint_folder(
        grey_run, imgs, masks, tmp_path / "b", batch_size=2, progress=lambda i, n, r: seen.append((i, n)), **FAST
    )
    assert calls == [2, 2, 1] and seen == [(i, 5) for i in range(5)]  # three searches for five images
    calls.clear()
    single = inpaint_folder(grey_run, imgs, masks, tmp_path / "s", batch_size=1, **FAST)
    assert calls == [1] * 5
    for b, s in zip(batched, single):
        src = np.asarray(Image.open(imgs / b.path.name))
        hole = np.asarray(Image.open(masks / b.path.name)) > 0
        x, y = np.asarray(b.image), np.asarray(s.image)
        assert b.image.size == Image.open(imgs / b.path.name).size
        assert np.array_equal(x[~hole], src[~hole]) and np.array_equal(y[~hole], src[~hole])  # known pixels exact
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 2  # the same search, up to float rounding
        assert b.details["context_loss"] == pytest.approx(s.details["context_loss"], rel=1e-3, abs=1e-3)
        assert len(b.details["context_loss"]) == 1 and b.details["history"].shape == (FAST["steps"] + 1, 1)
    # each image starts from the seed's latents whatever shares its batch: alone it gets the same fill
    alone = inpaint_detailed(grey_run, imgs / "d3.png", mask=masks / "d3.png", **FAST)
    assert np.abs(np.asarray(alone.image).astype(int) - np.asarray(batched[3].image).astype(int)).max() <= 2


def test_folder_mode_checks_outputs_and_batch_size_first(grey_run, tmp_path, monkeypatch):
    from ganforge.errors import WriteError

    imgs, masks = _mixed_folder(tmp_path, 2)
    monkeypatch.setattr("ganforge.tasks.inpaint.app.load_completer", lambda *a, **k: pytest.fail("model loaded"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write output folder .*file': it is a file; expected a folder"):
        inpaint_folder(grey_run, imgs, masks, tmp_path / "file")
    with pytest.raises(WriteError, match=r"comparison folder .*file/cmp'.*is a file, not a folder"):
        inpaint_folder(grey_run, imgs, masks, tmp_path / "out", tmp_path / "file" / "cmp")
    with pytest.raises(InpaintError, match="batch size: expected at least 1 image, got 0"):
        inpaint_folder(grey_run, imgs, masks, tmp_path / "out", batch_size=0)


def test_cli_folder_mode_reports_each_image_without_a_terminal(grey_run, tmp_path, capsys):
    imgs, masks = _mixed_folder(tmp_path, 3)
    rc = cli_main(
        [
            "--model",
            str(grey_run),
            "--image",
            str(imgs),
            "--mask",
            str(masks),
            "--out",
            str(tmp_path / "o"),
            "--steps",
            "2",
            "--restarts",
            "1",
            "--batch-size",
            "2",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0 and [ln.split("]")[0] for ln in err[:3]] == ["[1/3", "[2/3", "[3/3"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["d0.png", "d1.png", "d2.png"]
    assert (
        cli_main(
            [
                "--model",
                str(grey_run),
                "--image",
                str(imgs),
                "--mask",
                str(masks),
                "--out",
                str(tmp_path / "o"),
                "--batch-size",
                "0",
            ]
        )
        == 2
    )
    assert "--batch-size must be at least 1, got 0" in capsys.readouterr().err


# ---- options objects -------------------------------------------------------------------------
def test_options_object_and_keywords_give_identical_outputs(grey_run, tmp_path):
    from ganforge.tasks.inpaint.app import InpaintOptions

    im = digit_image((40, 36))
    kw = dict(steps=6, restarts=2, seed=3, blend="feather", lr=0.04, window=5)
    by_kw = inpaint_detailed(grey_run, im, box=(10, 8, 16, 14), **kw)
    by_opts = inpaint_detailed(grey_run, im, box=(10, 8, 16, 14), options=InpaintOptions(**kw))
    mixed = inpaint(
        grey_run,
        im,
        box=(10, 8, 16, 14),
        options=InpaintOptions(steps=6, restarts=2, seed=3, lr=0.04, window=5),
        blend="feather",
    )
    assert np.array_equal(np.asarray(by_kw.image), np.asarray(by_opts.image))
    assert np.array_equal(np.asarray(by_kw.image), np.asarray(mixed))  # a keyword replaces the options' value
    assert by_kw.details["context_loss"] == by_opts.details["context_loss"]
    imgs, masks = _mixed_folder(tmp_path, 3)
    a = inpaint_folder(grey_run, imgs, masks, tmp_path / "a", batch_size=2, **kw)
    b = inpaint_folder(grey_run, imgs, masks, tmp_path / "b", options=InpaintOptions(batch_size=2, **kw))
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))


def test_unknown_keyword_is_one_line_naming_it_and_the_options(grey_run, tmp_path):
    im = digit_image((40, 36))
    for call in (
        lambda: inpaint(grey_run, im, box=(1, 1, 5, 5), stepz=3),
        lambda: inpaint_detailed(grey_run, im, box=(1, 1, 5, 5), stepz=3),
        lambda: inpaint_folder(grey_run, tmp_path, None, tmp_path / "o", box=(1, 1, 5, 5), stepz=3),
    ):
        with pytest.raises(TypeError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "unexpected keyword argument 'stepz'" in msg
        assert "InpaintOptions options: method, steps, restarts" in msg
    with pytest.raises(TypeError, match="options must be InpaintOptions, got dict"):
        inpaint(grey_run, im, box=(1, 1, 5, 5), options={"steps": 3})
