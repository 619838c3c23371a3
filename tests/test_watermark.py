"""The watermark task (tasks/watermark.py), its attack layer (training/attacks.py), the app
(apps/watermark.py: message coding, detection statistics, files, folders) and the CLI verb."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.errors import ImageError, RunError, WatermarkError
from ganforge.tasks import get_task
from ganforge.tasks.watermark import app as wm
from ganforge.tasks.watermark import attacks as A
from ganforge.tasks.watermark.handle import WatermarkHandle
from ganforge.tasks.watermark.networks import normalise, psnr_of, target_rms

TINY = [
    "task=watermark",
    "data.limit=32",
    "train.batch_size=8",
    "train.progress=false",
    "train.tensorboard=false",
    "train.log_every=1",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "train.sample_count=4",
    "train.minutes=null",
    *get_task("watermark").tiny,
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny 8-bit watermark run (2 steps: weights untrained; what is tested is the plumbing)."""
    return ganforge.train(overrides=TINY + ["train.steps=2"], runs_dir=tmp_path_factory.mktemp("wmruns"))


@pytest.fixture(scope="module")
def run32(tmp_path_factory):
    """A 32-bit watermark run of one step (for the message capacity and the CLI)."""
    return ganforge.train(
        overrides=TINY + ["watermark.bits=32", "train.steps=1"], runs_dir=tmp_path_factory.mktemp("wmruns32")
    )


# ---- message coding and statistics -------------------------------------------------------------------


def test_bch_code_corrects_up_to_t_errors_and_reports_them():
    code = wm.MessageCode(32)
    assert (code.payload_bytes, code.t) == (2, 3)  # 16 payload bits + 15 BCH bits (m=5) in 32
    bits = code.encode("gf")
    assert bits.shape == (32,) and set(np.unique(bits)) <= {0, 1}
    assert code.decode(bits) == (b"gf", 0, True)
    rng = np.random.default_rng(0)
    for nerr in (1, 2, 3):
        for _ in range(20):
            flipped = bits.copy()
            flipped[rng.choice(31, nerr, replace=False)] ^= 1  # the 31 bits of the codeword
            assert code.decode(flipped) == (b"gf", nerr, True)
    assert wm.MessageCode(64).t == 5 and wm.MessageCode(64).payload_bytes == 4


def test_messages_text_hex_and_capacity():
    code = wm.MessageCode(32)
    assert code.parse("0x6766") == b"gf" and code.parse("a") == b"a\0"
    assert np.array_equal(code.encode("0x6766"), code.encode("gf"))
    assert not np.array_equal(code.encode(b"\0\0"), np.zeros(32))  # the mask: zeros are not a blank pattern
    with pytest.raises(
        WatermarkError, match=r"^message 'abc' is 3 bytes, more than this model's capacity of 2 bytes \(32 bits"
    ):
        code.parse("abc")
    with pytest.raises(WatermarkError, match=r"message '0xzz': not valid hex"):
        code.parse("0xzz")
    with pytest.raises(WatermarkError, match="message: empty"):
        code.parse("")


def test_binomial_p_value_and_threshold():
    assert wm.p_value(32, 32) == pytest.approx(2.0**-32)
    assert wm.p_value(0, 32) == pytest.approx(1.0)
    assert wm.p_value(30, 32) == pytest.approx((1 + 32 + 496) / 2**32)
    assert wm.threshold(32, 1e-6) == 30  # p(29) = 1.3e-6 > 1e-6 >= p(30) = 1.2e-7
    for n in (48, 64):  # against the exact tail sum
        tail = lambda k: sum(math.comb(n, j) for j in range(k, n + 1)) / 2**n  # noqa: E731
        t = wm.threshold(n, 1e-6)
        assert tail(t) <= 1e-6 < tail(t - 1)
    assert wm.threshold(8, 1e-6) == 9  # no 8-bit reading is that unlikely


def _rademacher_tail(z, expected, slack=0.0):
    """P(sum e_i |z_i| >= T - slack) by enumerating every sign pattern (the soft test's reference for small n)."""
    a = np.abs(np.clip(z, -wm.SOFT_CLIP, wm.SOFT_CLIP))
    t = float(((np.asarray(expected) * 2 - 1) * np.clip(z, -wm.SOFT_CLIP, wm.SOFT_CLIP)).sum())
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=len(z))))
    return float(((signs @ a) >= t - slack - 1e-12).mean())


def test_soft_p_value_bounds_the_exact_tail_and_equals_the_binomial_on_hard_logits():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(4, 13))
        z = rng.normal(0, 2, n) * rng.choice([1, 10], n)  # some beyond the clip
        expected = rng.integers(0, 2, n)
        exact, got = _rademacher_tail(z, expected), wm.soft_p_value(z, expected)
        assert exact <= got + 1e-12  # never claims more than it has ...
        assert (
            got <= _rademacher_tail(z, expected, slack=2 * n / wm.SOFT_STEPS) + 1e-12
        )  # ... and no more than the rounding
    # logits all of size 1 are the binomial count: the same p-value for any number of matches
    for n in (8, 32):
        expected = rng.integers(0, 2, n)
        for m in range(n + 1):
            z = np.where(np.arange(n) < m, expected * 2.0 - 1, 1 - expected * 2.0)
            assert wm.soft_p_value(z, expected) == pytest.approx(wm.p_value(m, n), rel=1e-9)
    # a wrong bit read with little confidence costs little; the binomial count loses a whole bit
    expected = rng.integers(0, 2, 32)
    z = (expected * 2.0 - 1) * 3.0
    z[:3] = -z[:3] / 30  # three wrong bits at |z| = 0.1
    assert wm.soft_p_value(z, expected) < 1e-8 < wm.p_value(29, 32)
    with pytest.raises(ValueError, match="3 logits for 4 expected bits"):
        wm.soft_p_value(np.zeros(3), np.zeros(4))


# ---- attacks -------------------------------------------------------------------------------------------


def test_attacks_shapes_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 1, 40, 48) * 2 - 1).requires_grad_(True)
    assert A.resize(x, 0.5).shape == (2, 1, 20, 24)
    assert A.crop(x, 0.25).shape == (2, 1, 30, 36)
    flat = torch.full((1, 3, 20, 20), 0.2)
    assert torch.allclose(A.blur(flat, 1.0), flat, atol=1e-6)  # blur keeps a flat image
    assert torch.allclose(A.rotate(flat, 0.0), flat, atol=1e-5)
    assert torch.allclose(A.brightness(torch.zeros(1, 1, 4, 4), 1.2), torch.full((1, 1, 4, 4), 0.2))
    # the real codec: a JPEG at quality 100 of a smooth image is close, at quality 10 far; straight-through gradient
    smooth = A.blur(torch.rand(1, 1, 64, 64) * 2 - 1, 3.0)
    assert (
        (A.jpeg(smooth, 100) - smooth).abs().mean()
        < 0.01
        < (A.jpeg(torch.rand(1, 1, 64, 64), 10) - torch.rand(1, 1, 64, 64)).abs().mean()
    )
    A.jpeg(x, 50).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    # the differentiable approximation is near the real codec, and has a gradient of its own
    real, approx = A.jpeg(smooth, 50), A.jpeg_diff(smooth, 50)
    assert (real - approx).abs().mean() < 0.02
    layer = A.AttackLayer(["jpeg", "blur", "noise", "crop"], combine=1.0)
    out, name = layer(x, g)
    assert "+" in name and torch.isfinite(out).all()
    assert torch.equal(out, A.quantise(out))  # rounded to 8 bits
    with pytest.raises(ValueError, match="unknown attack"):
        A.AttackLayer(["jpeg", "tilt"])


def test_reframe_puts_a_centred_crop_back_where_it_was():
    x = A.blur(torch.rand(2, 1, 96, 96) * 2 - 1, 3.0)  # smooth, so resampling twice changes little
    assert torch.equal(A.reframe(x, 0.0), x)
    for cut in (0.1, 0.25):
        back = A.resize_to(A.crop(x, cut), (96, 96))  # a centred crop, resized back
        y = A.reframe(back, cut)
        inner = round(96 * (1 - cut))
        a = (96 - inner) // 2
        assert y.shape == x.shape
        # outside the window: the window's edge pixels repeated; inside: the content of x where it was
        assert torch.equal(y[:, :, :a], y[:, :, a : a + 1].expand(-1, -1, a, 96))
        assert torch.equal(y[:, :, :, :a], y[:, :, :, a : a + 1].expand(-1, -1, 96, a))
        err = (
            (
                y[:, :, a + 3 : a + inner - 3, a + 3 : a + inner - 3]
                - x[:, :, a + 3 : a + inner - 3, a + 3 : a + inner - 3]
            )
            .abs()
            .mean()
        )
        assert err < 0.02 and err < 0.2 * (back - x).abs().mean(), (cut, float(err))


def test_crop_search_attack_is_a_crop_read_through_the_readers_hypothesis():
    x = A.blur(torch.rand(4, 1, 64, 64) * 2 - 1, 3.0)
    g = torch.Generator().manual_seed(0)
    mid = (slice(None), slice(None), slice(16, 48), slice(16, 48))
    for _ in range(6):
        # the hypothesis puts the content back: the middle matches x far better than the crop resized back
        # does without it (0.012 to 0.030 for the three cuts)
        y = A.crop_search(x, g, jitter=0.0)
        assert y.shape == x.shape and (y[mid] - x[mid]).abs().mean() < 0.004
        y = A.crop_search(x, g)  # cuts near a hypothesis, not on it
        assert y.shape == x.shape and 0.0005 < (y[mid] - x[mid]).abs().mean() < 0.012
    out, name = A.AttackLayer(["crop_search"])(x, g)
    assert name == "crop_search" and out.shape == x.shape


def test_best_reading_takes_a_crop_only_when_it_is_margin_times_more_confident(tiny_run, tmp_path):
    logits = np.array([[1.0, -1.0, 1.0, -1.0], [1.5, -1.5, -1.5, 1.5], [0.2, 0.2, 0.2, 0.2]])  # direct, crop, crop
    assert wm.best_reading(logits) == 1  # 1.5 > 1.1 x 1.0
    assert wm.best_reading(logits, margin=1.5) == 0 and wm.best_reading(logits, margin=1.49) == 1
    assert wm.best_reading(logits[:1]) == 0
    h = ganforge.load(tiny_run)
    assert h.crop_margin == wm.CROP_MARGIN == 1.1  # the default a model is trained with
    with pytest.raises(ganforge.errors.ConfigError, match="watermark.crop_margin=0.9: expected a ratio of at least 1"):
        ganforge.train(overrides=TINY + ["train.steps=1", "watermark.crop_margin=0.9"], runs_dir="/nonexistent")
    # a model trained with a margin reads with it: with an unreachable one, extract reports the direct reading
    never = ganforge.load(
        ganforge.train(overrides=TINY + ["train.steps=1", "watermark.crop_margin=1e9"], runs_dir=tmp_path)
    )
    assert never.crop_margin == 1e9
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert wm.extract(never, img)["bits"] == "".join("1" if v > 0 else "0" for v in wm.read_all(never, img)[0])


def test_normalise_sets_the_psnr():
    r = torch.randn(3, 1, 50, 50)
    x = torch.zeros(3, 1, 50, 50)
    assert psnr_of(x + normalise(r, target_rms(40.0)), x) == pytest.approx(40.0, abs=1e-3)


# ---- a trained run and the app -------------------------------------------------------------------------


def test_tiny_run_loads_as_a_watermark_handle(tiny_run):
    h = ganforge.load(tiny_run)
    assert isinstance(h, WatermarkHandle) and (h.bits, h.res) == (8, 16)
    imgs = torch.randint(0, 256, (2, 3, 37, 53), dtype=torch.uint8)
    out = h.embed(imgs, torch.tensor([1, 0, 1, 1, 0, 0, 1, 0]))
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    d = out.float() - imgs.float()
    assert (
        torch.equal(d[:, 0], d[:, 1]) or (out == 0).any() or (out == 255).any()
    )  # luma only: equal in R, G, B unless clipped
    assert h.logits(out).shape == (2, 8)


def test_handle_embed_equals_the_float_path_and_reads_large_images(tiny_run):
    from ganforge.imaging import to_uint8

    h = ganforge.load(tiny_run)
    x = torch.randint(0, 256, (2, 3, 40, 50), dtype=torch.uint8)
    bits = torch.tensor([1.0, 0, 0, 1, 1, 0, 1, 0])
    a = h.embed(x, bits)
    b = to_uint8(h.module.embed(x.float() / 127.5 - 1, bits.expand(2, -1)))
    assert (a.int() - b.int()).abs().max() <= 1 and (a != b).float().mean() < 1e-3  # rounding ties only
    # a large image is box-averaged in bands before the final resize: close to the direct reading
    big = A.blur(torch.rand(1, 3, 210, 260) * 2 - 1, 4.0)
    big_u8 = ((big + 1) * 127.5).round().to(torch.uint8)
    direct = A.resize_to(A.to_luma(big_u8.float() / 127.5 - 1), (h.res, h.res))
    assert (h._luma_small(big_u8) - direct).abs().max() < 0.03
    assert h.embed(big_u8, bits).shape == big_u8.shape


@pytest.mark.parametrize("shape", [(20, 31), (45, 60, 3), (33, 40, 4), (24, 24, 2)])
def test_embed_keeps_shape_mode_and_alpha(tiny_run, shape):
    rng = np.random.default_rng(1)
    img = rng.integers(30, 220, shape, dtype=np.uint8)
    out = wm.embed(tiny_run, img, "a")
    assert out.shape == img.shape and out.dtype == np.uint8
    if len(shape) == 3 and shape[2] in (2, 4):
        assert np.array_equal(out[..., -1], img[..., -1])  # alpha untouched
    colour = slice(None) if len(shape) == 2 or shape[2] == 3 else slice(0, shape[2] - 1)
    diff = (out.astype(float) - img.astype(float))[..., colour]
    psnr = 10 * math.log10(255**2 / max((diff**2).mean(), 1e-9))
    assert abs(psnr - 40.5) < 2.0  # the tiny run's watermark.psnr (the default), up to rounding
    res = wm.extract(tiny_run, out)
    assert len(res["bits"]) == 8 and set(res["bits"]) <= {"0", "1"}
    det = wm.detect(tiny_run, out, "a")
    assert det["n_bits"] == 8 and 0 <= det["matches"] <= 8 and det["detected"] is False  # 8 bits cannot reach 1e-6


def test_strength_scales_the_residual(tiny_run):
    img = np.full((64, 64), 128, np.uint8)
    d1 = wm.embed(tiny_run, img, "a").astype(float) - 128
    d3 = wm.embed(tiny_run, img, "a", strength=3.0).astype(float) - 128
    assert np.sqrt((d3**2).mean()) == pytest.approx(3 * np.sqrt((d1**2).mean()), rel=0.1)


def test_bad_inputs_get_one_line_errors(tiny_run, run32, tmp_path):
    with pytest.raises(
        WatermarkError, match=r"image the ndarray is 12x40: too small to carry a watermark; images need at least 16"
    ):
        wm.embed(tiny_run, np.zeros((40, 12), np.uint8), "a")
    with pytest.raises(WatermarkError, match="capacity of 2 bytes"):
        wm.embed(run32, np.zeros((40, 40), np.uint8), "toolong")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageError, match="cannot read image .*bad.png"):
        wm.extract(tiny_run, bad)
    with pytest.raises(WatermarkError, match=r"strength 0: expected a number in \(0, 10\]"):
        wm.embed(tiny_run, np.zeros((40, 40), np.uint8), "a", strength=0)
    with pytest.raises(WatermarkError, match="^test 'z': expected one of combined, soft, binomial$"):
        wm.detect(tiny_run, np.zeros((40, 40), np.uint8), "a", test="z")
    with pytest.raises(WatermarkError, match="fpr 2: expected a false-positive rate"):
        wm.detect(tiny_run, np.zeros((40, 40), np.uint8), "a", fpr=2)
    other = Path(__file__).parent / "fixtures" / "v0-inpaint-run"  # a run of another task (only read)
    with pytest.raises(WatermarkError, match="trained task 'inpaint', which is not a watermark"):
        wm.load_watermarker(other)
    with pytest.raises(RunError):
        wm.load_watermarker(tmp_path / "nothing")


def test_mark_batch_is_what_sampling_applies(tiny_run):
    imgs = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    mark = wm.marker(tiny_run, "a")
    out = mark(imgs)
    assert out.shape == imgs.shape and out.dtype == torch.uint8 and not torch.equal(out, imgs)
    assert torch.equal(out, wm.mark_batch(tiny_run, imgs, "a"))
    assert torch.equal(out[1:2], wm.mark_batch(tiny_run, imgs[1:2], "a"))  # each image marked on its own
    with pytest.raises(WatermarkError, match="too small"):
        wm.mark_batch(tiny_run, torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "a")


# ---- the command line ---------------------------------------------------------------------------------


def cli(*argv):
    from ganforge.cli import main

    return main([str(a) for a in argv])


def test_cli_embed_detect_extract_single_and_folder(run32, tmp_path, capsys):
    rng = np.random.default_rng(2)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).save(src / "b.png")
    assert (
        cli(
            "watermark",
            "embed",
            "--model",
            run32,
            "--image",
            src / "a.png",
            "--message",
            "0x6766",
            "--out",
            tmp_path / "o.png",
        )
        == 0
    )
    marked = np.asarray(Image.open(tmp_path / "o.png"))
    assert marked.shape == (40, 50, 3)
    capsys.readouterr()
    assert cli("watermark", "extract", "--model", run32, "--image", tmp_path / "o.png", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bits"] == wm.extract(run32, marked)["bits"] and len(info["bits"]) == 32
    assert {"hex", "text", "corrected", "ok"} <= set(info)
    assert cli("watermark", "detect", "--model", run32, "--image", tmp_path / "o.png", "--key", "gf", "--json") == 0
    det = json.loads(capsys.readouterr().out)
    ref = wm.detect(run32, marked, "gf")
    assert (
        det["matches"] == ref["matches"] and det["p_value"] == pytest.approx(ref["p_value"]) and det["threshold"] == 30
    )
    key = wm.message_code(32).encode("gf")
    readings = wm.read_all(run32, marked)  # [4, 32]
    soft = min(wm.soft_p_value(z, key) for z in readings)
    count = int(((readings > 0) == key).sum(1).max())
    assert det["test"] == "combined"  # the best of 4 readings x 2 statistics, Bonferroni
    assert ref["p_value"] == pytest.approx(min(1.0, 8 * min(soft, wm.p_value(count, 32))))
    assert wm.detect(run32, marked, "gf", test="soft")["p_value"] == pytest.approx(min(1.0, 4 * soft))
    assert (
        cli("watermark", "detect", "--model", run32, "--image", tmp_path / "o.png", "--key", "gf", "--test", "binomial")
        == 0
    )
    line = capsys.readouterr().out.strip()
    binom = wm.detect(run32, marked, "gf", test="binomial")
    assert binom["p_value"] == pytest.approx(min(1.0, 4 * wm.p_value(binom["matches"], 32)))
    assert line.endswith(
        f"{binom['matches']}/32 bits match the key, p-value {binom['p_value']:.3g} (binomial test: needs 30; FPR 1e-06)"
    )
    assert (
        cli("watermark", "embed", "--model", run32, "--image", src, "--message", "gf", "--out", tmp_path / "out") == 0
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    capsys.readouterr()
    assert cli("watermark", "detect", "--model", run32, "--image", tmp_path / "out", "--key", "gf", "--json") == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [Path(d["image"]).name for d in lines] == ["a.png", "b.png"] and all(len(d["bits"]) == 32 for d in lines)
    assert (
        cli(
            "watermark",
            "embed",
            "--model",
            run32,
            "--image",
            src / "a.png",
            "--message",
            "abc",
            "--out",
            tmp_path / "x.png",
        )
        == 2
    )
    assert "error: message 'abc' is 3 bytes, more than this model's capacity" in capsys.readouterr().err


def test_sample_watermark_marks_every_image(tiny_run, tmp_path, capsys):
    import shutil

    gan = tmp_path / "gan"
    shutil.copytree(Path(__file__).parent / "fixtures" / "v0-gan-run", gan)  # a 28x28 MNIST GAN run
    assert cli("sample", gan, "--n", 4, "--out", tmp_path / "plain.npz") == 0
    assert (
        cli("sample", gan, "--n", 4, "--out", tmp_path / "marked.npz", "--watermark", tiny_run, "--message", "a") == 0
    )
    plain = torch.from_numpy(np.load(tmp_path / "plain.npz")["arr_0"]).permute(0, 3, 1, 2)
    marked = torch.from_numpy(np.load(tmp_path / "marked.npz")["arr_0"]).permute(0, 3, 1, 2)
    assert torch.equal(marked, wm.mark_batch(tiny_run, plain, "a"))
    capsys.readouterr()
    assert cli("sample", gan, "--n", 4, "--out", tmp_path / "x.png", "--message", "a") == 2
    assert "error: --message applies with --watermark WM_RUN" in capsys.readouterr().err
    assert cli("sample", gan, "--n", 4, "--out", tmp_path / "x.png", "--watermark", gan) == 2
    assert "error: '" in capsys.readouterr().err


def test_learning_rates_decay_linearly_over_the_steps_given(tmp_path):
    from ganforge import runs

    run = ganforge.train(
        overrides=TINY
        + [
            "train.steps=3",
            "watermark.lr_decay_start=1",
            "watermark.lr_decay_steps=4",
            "g_optim.lr=0.004",
            "d_optim.lr=0.002",
        ],
        runs_dir=tmp_path,
    )
    state = runs.load_state(
        runs.find_checkpoint(run, "last")
    )  # the rates set for the last step (step 2): 3/4 of the base
    assert math.isclose(state["opt_g"]["param_groups"][0]["lr"], 0.003)
    assert math.isclose(state["opt_d"]["param_groups"][0]["lr"], 0.0015)


def test_dead_leaves_script_writes_the_same_varied_images_for_a_seed(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "make_dead_leaves.py"
    for out in ("a", "b"):
        subprocess.run(
            [sys.executable, str(script), str(tmp_path / out), "--count", "3", "--size", "48"],
            check=True,
            capture_output=True,
        )
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["leaves_00000.png", "leaves_00001.png", "leaves_00002.png"]
    imgs = [np.asarray(Image.open(tmp_path / "a" / n)) for n in names]
    for n, a in zip(names, imgs):
        assert a.shape == (48, 48, 3) and a.dtype == np.uint8
        assert np.array_equal(a, np.asarray(Image.open(tmp_path / "b" / n)))  # seeded: the same files again
        assert a.std() > 10  # discs of different shades, not a flat image
    assert not np.array_equal(imgs[0], imgs[1])
    bad = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "c"), "--size", "8"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "expected --count >= 1 and --size >= 16" in bad.stderr
