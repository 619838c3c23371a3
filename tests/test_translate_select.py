"""The ``translate`` task's model selection (``translate.select=fid``: checkpoint ``best`` by an unsupervised
FID of the translations, exact on resume) and the U-Net's ``translate.dropout``."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ganforge
from ganforge import runs
from ganforge.errors import ConfigError
from ganforge.metrics.compute import fid
from ganforge.metrics.features import get_feature_space
from ganforge.tasks.translate.networks import build, build_unet
from tests.test_translate import TINY  # the tiny translation config


def _folder(root: Path, side: str, n: int, seed: int) -> np.ndarray:
    imgs = np.random.default_rng(seed).integers(0, 256, (n, 16, 16), dtype=np.uint8)
    for i, im in enumerate(imgs):
        (root / side).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(root / side / f"{side}{i:02d}.png")
    return imgs


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory):
    """Grey 16x16 unpaired domains: 12 A images, 9 B images."""
    root = tmp_path_factory.mktemp("sel")
    return root, _folder(root, "A", 12, 0), _folder(root, "B", 9, 1)


def _options(root: Path):
    return TINY + [
        "translate.method=cyclegan",
        "data.dataset=unpaired",
        f"data.root={root}",
        "translate.select=fid",
        "translate.select_every=1",
        "train.steps=4",
        "train.keep_checkpoints=5",
    ]


def test_best_checkpoint_is_the_lowest_selection_fid_and_resume_is_exact(unpaired, tmp_path):
    root, a, b = unpaired
    full = ganforge.train(overrides=_options(root), runs_dir=tmp_path / "a")
    recs = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    sel = [(r["select_fid"], r["step"]) for r in recs if "select_fid" in r]
    assert [s for _, s in sel] == [1, 2, 3, 4] and len({v for v, _ in sel}) == 4
    value, step = min(sel)
    best = runs.open_checkpoint(full, "best")
    # the best figure is in the loop's keep_best state ("best"; runs before it kept translate's own "best_fid")
    assert best.step == step and runs.load_state(best.folder)["best"]["value"] == pytest.approx(value, abs=1e-4)
    # the recorded figure, recomputed from the saved 'best' generator: its translations of every A image against
    # every B image (select_count exceeds both) in the shipped MNIST classifier's feature space
    h = ganforge.load(full, checkpoint="best")
    space = get_feature_space("mnist")
    out = h.translate(torch.from_numpy(a)[:, None].contiguous(), "a2b")
    ref = fid(space.extract(out)["features"], space.extract(torch.from_numpy(b)[:, None].contiguous())["features"])
    assert ref == pytest.approx(value, rel=1e-3)
    # resumed from step 2, the run ends with the same best figure and the same 'best' weights
    half = shutil.copytree(full, tmp_path / "b" / full.name)
    shutil.rmtree(half / "checkpoints" / "step-00000004")
    if step > 2:  # a 'best' newer than step 2 would be resumed from: as if the run had stopped just after step 2
        shutil.rmtree(half / "checkpoints" / "best")
    resumed = ganforge.train(resume=half)
    rb = runs.open_checkpoint(resumed, "best")
    assert rb.step == step
    assert (
        runs.load_state(runs.open_checkpoint(resumed).folder)["best"]["value"]
        == runs.load_state(runs.open_checkpoint(full).folder)["best"]["value"]
    )
    for f in sorted(best.folder.glob("*.safetensors")):
        wa, wb = load_file(str(f)), load_file(str(rb.folder / f.name))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f.name


def test_selection_and_dropout_settings_are_checked(unpaired, tmp_path):
    root, _, _ = unpaired
    with pytest.raises(ConfigError, match=r"translate\.select"):
        ganforge.train(overrides=_options(root) + ["translate.select=psnr"], runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^translate\.dropout: expected a probability in \[0, 1\), got 1\.0$"):
        ganforge.train(overrides=_options(root) + ["translate.dropout=1.0"], runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^translate\.select_count: expected at least 2 images for an FID, got 1$"):
        ganforge.train(overrides=_options(root) + ["translate.select_count=1"], runs_dir=tmp_path)


def test_unet_dropout_is_optional():
    on, off = build_unet(3, 3, (32, 32), width=4), build_unet(3, 3, (32, 32), width=4, dropout=0.0)
    assert any(isinstance(m, torch.nn.Dropout) for m in on.modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in off.modules())
    off.load_state_dict(on.state_dict())  # same parameters: a checkpoint loads either way
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    off.train()
    torch.testing.assert_close(off(x), off(x))  # no dropout: training-mode outputs are deterministic


def test_the_tile_side_set_in_training_is_the_default_for_use(tmp_path):
    root = tmp_path / "pairs"
    _folder(root, "A", 8, 2)
    for i in range(8):  # B/: the same names as A/ (pairs)
        (root / "B").mkdir(exist_ok=True)
        Image.fromarray(np.random.default_rng(10 + i).integers(0, 256, (16, 16), dtype=np.uint8)).save(
            root / "B" / f"A{i:02d}.png"
        )
    run = ganforge.train(
        overrides=TINY + ["data.dataset=paired", f"data.root={root}", "train.steps=1", "translate.tile=16"],
        runs_dir=tmp_path / "runs",
    )
    h = ganforge.load(run)
    assert h.tile == 16
    x = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (1, 1, 40, 40), dtype=np.uint8))
    default = h.translate(x)
    assert torch.equal(default, h.translate(x, tile=16, overlap=4))  # the trained tile, overlap min(32, 16 // 4)
    assert not torch.equal(default, h.translate(x, tile=512))  # instance norm: one pass sees other statistics
    with pytest.raises(ConfigError, match=r"^translate\.tile: expected at least 16 pixels, got 8$"):
        ganforge.train(
            overrides=TINY + ["data.dataset=paired", f"data.root={root}", "translate.tile=8"],
            runs_dir=tmp_path / "runs",
        )


@pytest.mark.parametrize("arch", ["resnet", "unet"])
def test_input_skip_adds_the_input_to_the_output(arch):
    for c_in, c_out in ((3, 3), (1, 3), (3, 1)):
        skip = build(arch, c_in, c_out, (32, 32), width=4, blocks=1, input_skip=True).eval()
        plain = build(arch, c_in, c_out, (32, 32), width=4, blocks=1).eval()
        plain.load_state_dict(skip.state_dict())  # the same parameters: the option adds none
        x = torch.rand(2, c_in, 32, 32) * 2 - 1
        add = x.expand(-1, 3, -1, -1) if c_in == 1 else (x.mean(1, keepdim=True) if c_out == 1 else x)
        torch.testing.assert_close(skip.raw(x), plain.raw(x) + add)
