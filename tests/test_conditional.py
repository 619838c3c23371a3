"""Class-conditional training and sampling by class, from the API and the CLI."""

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.api import LabelError, load_generator
from ganforge.cli import main
from ganforge.config import ConfigError
from tests.test_training import assert_same, weights

COND = ["model.conditional=true"]


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    from tests.conftest import TINY

    return ganforge.train(overrides=TINY + COND + ["train.steps=4"], runs_dir=tmp_path_factory.mktemp("runs"))


def test_conditional_run_records_its_classes(cond_run):
    g = load_generator(cond_run)
    assert g.num_classes == 10 and g.class_names == [str(i) for i in range(10)]
    assert g.config.model.num_classes == 10
    a = g.sample_uint8(4, seed=0, labels=3)
    b = g.sample_uint8(4, seed=0, labels=5)
    assert a.shape == (4, 1, 28, 28) and not torch.equal(a, b)  # same noise, another class
    assert torch.equal(a, g.sample_uint8(4, seed=0, labels=[3, 3, 3, 3]))
    with pytest.raises(LabelError, match=r"class 12: expected an index 0\.\.9 or one of the names"):
        g.sample_uint8(2, labels=12)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["model.d_cond=acgan", "model.g_cond=embed"],
        ["model.d_norm=spectral", "loss.name=hinge", "model.mbstd=true"],
    ],
)
def test_conditional_resume_is_exact(tmp_path, tiny_overrides, extra):
    o = tiny_overrides + COND + extra
    full = ganforge.train(overrides=o + ["train.steps=6"], runs_dir=tmp_path / "a")
    part = ganforge.train(overrides=o + ["train.steps=3"], runs_dir=tmp_path / "b")
    ganforge.train(resume=part, overrides=["train.steps=6"])
    assert_same(weights(full)[0], weights(part)[0])


def test_resnet_trains_and_resumes(tmp_path, tiny_overrides):
    o = tiny_overrides + [
        "model.arch=resnet",
        "model.d_norm=spectral",
        "loss.name=hinge",
        "data.limit=64",
        "train.batch_size=8",
    ]
    full = ganforge.train(overrides=o + ["train.steps=4"], runs_dir=tmp_path / "a")
    part = ganforge.train(overrides=o + ["train.steps=2"], runs_dir=tmp_path / "b")
    ganforge.train(resume=part, overrides=["train.steps=4"])
    assert_same(weights(full)[0], weights(part)[0])


def test_conditional_needs_labels(tmp_path, tiny_overrides):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((28, 28), i * 10, np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(ConfigError, match="model.conditional=true needs labelled data.*no labels"):
        ganforge.train(
            overrides=tiny_overrides + COND + ["data.dataset=folder", f"data.root={folder}", "train.steps=1"],
            runs_dir=tmp_path,
        )


def test_cli_sample_by_class(cond_run, tmp_path, capsys):
    assert main(["sample", str(cond_run), "--class", "7", "--n", "5", "--out", str(tmp_path / "s.npz")]) == 0
    z = np.load(tmp_path / "s.npz")
    assert z["arr_0"].shape == (5, 28, 28, 1) and z["arr_1"].tolist() == [7] * 5
    assert main(["sample", str(cond_run), "--class", "all", "--n", "3", "--out", str(tmp_path / "all.png")]) == 0
    im = Image.open(tmp_path / "all.png")
    assert im.height == 10 * 30 + 2 and im.width > 3 * 30  # one labelled row per class
    assert main(["sample", str(cond_run), "--class", "all", "--n", "2", "--out", str(tmp_path / "dir")]) == 0
    names = sorted(p.name for p in (tmp_path / "dir").iterdir())
    assert len(names) == 20 and names[0] == "000000_0.png" and names[-1] == "000019_9.png"
    assert (
        main(
            [
                "interpolate",
                str(cond_run),
                "--class",
                "2",
                "--rows",
                "2",
                "--steps",
                "3",
                "--out",
                str(tmp_path / "i.png"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["sample", str(cond_run), "--class", "ten", "--out", str(tmp_path / "x.png")]) == 2
    assert "class 'ten': expected an index 0..9" in capsys.readouterr().err


def test_class_on_unconditional_run_is_refused(tmp_path, tiny_overrides, capsys):
    run = ganforge.train(overrides=tiny_overrides + ["train.steps=1"], runs_dir=tmp_path)
    assert main(["sample", str(run), "--class", "3", "--out", str(tmp_path / "x.png")]) == 2
    assert "trained an unconditional model" in capsys.readouterr().err


def test_conditional_auto_follows_the_data(tmp_path, tiny_overrides):
    """model.conditional=auto (the default preset's): conditional on labelled data, on clusters of the images
    for a folder of unlabelled images (tests/test_clusters.py), unconditional when there are too few to cluster;
    the run records the resolved choice, so loading it needs no data."""
    auto = tiny_overrides + ["model.conditional=auto", "train.steps=2"]
    run = ganforge.train(overrides=auto, runs_dir=tmp_path / "a")
    g = load_generator(run)
    assert g.num_classes == 10 and g.config.model.conditional is True
    assert "conditional: true" in (run / "config.yaml").read_text()
    assert "(model.conditional=auto: class-conditional, 10 classes)" in (run / "log.txt").read_text()
    assert run.name.endswith("-cond")

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((28, 28), i * 10, np.uint8)).save(folder / f"{i}.png")
    run = ganforge.train(overrides=auto + ["data.dataset=folder", f"data.root={folder}"], runs_dir=tmp_path / "b")
    g = load_generator(run)
    assert g.num_classes == 2 and g.config.model.conditional is True and g.class_names == ["cluster 0", "cluster 1"]
    assert "(model.conditional=auto: no labels: 2 clusters of classifier features)" in (run / "log.txt").read_text()
    few = ["data.dataset=folder", f"data.root={folder}", "data.limit=15"]
    run = ganforge.train(overrides=auto + few + ["train.batch_size=8"], runs_dir=tmp_path / "c")
    g = load_generator(run)
    assert g.num_classes == 0 and g.config.model.conditional is False
    assert (
        "(model.conditional=auto: unconditional, the data has no class labels; too few images to cluster)"
        in (run / "log.txt").read_text()
    )


def test_default_preset_is_conditional_auto():
    from ganforge.tasks import resolve

    assert resolve("default").model.conditional == "auto"
    assert resolve("default", ["model.conditional=false"]).model.conditional is False
    with pytest.raises(ConfigError, match=r"model\.conditional: expected true, false or auto, got 'maybe'"):
        resolve("default", ["model.conditional=maybe"])
