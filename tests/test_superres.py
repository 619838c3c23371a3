"""Super-resolution: networks (every scale, both bodies), tiling equal to untiled inference, degradations,
the task (two stages, the pixel checkpoint, config errors, VGG weights), the upscale app and CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ganforge
from ganforge import runs
from ganforge.cli import main as ganforge_main
from ganforge.errors import ConfigError, RunError
from ganforge.tasks import resolve
from ganforge.tasks.superres.app import UpscaleError, compare_picture, upscale, upscale_detailed, upscale_folder
from ganforge.tasks.superres.data import degrade, downsample, practical
from ganforge.tasks.superres.networks import SRGenerator, UNetDiscriminator, d_levels, tiled_upscale

BASE = [
    "task=superres",
    "data.limit=64",
    "train.batch_size=16",
    "train.progress=false",
    "train.tensorboard=false",
    "train.log_every=1",
    "train.sample_every=50",
    "train.checkpoint_every=50",
    "train.sample_count=8",
    "train.minutes=null",
    "superres.width=8",
    "superres.blocks=1",
    "superres.d_width=4",
]


def randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values of a usual size (the ICNR start is too smooth to test tiling)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / max(1, p[0].numel()) ** 0.5))
    return net.eval()


# ---- networks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("body", ["resblock", "rrdb"])
def test_generator_shapes_for_every_scale_and_any_channels(scale, body):
    for c in (1, 3, 4):
        g = SRGenerator(c, scale, width=8, blocks=1, body=body, growth=4)
        x = torch.randn(2, c, 7, 9, requires_grad=True)
        y = g(x)
        assert y.shape == (2, c, 7 * scale, 9 * scale)
        y.mean().backward()
        assert x.grad is not None and all(p.grad is not None for p in g.parameters())


def test_generator_starts_near_bicubic_and_refuses_other_scales():
    g = SRGenerator(1, 4, width=8, blocks=2)
    x = torch.rand(1, 1, 8, 8) * 2 - 1
    bic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    assert (g(x) - bic).abs().mean() < 0.1 * bic.abs().mean()  # ICNR-initialised correction is small
    with pytest.raises(ganforge.GanforgeError, match="scale 3: the generator upscales by one of 2, 4, 8"):
        SRGenerator(1, 3)


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (24, 40), (27, 33)])
def test_unet_discriminator_gives_a_logit_per_pixel(size):
    d = UNetDiscriminator(3, 4, d_levels(*size))
    logits, feats = d(torch.randn(2, 3, *size), features=True)
    assert logits.shape == (2, 1, *size)
    assert feats[-1].shape == (2, 4, *size) and len(feats) == d.levels + 1
    assert d_levels(28, 28) == 2 and d_levels(96, 96) == 3


@pytest.mark.parametrize("scale,body", [(2, "resblock"), (4, "resblock"), (4, "rrdb")])
def test_tiling_equals_untiled_inference_and_is_seamless(scale, body):
    g = randomise(SRGenerator(3, scale, width=8, blocks=2, body=body, growth=4))
    x = torch.rand(1, 3, 45, 37) * 2 - 1
    with torch.no_grad():
        whole = g(x)
    tiled = tiled_upscale(g, x, scale, tile=16, overlap=g.receptive_radius)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-5  # everywhere: in the middle, at the seams and at the borders
    # the seams are where tiles meet: rows/columns 16, 32 (input pixels) times the scale
    for seam in (16 * scale, 32 * scale):
        assert (tiled[..., seam - 1 : seam + 1, :] - whole[..., seam - 1 : seam + 1, :]).abs().max() < 1e-5
        assert (tiled[..., seam - 1 : seam + 1] - whole[..., seam - 1 : seam + 1]).abs().max() < 1e-5
    # without enough context the seams show: the overlap is what makes tiles exact
    short = tiled_upscale(g, x, scale, tile=16, overlap=1)
    assert (short - whole).abs().max() > 1e-3


# ---- degradations ------------------------------------------------------------------------------


def test_area_and_bicubic_downsampling():
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    a = degrade(x, 4, "area")
    assert a.shape == (2, 3, 4, 6)
    assert torch.allclose(a[0, 0, 1, 2], x[0, 0, 4:8, 8:12].mean())
    # antialiased bicubic, as PIL reduces an image with BICUBIC
    img = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)
    pil = np.asarray(Image.fromarray(img).resize((8, 8), Image.BICUBIC)).astype(np.float32)
    ours = (degrade(torch.from_numpy(img)[None, None].float() / 127.5 - 1, 4, "bicubic")[0, 0] + 1) * 127.5
    assert np.abs(ours.numpy() - pil).max() < 3.0
    with pytest.raises(ValueError, match="not a multiple of the scale 4"):
        downsample(torch.zeros(1, 1, 10, 12), 4)


def test_practical_pipeline_is_seeded_and_varies_its_order():
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    a = practical(x, 4, torch.Generator().manual_seed(1))
    b = practical(x, 4, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 8, 8) and torch.equal(a, b) and a.abs().max() <= 1.0
    c = practical(x, 4, torch.Generator().manual_seed(2))
    assert not torch.equal(a, c)
    clean = degrade(x, 4, "bicubic")
    assert (a - clean).abs().mean() > 0.01  # blur, noise or JPEG did something
    orders = {tuple(torch.randperm(4, generator=torch.Generator().manual_seed(s)).tolist()) for s in range(10)}
    assert len(orders) > 3  # the first draw of the pipeline is its order, which changes with the seed


# ---- the task ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory):
    """x4 on MNIST digits, 2 pixel-loss steps then 2 adversarial ones."""
    return ganforge.train(
        overrides=BASE + ["train.steps=4", "superres.pixel_steps=2"], runs_dir=tmp_path_factory.mktemp("grey")
    )


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    """x2 on colour 16x16 crops of 32x32 images, the practical degradations and the RRDB body."""
    return ganforge.train(
        overrides=BASE
        + [
            "train.steps=2",
            "superres.pixel_steps=1",
            "superres.scale=2",
            "data.channels=3",
            "data.size=32",
            "superres.crop=16",
            "superres.degrade=practical",
            "superres.arch=rrdb",
            "superres.growth=4",
        ],
        runs_dir=tmp_path_factory.mktemp("rgb"),
    )


def test_two_stages_and_the_pixel_checkpoint(grey_run):
    recs = runs.read_metrics(grey_run)
    steps = [r for r in recs if "l1" in r]
    assert [("loss_d" in r) for r in steps] == [False, False, True, True]  # L1 alone, then adversarial
    pix = grey_run / "checkpoints" / "pixel"
    assert runs.read_json(pix / "meta.json")["step"] == 2
    h_pix, h_gan = ganforge.load(pix), ganforge.load(grey_run)
    assert h_pix.step == 2 and h_gan.step == 4 and h_gan.scale == 4 and h_gan.task == "superres"
    lr = torch.randint(0, 256, (3, 1, 7, 9), dtype=torch.uint8)
    out = h_gan.upscale(lr)
    assert out.shape == (3, 1, 28, 36) and out.dtype == torch.uint8
    assert not torch.equal(out, h_pix.upscale(lr))
    assert "val_psnr" in recs[-1] or any("val_psnr" in r for r in recs)
    assert (grey_run / "samples" / "latest.png").is_file()


def test_second_stage_as_its_own_run_starts_from_the_pixel_run(tmp_path):
    pixel = ganforge.train(overrides=BASE + ["train.steps=2", "superres.adv_weight=0"], runs_dir=tmp_path / "a")
    ck = runs.open_checkpoint(pixel)
    assert not ck.has("discriminator")  # a pixel-loss model has no discriminator
    gan = ganforge.train(
        overrides=BASE + ["train.steps=1", "superres.pixel_steps=0"], runs_dir=tmp_path / "b", init_from=pixel
    )
    record = runs.read_json(gan / "transfer.json")["init_from"]
    assert record["networks"]["generator"]["copied"] == record["networks"]["generator"]["tensors"]
    assert record["networks"]["discriminator"]["copied"] == 0
    assert any("loss_d" in r for r in runs.read_metrics(gan))


def test_colour_crops_practical_rrdb_run_loads(rgb_run):
    h = ganforge.load(rgb_run)
    assert h.channels == 3 and h.scale == 2 and h.hr_shape == (16, 16) and h.config.superres.arch == "rrdb"
    assert h.export_inputs(2)[0].shape == (2, 3, 8, 8)
    out = h.upscale(torch.randint(0, 256, (1, 3, 20, 13), dtype=torch.uint8), tile=8)
    assert out.shape == (1, 3, 40, 26)


@pytest.mark.parametrize(
    "override,message",
    [
        (["superres.crop=30"], "superres.crop=30: crops must be a multiple of superres.scale=4 (e.g. 28 or 32)"),
        (["superres.scale=3"], "superres.scale: 3 is not allowed; choose one of: 2, 4, 8"),
        (["superres.degrade=jpeg"], "superres.degrade: 'jpeg' is not allowed; choose one of: bicubic, area, practical"),
        (
            ["superres.feature_net=vgg"],
            "superres.feature_net=vgg needs VGG19 weights: superres.perceptual_weights=PATH",
        ),
        (["superres.perceptual_weights=w.pth"], "superres.perceptual_weights is used by superres.feature_net=vgg only"),
        (["superres.arch=edsr"], "superres.arch: 'edsr' is not allowed; choose one of: rrdb, srresnet"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        resolve(None, BASE + override)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_sizes_that_do_not_fit_the_scale_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"superres.crop=32 is larger than the images \(28x28\)"):
        ganforge.train(overrides=BASE + ["superres.crop=32", "train.steps=1"], runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"superres.scale=8: the 28x28 images are not a multiple of the scale"):
        ganforge.train(overrides=BASE + ["superres.scale=8", "train.steps=1"], runs_dir=tmp_path)


def test_user_vgg_weights_train_and_bad_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    from ganforge.tasks.superres.losses import VGGFeatures, vgg19_features

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vgg19_features().state_dict().items()}  # torchvision's vgg19().features[:35]
    g = torch.Generator().manual_seed(0)
    w = tmp_path / "vgg19.safetensors"
    save_file({f"features.{k}": torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}, str(w))
    vgg = [
        "superres.feature_net=vgg",
        f"superres.perceptual_weights={w}",
        "train.steps=2",
        "superres.pixel_steps=1",
        "data.limit=16",
    ]
    run = ganforge.train(overrides=BASE + vgg, runs_dir=tmp_path / "runs")
    assert "feat" in [r for r in runs.read_metrics(run) if "l1" in r][-1]
    bad = tmp_path / "notweights.pth"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(ConfigError, match=r"^superres.perceptual_weights: cannot read '.*notweights.pth' as weights"):
        VGGFeatures(str(bad))

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil()}, evil)
    with pytest.raises(ConfigError, match=r"^superres.perceptual_weights: cannot read '.*evil.pth' as weights"):
        VGGFeatures(str(evil))  # weights_only=True refuses the pickle instead of running it
    small = tmp_path / "small.safetensors"
    save_file({"features.0.weight": torch.zeros(3, 3, 3, 3)}, str(small))
    with pytest.raises(
        ConfigError, match=r"^superres.perceptual_weights: '.*small.safetensors' does not fit torchvision's vgg19"
    ):
        VGGFeatures(str(small))
    with pytest.raises(ConfigError, match=r"^superres.perceptual_weights: file '.*nowhere.pth' does not exist"):
        VGGFeatures(str(tmp_path / "nowhere.pth"))


# ---- the app -------------------------------------------------------------------------------------


def photo(mode: str, size=(13, 11), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    c = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    a = (rng.random((size[1], size[0], c)) * 255).astype(np.uint8)
    return Image.fromarray(a[..., 0] if c == 1 else a, mode)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_upscale_keeps_the_mode_and_upscales_alpha_bicubically(mode, grey_run, rgb_run):
    run = grey_run if mode in ("L", "LA") else rgb_run
    im = photo(mode)
    out = upscale(run, im)
    s = ganforge.load(run).scale
    assert out.mode == mode and out.size == (13 * s, 11 * s)
    if mode in ("LA", "RGBA"):
        alpha = np.asarray(im)[..., -1]
        want = np.asarray(Image.fromarray(alpha, "L").resize(out.size, Image.BICUBIC))
        assert np.array_equal(np.asarray(out)[..., -1], want)
    h = ganforge.load(run)
    base = np.asarray(im.convert("L" if mode in ("L", "LA") else "RGB"))
    base = base[..., None] if base.ndim == 2 else base
    net = h.upscale(torch.from_numpy(base.copy()).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    got = np.asarray(out)[..., : base.shape[2]] if out.mode in ("LA", "RGBA") else np.asarray(out).reshape(net.shape)
    assert np.array_equal(got.reshape(net.shape), net)  # the pixels are the network's, untouched


def test_grey_image_on_a_colour_model_and_colour_on_a_grey_one(grey_run, rgb_run):
    out = upscale(rgb_run, photo("L"))
    assert out.mode == "L" and out.size == (26, 22)
    grey_as_rgb = photo("L").convert("RGB")
    assert upscale(grey_run, grey_as_rgb).mode == "RGB"  # equal channels: no colour lost
    with pytest.raises(UpscaleError) as e:
        upscale(grey_run, photo("RGB"))
    assert str(e.value) == (
        "the model upscales 1-channel (grayscale) images but the image the Image is a colour (RGB) "
        "image; convert it to grayscale first (PIL: image.convert('L')) or use a model trained on "
        "colour images (data.channels=3, preset photo-sr)"
    )


def test_bad_inputs_are_one_line_errors(grey_run, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(UpscaleError, match=r"^cannot read image '.*broken.png': "):
        upscale(grey_run, broken)
    with pytest.raises(UpscaleError, match=r"^image file '.*missing.png' does not exist$"):
        upscale(grey_run, tmp_path / "missing.png")
    radius = ganforge.load(grey_run).receptive_radius
    with pytest.raises(UpscaleError) as e:
        upscale(grey_run, photo("L"), tile=4)
    assert str(e.value) == (
        f"tile 4: tiles must be at least 8 input pixels a side (or 0 for no tiling); each tile also "
        f"reads {radius} pixels of context around it, so tiles of 256 or more waste little"
    )
    with pytest.raises(UpscaleError, match=r"^overlap -1: expected a whole number of input pixels >= 0"):
        upscale(grey_run, photo("L"), overlap=-1)
    with pytest.raises(UpscaleError, match=r"^the original the Image is 10x10, but the upscaled image is 52x44"):
        upscale(grey_run, photo("L"), compare=tmp_path / "c.png", original=photo("L", (10, 10)))


def test_a_run_of_another_task_is_refused(tmp_path):
    inpaint_run = Path(__file__).parent / "fixtures" / "v0-inpaint-run"  # a completion network's run folder
    with pytest.raises(UpscaleError, match=r"trained task 'inpaint', which does not upscale images"):
        upscale(inpaint_run, photo("L"))
    with pytest.raises(RunError):
        upscale(tmp_path / "nothing-here", photo("L"))


def test_tiled_upscale_of_an_image_equals_whole(grey_run):
    im = photo("L", (40, 33), seed=3)
    whole = upscale_detailed(grey_run, im, tile=0)
    tiled = upscale_detailed(grey_run, im, tile=16)
    assert whole.tiles == 1 and tiled.tiles == 9
    diff = np.abs(np.asarray(whole.image).astype(int) - np.asarray(tiled.image).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # equal up to a rounding step on a rare pixel


def test_compare_picture_and_folder_mode(grey_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    photo("L", (9, 7)).save(src / "a.png")
    photo("L", (8, 8), seed=1).save(src / "b.jpg")
    (src / "notes.txt").write_text("not an image")
    res = upscale_folder(grey_run, src, tmp_path / "out", tmp_path / "cmp")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert Image.open(tmp_path / "out" / "a.png").size == (36, 28) and [r.scale for r in res] == [4, 4]
    cmp = Image.open(tmp_path / "cmp" / "a.png")
    k = -(-128 // 36)  # small outputs are enlarged to at least 128 px
    assert cmp.size == (3 * 36 * k + 2 * 4, 28 * k + 14)  # input | bicubic | ganforge
    pic = compare_picture(photo("RGB", (4, 4)), photo("RGB", (16, 16)), 4, original=photo("RGB", (16, 16), seed=2))
    assert pic.size == (4 * 16 * 8 + 3 * 4, 16 * 8 + 14)  # with the original: four panels
    (src / "a.jpg").write_bytes((src / "b.jpg").read_bytes())
    with pytest.raises(UpscaleError, match=r"images with the same name in '.*' \(their outputs would collide\): a$"):
        upscale_folder(grey_run, src, tmp_path / "out2")


def test_cli_upscale_and_its_errors(grey_run, tmp_path, capsys):
    img = tmp_path / "digit.png"
    photo("L", (7, 7)).save(img)
    out = tmp_path / "big.png"
    argv = ["upscale", "--model", str(grey_run), "--image", str(img), "--out", str(out)]
    argv += ["--compare", str(tmp_path / "cmp.png"), "--original", str(tmp_path / "orig.png")]
    assert ganforge_main(argv) == 2
    assert "error: image file" in capsys.readouterr().err  # the original does not exist yet
    photo("L", (28, 28)).save(tmp_path / "orig.png")
    assert ganforge_main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == str(out)
    assert Image.open(out).size == (28, 28) and Image.open(tmp_path / "cmp.png").size[0] == 4 * 28 * 5 + 3 * 4
    assert (
        ganforge_main(["upscale", "--model", str(grey_run), "--image", str(img), "--out", str(out), "--tile", "3"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: tile 3: tiles must be at least 8 input pixels")
    pix = grey_run / "checkpoints" / "pixel"
    assert ganforge_main(["upscale", "--model", str(pix), "--image", str(img), "--out", str(tmp_path / "p.png")]) == 0


def test_mnist_feature_network_is_fully_convolutional_and_frozen():
    from ganforge.tasks.superres.losses import MnistFeatures, feature_distance

    net = MnistFeatures()
    grey = torch.rand(2, 1, 28, 28) * 2 - 1
    feats = net(grey)
    assert [f.shape[-1] for f in feats] == [28, 14, 7] and not any(p.requires_grad for p in net.parameters())
    assert [f.shape[-1] for f in net(torch.rand(1, 3, 40, 40))] == [40, 20, 10]  # colour is taken to luma
    assert float(feature_distance(feats, net(grey))) == 0.0
    assert float(feature_distance(feats, net(-grey))) > 0.0
