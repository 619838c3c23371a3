"""The ``translate`` task: networks, paired/unpaired/derived data, pix2pix and CycleGAN training, exact
resume, the handle, the app, the CLI, and one clear line for each bad input."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ganforge
from ganforge import runs
from ganforge.cli import main as ganforge_main
from ganforge.config import DataConfig
from ganforge.data import load_dataset
from ganforge.errors import ConfigError, DataError, RunError
from ganforge.imaging import compare_layout
from ganforge.tasks import resolve
from ganforge.tasks.translate.app import TranslateError, compare_panels, translate, translate_detailed, translate_folder
from ganforge.tasks.translate.data import derive_pairs, load_paired, load_translation, load_unpaired
from ganforge.tasks.translate.handle import _tiled
from ganforge.tasks.translate.networks import (
    PatchDiscriminator,
    ResnetGenerator,
    TranslateSizeError,
    Translator,
    UNetGenerator,
    build_unet,
    unet_levels,
)
from ganforge.tasks.translate.task import load_translator
from ganforge.tasks.translate.trainer import HistoryPool, TranslateTrainer

TINY = [
    "task=translate",
    "train.batch_size=4",
    "train.progress=false",
    "train.tensorboard=false",
    "train.log_every=1",
    "train.sample_every=2",
    "train.checkpoint_every=2",
    "train.sample_count=8",
    "train.minutes=null",
    "translate.width=4",
    "translate.d_width=4",
    "translate.blocks=1",
]


def write(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def rng_images(n, h, w, c, seed):
    g = np.random.default_rng(seed)
    shape = (n, h, w) if c == 1 else (n, h, w, c)
    return g.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """paired/ (grey A, colour B, 12 pairs of 16x16, A/x.png with B/x.jpg-free names), unpaired/ (10 A, 7 B)."""
    root = tmp_path_factory.mktemp("tr")
    a, b = rng_images(12, 16, 16, 1, 0), rng_images(12, 16, 16, 3, 1)
    for i in range(12):
        write(root / "paired" / "A" / f"{i:02d}.png", a[i])
        write(root / "paired" / "B" / f"{i:02d}.png", b[i])
    ua, ub = rng_images(10, 16, 16, 3, 2), rng_images(7, 16, 16, 3, 3)
    for i in range(10):
        write(root / "unpaired" / "A" / f"a{i}.png", ua[i])
    for i in range(7):
        write(root / "unpaired" / "B" / f"b{i}.png", ub[i])
    return root, a, b


@pytest.fixture(scope="module")
def p2p_run(folders, tmp_path_factory):
    root, _, _ = folders
    return ganforge.train(
        overrides=TINY + ["data.dataset=paired", f"data.root={root / 'paired'}", "train.steps=2"],
        runs_dir=tmp_path_factory.mktemp("runs"),
    )


@pytest.fixture(scope="module")
def cycle_run(folders, tmp_path_factory):
    root, _, _ = folders
    return ganforge.train(
        overrides=TINY
        + ["translate.method=cyclegan", "data.dataset=unpaired", f"data.root={root / 'unpaired'}", "train.steps=2"],
        runs_dir=tmp_path_factory.mktemp("runs"),
    )


# ---- networks ----------------------------------------------------------------------------------


def test_generators_map_channels_and_keep_size():
    x = torch.randn(2, 1, 32, 48)
    u = UNetGenerator(1, 3, unet_levels(32, 32), width=4)
    assert u.levels == 3 and u.multiple == 8
    assert tuple(u(x).shape) == (2, 3, 32, 48) and u(x).abs().max() <= 1
    r = ResnetGenerator(3, 1, width=4, blocks=1)
    assert tuple(r(torch.randn(2, 3, 20, 28)).shape) == (2, 1, 20, 28)
    assert unet_levels(28, 28) == 2 and unet_levels(64, 64) == 4 and unet_levels(256, 256) == 5
    d = PatchDiscriminator(4, (64, 64), width=4)
    assert tuple(d(torch.randn(2, 4, 64, 64)).shape) == (2, 1, 8, 8)
    sn = PatchDiscriminator(1, (28, 28), width=4, norm="spectral")
    assert tuple(sn(torch.randn(2, 1, 28, 28)).shape) == (2, 1, 7, 7)
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in sn.modules())
    with pytest.raises(TranslateSizeError, match="multiples of 8; got 30x48"):
        u(torch.randn(1, 1, 30, 48))
    with pytest.raises(TranslateSizeError, match="the U-Net cannot be built for 12x12"):
        build_unet(1, 1, (12, 12))


class _Halve(Translator):
    """A per-pixel 'network' (out = x / 2): tiles must blend back to exactly the whole-image result."""

    in_channels = out_channels = 1
    multiple = 4

    def raw(self, x):
        return x * 0.5


def test_tiles_blend_back_to_the_whole_image_result():
    x = torch.rand(1, 1, 70, 45) * 2 - 1
    whole = _tiled(_Halve(), x, 512, 8)
    tiled = _tiled(_Halve(), x, 16, 4)
    assert tiled.shape == x.shape
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(whole, x * 0.5)


def test_history_pool_returns_new_or_stored_images():
    pool = HistoryPool(3, seed=0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: images pass through
    seen = set()
    for k in range(20):
        new = torch.full((2, 1, 1, 1), 10.0 + k)
        before = {float(t) for t in pool.images}
        out = pool.query(new)
        for v in out.flatten().tolist():
            assert v == 10.0 + k or v in before
            seen.add(v == 10.0 + k)
        assert len(pool.images) == 3
    assert seen == {True, False}  # both happen
    assert torch.equal(HistoryPool(0, 0).query(first), first)


# ---- data --------------------------------------------------------------------------------------


def test_paired_folders_grey_a_colour_b_in_file_order(folders):
    root, a, b = folders
    d = load_paired(DataConfig(dataset="paired", root=str(root / "paired")))
    assert d.paired and d.a.shape == (12, 1, 16, 16) and d.b.shape == (12, 3, 16, 16)
    assert np.array_equal(d.a[:, 0].numpy(), a) and np.array_equal(d.b.permute(0, 2, 3, 1).numpy(), b)
    d = load_paired(DataConfig(dataset="paired", root=str(root / "paired"), size=[8, 8], channels=3, limit=5))
    assert d.a.shape == (5, 3, 8, 8) and d.b.shape == (5, 3, 8, 8)


def test_side_by_side_images_split_into_halves(tmp_path):
    ab = rng_images(3, 8, 20, 3, 5)
    for i, x in enumerate(ab):
        write(tmp_path / f"{i}.png", x)
    d = load_paired(DataConfig(dataset="paired", root=str(tmp_path)))
    assert np.array_equal(d.a.permute(0, 2, 3, 1).numpy(), ab[:, :, :10])
    assert np.array_equal(d.b.permute(0, 2, 3, 1).numpy(), ab[:, :, 10:])


def test_unpaired_folders_any_counts(folders):
    root, _, _ = folders
    d = load_unpaired(DataConfig(dataset="unpaired", root=str(root / "unpaired")))
    assert not d.paired and d.a.shape == (10, 3, 16, 16) and d.b.shape == (7, 3, 16, 16)


def test_derived_pairs():
    data = load_dataset(DataConfig(limit=8))
    inv = derive_pairs(data, "invert")
    assert torch.equal(inv.b, 255 - inv.a) and torch.equal(inv.a, data.images)
    edges = load_translation(DataConfig(limit=8), "edges")
    assert edges.paired and torch.equal(edges.b, data.images) and edges.a.shape == data.images.shape
    assert int(edges.a.amax()) == 255 and not torch.equal(edges.a, edges.b)
    with pytest.raises(DataError, match="translate.derive=grey makes grey -> colour pairs and needs colour images"):
        derive_pairs(data, "grey")


def test_bad_data_each_get_one_line(tmp_path, folders):
    root, a, b = folders
    p = tmp_path / "p"
    write(p / "A" / "x.png", a[0])
    write(p / "A" / "y.png", a[1])
    write(p / "B" / "x.png", b[0])
    with pytest.raises(
        DataError, match=r"^missing pair: 1 image\(s\) of '.*A' have no partner in '.*B' \(e.g. y.png\)"
    ):
        load_paired(DataConfig(dataset="paired", root=str(p)))
    write(p / "B" / "y.png", rng_images(1, 12, 16, 3, 0)[0])
    with pytest.raises(
        DataError, match=r"^mismatched pair: '.*y.png' is 16x16 but '.*y.png' is 16x12 \(width x height\)"
    ):
        load_paired(DataConfig(dataset="paired", root=str(p)))
    u = tmp_path / "u"
    write(u / "A" / "x.png", a[0])
    (u / "B").mkdir()
    with pytest.raises(DataError, match=r"^domain B folder '.*B' has no images"):
        load_unpaired(DataConfig(dataset="unpaired", root=str(u)))
    shutil.rmtree(u / "B")
    with pytest.raises(DataError, match="has a 'A/' folder but no 'B/' folder"):
        load_unpaired(DataConfig(dataset="unpaired", root=str(u)))
    odd = tmp_path / "odd"
    write(odd / "z.png", rng_images(1, 8, 9, 1, 0)[0])
    with pytest.raises(DataError, match="is 9 pixels wide, an odd width"):
        load_paired(DataConfig(dataset="paired", root=str(odd)))
    with pytest.raises(DataError, match="data.dataset=paired holds two image domains"):
        ganforge.train(overrides=["data.dataset=paired", f"data.root={p}", "train.steps=1"], runs_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="translate.method=pix2pix learns from pairs but data.dataset=unpaired"):
        resolve(None, ["task=translate", "data.dataset=unpaired", f"data.root={root / 'unpaired'}"])


# ---- training ----------------------------------------------------------------------------------


def test_crops_and_flips_are_identical_within_a_pair():
    cfg = resolve(
        None, TINY + ["translate.derive=invert", "data.limit=16", "translate.crop_size=16", "data.hflip=true"]
    )
    tr = TranslateTrainer(cfg, dry_run=True)
    for _ in range(3):
        a, b = tr.batch()
        assert a.shape == (4, 1, 16, 16)
        torch.testing.assert_close(b, -a, atol=1e-6, rtol=0)  # b = 255 - a, after the same crop and flip


def test_pix2pix_run_loads_and_translates_grey_to_colour(p2p_run, folders):
    root, a, _ = folders
    h = ganforge.load(p2p_run)
    assert (
        h.task == "translate" and h.directions == ("a2b",) and h.img_shape == (1, 16, 16) and h.shape_b == (3, 16, 16)
    )
    out = translate(p2p_run, a[0])
    assert out.mode == "RGB" and out.size == (16, 16)
    big = translate(h, rng_images(1, 37, 53, 1, 9)[0])  # any size, larger than the training images
    assert big.size == (53, 37)
    with pytest.raises(TranslateError, match=r"^this model \(pix2pix\) was trained for a2b only, not b2a"):
        translate(h, a[0], direction="b2a")
    with pytest.raises(
        TranslateError,
        match=r"^wrong channel count: the model's a2b direction takes grayscale \(1 "
        r"channel\) images but the ndarray is colour \(3 channels\)",
    ):
        translate(h, rng_images(1, 16, 16, 3, 0)[0])
    assert translate(h, np.repeat(a[0][..., None], 3, axis=2)).size == (16, 16)  # grey stored as RGB is fine


def test_cyclegan_run_translates_both_ways_and_keeps_alpha(cycle_run):
    h = load_translator(cycle_run)
    assert h.directions == ("a2b", "b2a") and h.module_b2a is not None
    ck = runs.open_checkpoint(cycle_run)
    assert {"generator", "generator_b2a", "discriminator", "discriminator_a", "generator_ema", "generator_b2a_ema"} <= {
        p.stem for p in ck.folder.glob("*.safetensors")
    }
    saved = load_file(str(runs.weights_path(ck.folder, "generator_b2a_ema")))
    assert all(torch.equal(v, saved[k]) for k, v in h.module_b2a.state_dict().items())
    rgba = rng_images(1, 20, 24, 4, 3)[0]
    out = translate(h, rgba, direction="b2a")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])
    x = torch.from_numpy(rng_images(2, 20, 24, 3, 4)).permute(0, 3, 1, 2)
    assert h.translate(x, "a2b").shape == (2, 3, 20, 24)
    assert torch.equal(h.translate(x, "b2a"), h.translate(x, "b2a"))


@pytest.mark.parametrize("d_steps", [1, 2])  # 2: the extra D updates draw batches, crops and pool entries too
def test_cyclegan_resume_is_exact_with_pool_crops_and_lr_decay(folders, tmp_path, d_steps):  # 2 with cycle noise
    root, _, _ = folders
    o = TINY + [
        "translate.method=cyclegan",
        "data.dataset=unpaired",
        f"data.root={root / 'unpaired'}",
        "translate.pool_size=3",
        "translate.crop_size=8",
        "translate.d_norm=spectral",
        "data.hflip=true",
        "translate.lr_decay_start=1",
        "translate.lr_decay_steps=4",
        "train.steps=4",
        "train.keep_checkpoints=5",
        f"translate.d_steps={d_steps}",
        f"translate.cycle_noise={0.1 * (d_steps - 1)}",
    ]
    full = ganforge.train(overrides=o, runs_dir=tmp_path / "a")
    half = shutil.copytree(full, tmp_path / "b" / full.name)
    shutil.rmtree(half / "checkpoints" / "step-00000004")
    resumed = ganforge.train(resume=half)  # continues from step 2 to the run's own budget (4)
    ca, cb = runs.open_checkpoint(full), runs.open_checkpoint(resumed)
    assert ca.step == cb.step == 4
    for f in sorted(ca.folder.glob("*.safetensors")):
        wa, wb = load_file(str(f)), load_file(str(cb.folder / f.name))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f.name
    sa, sb = runs.load_state(ca.folder), runs.load_state(cb.folder)
    assert torch.equal(sa["pool_a"]["images"], sb["pool_a"]["images"]) and sa["pool_a"]["images"].shape[0] == 3
    lr = [g["lr"] for g in sa["opt_g"]["param_groups"]]
    assert lr == [sb["opt_g"]["param_groups"][0]["lr"]] and lr[0] == pytest.approx(2e-4 * (1 - 2 / 4))  # set at step 3
    for k in sa["opt_g"]["state"]:
        assert torch.equal(sa["opt_g"]["state"][k]["exp_avg"], sb["opt_g"]["state"][k]["exp_avg"])


def test_other_tasks_runs_are_refused(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "v0-gan-run"
    with pytest.raises(TranslateError, match="trained task 'gan', which does not translate images"):
        translate(fixture, np.zeros((28, 28), np.uint8))
    with pytest.raises(RunError, match="trained task 'gan', not an image translator"):
        load_translator(fixture)


# ---- app and CLI ------------------------------------------------------------------------------


def test_compare_panels_and_folder_mode_keep_names(cycle_run, folders, tmp_path):
    root, _, _ = folders
    src = root / "unpaired" / "B"
    res = translate_folder(cycle_run, src, tmp_path / "out", "b2a", compare_dir=tmp_path / "cmp", target_dir=src)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in src.iterdir())
    g = compare_layout(16, 16, 3)
    assert Image.open(tmp_path / "cmp" / "b0.png").size == (g["width"], g["height"]) and len(res) == 7
    two = compare_panels(Image.new("L", (10, 6)), Image.new("RGB", (10, 6)))
    assert two.mode == "RGB" and two.size == (compare_layout(10, 6, 2)["width"], compare_layout(10, 6, 2)["height"])
    with pytest.raises(TranslateError, match=r"^missing pair: 7 image\(s\) of '.*B' have no target in"):
        translate_folder(cycle_run, src, tmp_path / "o2", "b2a", target_dir=root / "unpaired" / "A")
    r = translate_detailed(cycle_run, src / "b0.png", "b2a")
    assert r.size == (16, 16) and "b2a at 16x16" in r.describe()


def test_cli_single_image_folder_and_one_line_errors(p2p_run, folders, tmp_path, capsys):
    root, _, _ = folders
    img = root / "paired" / "A" / "00.png"
    rc = ganforge_main(
        [
            "translate",
            "--model",
            str(p2p_run),
            "--image",
            str(img),
            "--out",
            str(tmp_path / "o.png"),
            "--compare",
            str(tmp_path / "c.png"),
            "--target",
            str(root / "paired" / "B" / "00.png"),
        ]
    )
    assert rc == 0 and capsys.readouterr().out.strip().endswith("o.png")
    assert Image.open(tmp_path / "o.png").mode == "RGB" and (tmp_path / "c.png").is_file()
    rc = ganforge_main(
        ["translate", "--model", str(p2p_run), "--image", str(root / "paired" / "A"), "--out", str(tmp_path / "dir")]
    )
    assert rc == 0 and len(list((tmp_path / "dir").iterdir())) == 12
    capsys.readouterr()
    rc = ganforge_main(
        [
            "translate",
            "--model",
            str(p2p_run),
            "--image",
            str(img),
            "--out",
            str(tmp_path / "x.png"),
            "--direction",
            "b2a",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: this model (pix2pix) was trained for a2b only, not b2a")
    rc = ganforge_main(
        [
            "translate",
            "--model",
            str(p2p_run),
            "--image",
            str(root / "paired" / "B" / "00.png"),
            "--out",
            str(tmp_path / "x.png"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: wrong channel count: the model's a2b direction takes grayscale")
