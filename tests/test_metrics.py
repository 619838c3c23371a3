"""Metrics: agreement with pytorch-fid and torch-fidelity, invariances, known orderings, the shipped
classifier, the reference cache, file inputs, the CLI and its errors, the training evaluator."""

import hashlib
import io
import json
import os
import pickle
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge.cli import main as ganforge_main
from ganforge.config import DataConfig
from ganforge.data import load_dataset
from ganforge.metrics import EvalError, TrainingEvaluator, evaluate, get_feature_space, register_torch_fidelity
from ganforge.metrics import compute as C
from ganforge.metrics.inception_weights import find_inception_weights, inception_cache_path
from ganforge.metrics.mnist_classifier import load_classifier, metadata, to_classifier_input, weights_bytes


def eval_main(argv):
    """``ganforge eval ARGV``."""
    return ganforge_main(["eval", *argv])


# ------------------------------------------------------------------------------------------
# shared inputs (built from tensors: the embedded MNIST and transforms of it)


@pytest.fixture(scope="module")
def mnist():
    return load_dataset(DataConfig())


@pytest.fixture(scope="module")
def space():
    return get_feature_space("mnist")


@pytest.fixture(scope="module")
def sets(mnist):
    """Disjoint real subsets A (600) and B (600), a blurred copy of A and uniform noise."""
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(mnist.images), generator=g)
    a, b = mnist.images[perm[:600]], mnist.images[perm[600:1200]]
    return {"a": a, "b": b, "blur": blur(a), "noise": torch.randint(0, 256, a.shape, generator=g, dtype=torch.uint8)}


@pytest.fixture(scope="module")
def feats(space, sets):
    return {k: space.extract(v) for k, v in sets.items()}


def blur(x: torch.Tensor, k: int = 5, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(k, dtype=torch.float32) - k // 2
    w = torch.exp(-(r**2) / (2 * sigma**2))
    w = (w[:, None] * w[None, :]) / w.sum() ** 2
    y = F.conv2d(x.float(), w[None, None].expand(x.shape[1], 1, k, k), padding=k // 2, groups=x.shape[1])
    return y.round().clamp(0, 255).to(torch.uint8)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


# ------------------------------------------------------------------------------------------
# the shipped classifier


def test_classifier_ships_with_its_record_and_reaches_99_percent(mnist):
    raw = weights_bytes()
    meta = metadata()
    assert len(raw) < 2_000_000
    assert meta["sha256"] == hashlib.sha256(raw).hexdigest()
    assert meta["split"]["train"] == 8000 and meta["split"]["held_out"] == 2000
    # recompute the held-out accuracy from the recorded split: the record must be true
    perm = torch.randperm(len(mnist.images), generator=torch.Generator().manual_seed(meta["split"]["seed"]))
    held = perm[meta["split"]["train"] :]
    model, sha = load_classifier()
    assert sha == meta["sha256"]
    with torch.no_grad():
        _, logits = model(to_classifier_input(mnist.images[held]))
    acc = (logits.argmax(1) == mnist.labels[held]).float().mean().item()
    assert acc == pytest.approx(meta["held_out_accuracy"], abs=1e-6)
    assert acc >= 0.99


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import sys, ganforge.metrics as m; "
        "assert 'torch_fidelity' not in sys.modules; "
        "from ganforge.metrics import mnist_classifier as mc; assert not mc._CACHE; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_classifier_input_conversion_rgb_and_size():
    grey = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    rgb = grey.expand(-1, 3, -1, -1).contiguous()
    assert torch.allclose(to_classifier_input(grey), to_classifier_input(rgb), atol=1e-5)  # luma of grey = grey
    assert to_classifier_input(torch.zeros(2, 3, 32, 40, dtype=torch.uint8)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError):
        to_classifier_input(torch.zeros(2, 2, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError):
        to_classifier_input(torch.zeros(2, 1, 28, 28))


# ------------------------------------------------------------------------------------------
# agreement with the references


def test_fid_equals_pytorch_fid_on_the_same_features(feats):
    from pytorch_fid.fid_score import calculate_frechet_distance

    for x, y in (("a", "b"), ("a", "blur"), ("noise", "b")):
        fx, fy = feats[x]["features"].double().numpy(), feats[y]["features"].double().numpy()
        ref = calculate_frechet_distance(fx.mean(0), np.cov(fx, rowvar=False), fy.mean(0), np.cov(fy, rowvar=False))
        ours = C.fid(feats[x]["features"], feats[y]["features"])
        assert rel(ours, ref) < 1e-6, (x, y, ours, ref)


def test_kid_equals_the_unbiased_mmd_formula(feats):
    """KID recomputed from its definition, on the same random subsets torch-fidelity draws."""
    fx, fy = feats["blur"]["features"], feats["b"]["features"]
    got = C.kid(fx, fy, seed=3, subsets=20, subset_size=300)
    rng = np.random.RandomState(3)
    x, y = fx.numpy().astype(np.float64), fy.numpy().astype(np.float64)
    vals = []
    for _ in range(20):
        a = x[rng.choice(len(x), 300, replace=False)]
        b = y[rng.choice(len(y), 300, replace=False)]
        k = lambda u, v: (u @ v.T / u.shape[1] + 1) ** 3  # noqa: E731
        kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
        m = 300
        vals.append(
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
        )
    assert got["mean"] > 0
    assert rel(got["mean"], float(np.mean(vals))) < 1e-5  # float32 kernels in torch-fidelity, float64 here
    assert rel(got["std"], float(np.std(vals))) < 1e-3


def test_evaluate_equals_torch_fidelity_calculate_metrics(sets, space):
    """The same numbers as torch-fidelity's own pipeline with ganforge-mnist registered in it."""
    import torch_fidelity

    from ganforge.metrics.fidelity_bridge import TensorImages

    register_torch_fidelity()
    register_torch_fidelity()  # idempotent
    fake, real = sets["blur"], sets["b"]
    ours = evaluate(fake, real, metrics="fid,kid,is,pr", feature_space=space, seed=5, cache=False)
    ref = torch_fidelity.calculate_metrics(
        input1=TensorImages(fake),
        input2=TensorImages(real),
        feature_extractor="ganforge-mnist",
        fid=True,
        kid=True,
        isc=True,
        prc=True,
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
        kid_subset_size=600,
        rng_seed=5,
        batch_size=64,
    )
    assert rel(ours["fid"], ref["frechet_inception_distance"]) < 1e-6
    assert rel(ours["kid"], ref["kernel_inception_distance_mean"]) < 1e-6
    assert rel(ours["is"], ref["inception_score_mean"]) < 1e-6
    assert ours["precision"] == pytest.approx(ref["precision"], abs=1e-9)
    assert ours["recall"] == pytest.approx(ref["recall"], abs=1e-9)


def test_results_do_not_depend_on_batch_size(sets, space):
    r1 = evaluate(sets["blur"], sets["b"], metrics="fid,kid,is", feature_space=space, batch_size=600, cache=False)
    r2 = evaluate(sets["blur"], sets["b"], metrics="fid,kid,is", feature_space=space, batch_size=7, cache=False)
    for m in ("fid", "kid", "is"):
        assert rel(r1[m], r2[m]) < 1e-5, m


# ------------------------------------------------------------------------------------------
# known values and orderings


def test_inception_score_bounds():
    n, k = 10000, 10
    aligned = torch.full((n, k), -30.0)
    aligned[torch.arange(n), torch.arange(n) % k] = 30.0  # every class equally often, all confident
    assert C.inception_score(aligned, splits=1)["mean"] == pytest.approx(10.0, rel=1e-6)
    assert C.inception_score(aligned)["mean"] == pytest.approx(10.0, rel=0.01)  # 10 shuffled splits of 1000
    one = torch.zeros(n, k)
    one[:, 3] = 30.0
    assert C.inception_score(one)["mean"] == pytest.approx(1.0, abs=1e-6)


def test_mnist_score_of_real_digits_and_of_one_class(mnist, space):
    x = mnist.images[:1000]
    assert C.inception_score(space.extract(x)["logits"])["mean"] > 9.0
    ones = mnist.images[mnist.labels == 1][:300]
    assert C.inception_score(space.extract(ones)["logits"])["mean"] < 1.2


def test_fid_ordering_in_mnist_space(feats):
    f = {k: v["features"] for k, v in feats.items()}
    real, blurred, noise = C.fid(f["a"], f["b"]), C.fid(f["blur"], f["b"]), C.fid(f["noise"], f["b"])
    assert 0 <= real < blurred < noise
    kr, kb, kn = (C.kid(f[k], f["b"])["mean"] for k in ("a", "blur", "noise"))
    assert kr < kb < kn


def test_fid_ordering_in_inception_space(sets):
    if find_inception_weights() is None:
        pytest.skip(
            f"Inception weights absent ({inception_cache_path()} missing and GANFORGE_INCEPTION_WEIGHTS "
            "unset); the Inception ordering needs the real pretrained network"
        )
    sp = get_feature_space("inception", allow_download=False)
    f = {k: sp.extract(v[:200], batch_size=50)["features"] for k, v in sets.items()}
    assert C.fid(f["a"], f["b"]) < C.fid(f["blur"], f["b"]) < C.fid(f["noise"], f["b"])


def test_coverage_of_half_the_classes(mnist, space):
    real = mnist.images[:2000]
    low = mnist.images[mnist.labels < 5][:1000]
    cov = C.coverage(space.extract(low)["logits"], space.extract(real)["logits"], space.class_names)
    assert cov["classes_covered"] == 5
    assert cov["missing_classes"] == ["5", "6", "7", "8", "9"]
    assert cov["kl_fake_to_real"] == pytest.approx(np.log(2), abs=0.1)
    full = C.coverage(
        space.extract(mnist.images[2000:3000])["logits"], space.extract(real)["logits"], space.class_names
    )
    assert full["classes_covered"] == 10 and full["kl_fake_to_real"] < 0.02


# ------------------------------------------------------------------------------------------
# evaluate(): result object, floor, cache, file inputs


def test_result_object_floor_and_provenance(mnist, space, tmp_path):
    real = mnist.images[:1200]
    fake = blur(mnist.images[1200:1500])
    r = evaluate(
        fake,
        real,
        metrics="fid,kid,is,pr",
        feature_space=space,
        floor=True,
        seed=1,
        cache_dir=tmp_path,
        out=tmp_path / "r.json",
    )
    assert json.loads((tmp_path / "r.json").read_text()) == r
    assert set(r["metrics"]) == {"fid", "kid", "is", "pr"}
    fl = r["floor"]
    assert fl["num_samples"] == 300
    assert 0 < fl["fid"] < r["fid"]
    names = [x["metric"] for x in r["results"]]
    assert names == ["fid", "kid", "is", "precision", "recall"]
    for rec in r["results"]:
        for key in (
            "metric",
            "value",
            "features",
            "weights_sha256",
            "num_real",
            "num_fake",
            "reference",
            "resize",
            "seed",
            "checkpoint",
            "step",
            "floor",
        ):
            assert key in rec, key
        assert rec["num_fake"] == 300 and rec["num_real"] == 1200 and rec["features"] == "mnist"
    assert r["provenance"]["weights_sha256"] == metadata()["sha256"]
    assert r["coverage"]["classes_covered"] >= 8


def test_reference_statistics_are_cached_and_keyed_by_content(mnist, space, tmp_path):
    real, fake = mnist.images[:500], mnist.images[500:800]
    r1 = evaluate(fake, real, metrics="fid", feature_space=space, cache_dir=tmp_path)
    files = list(tmp_path.glob("mnist-*.npz"))
    assert len(files) == 1 and r1["provenance"]["reference_cache"] == str(files[0])
    mtime = files[0].stat().st_mtime_ns
    r2 = evaluate(fake, real, metrics="fid", feature_space=space, cache_dir=tmp_path)
    assert r2["fid"] == r1["fid"] and files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    changed = real.clone()
    changed[0, 0, 0, 0] ^= 1
    evaluate(fake, changed, metrics="fid", feature_space=space, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("mnist-*.npz"))) == 2
    # the env var moves the default location
    os.environ["GANFORGE_CACHE"] = str(tmp_path / "env")
    try:
        evaluate(fake, real, metrics="fid", feature_space=space)
    finally:
        del os.environ["GANFORGE_CACHE"]
    assert list((tmp_path / "env" / "refstats").glob("mnist-*.npz"))


def test_statistics_file_as_reference(mnist, space, tmp_path):
    real, fake = mnist.images[:500], mnist.images[500:800]
    full = evaluate(fake, real, metrics="fid,kid", feature_space=space, cache=False)
    f = space.extract(real)["features"].numpy().astype(np.float64)
    np.savez(tmp_path / "stats.npz", mu=f.mean(0), sigma=np.cov(f, rowvar=False))  # pytorch-fid layout
    r = evaluate(fake, tmp_path / "stats.npz", metrics="fid,kid", feature_space=space)
    assert rel(r["fid"], full["fid"]) < 1e-6
    assert "kid" in r["skipped"] and "kid" not in r
    np.savez(tmp_path / "wrong.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(EvalError, match="2048-d"):
        evaluate(fake, tmp_path / "wrong.npz", metrics="fid", feature_space=space)


def test_cli_real_folder_fake_npz_json(mnist, tmp_path, capsys):
    from PIL import Image

    real, fake = mnist.images[:300], blur(mnist.images[300:500])
    (tmp_path / "real").mkdir()
    for i, im in enumerate(real):
        Image.fromarray(im[0].numpy()).save(tmp_path / "real" / f"{i:04d}.png")
    np.savez(tmp_path / "fake.npz", arr_0=fake.permute(0, 2, 3, 1).numpy())  # [N, H, W, C]
    code = eval_main(
        [
            "--real",
            str(tmp_path / "real"),
            "--fake",
            str(tmp_path / "fake.npz"),
            "--features",
            "mnist",
            "--metrics",
            "fid,kid",
            "--json",
            "--quiet",
            "--no-cache",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    direct = evaluate(fake, real, metrics="fid,kid", features="mnist", cache=False)
    assert out["fid"] == pytest.approx(direct["fid"], rel=1e-6)  # same pixels, float rounding only
    assert out["provenance"]["num_real"] == 300 and out["provenance"]["num_fake"] == 200
    # the readable table
    code = eval_main(
        [
            "--real",
            str(tmp_path / "real"),
            "--fake",
            str(tmp_path / "fake.npz"),
            "--features",
            "mnist",
            "--metrics",
            "fid",
            "--floor",
            "--quiet",
            "--no-cache",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and "FID" in text and "floor (real vs real, 150 each)" in text and "coverage:" in text


# ------------------------------------------------------------------------------------------
# errors: one clear line, never a traceback


def run_cli(argv):
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = eval_main(argv)
    return code, out.getvalue(), err.getvalue()


def test_offline_without_inception_weights_says_what_to_do(tmp_path, monkeypatch, mnist):
    import urllib.error

    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(EvalError) as e:
        get_feature_space("inception")
    msg = str(e.value)
    assert "Inception weights are not available" in msg and "--inception-weights" in msg and "--features mnist" in msg
    np.savez(tmp_path / "x.npz", arr_0=mnist.images[:10].permute(0, 2, 3, 1).numpy())
    x = str(tmp_path / "x.npz")
    code, out, err = run_cli(["--real", x, "--fake", x, "--features", "inception", "--quiet"])
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and "--inception-weights" in err and "--features effnet" in err


def test_inception_weights_are_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"fc.weight": Evil()}, f)
    with pytest.raises(EvalError, match="plain tensor state dict"):
        get_feature_space("inception", weights_path=str(tmp_path / "evil.pth"))
    assert not marker.exists()
    torch.save({"foo": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(EvalError, match="SHA-256"):
        get_feature_space("inception", weights_path=str(tmp_path / "wrong.pth"), sha256="0" * 64)
    with pytest.raises(EvalError, match="does not match torch-fidelity's InceptionV3"):
        get_feature_space("inception", weights_path=str(tmp_path / "wrong.pth"))
    with pytest.raises(EvalError, match="no such file"):
        get_feature_space("inception", weights_path=str(tmp_path / "missing.pth"))


def test_inception_random_init_runs_for_throughput_only():
    sp = get_feature_space("inception", random_weights=True)
    out = sp.extract(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    assert out["features"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert "throughput only" in sp.weights_sha256


def test_user_errors_are_one_line(mnist, space, tmp_path):
    grey, rgb = mnist.images[:50], mnist.images[50:100].expand(-1, 3, -1, -1).contiguous()
    with pytest.raises(EvalError, match="channels differ"):
        evaluate(rgb, grey, metrics="fid", feature_space=space, cache=False)
    with pytest.raises(EvalError, match="unknown metric"):
        evaluate(grey, grey, metrics="fid,lpips", feature_space=space)
    with pytest.raises(EvalError, match="unknown feature extractor"):
        evaluate(grey, grey, features="clip")
    with pytest.raises(EvalError, match="needs at least 2"):
        evaluate(grey[:1], grey, metrics="fid", feature_space=space)
    (tmp_path / "notarun").mkdir()
    for argv, needle in (
        ([str(tmp_path / "notarun"), "--features", "mnist"], "not a ganforge run folder"),
        ([str(tmp_path / "nope"), "--features", "mnist"], "does not exist"),
        (["--fake", str(tmp_path / "nope.npz"), "--real", str(tmp_path), "--features", "mnist"], "no such file"),
        (["--fake", str(tmp_path / "notarun"), "--real", str(tmp_path), "--features", "mnist"], "no images"),
        ([], "nothing to evaluate"),
    ):
        code, out, err = run_cli(argv + ["--quiet"])
        assert code == 2 and needle in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)


# ------------------------------------------------------------------------------------------
# runs and training


def test_training_evaluator(mnist):
    real = mnist.images[:1000]
    ev = TrainingEvaluator(mnist, features="mnist", num_samples=500, seed=0, every_kimg=1.0, max_real=1000)
    good = ev(lambda n: mnist.images[-n:], kimg=1.0)
    assert {"fid", "kid", "classes_covered", "kl_class"} <= good.keys()
    assert good["is_best"] and good["classes_covered"] == 10 and good["kl_class"] < 0.05
    bad = ev(lambda n: torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8), kimg=2.0)
    assert not bad["is_best"] and bad["fid"] > good["fid"] and ev.best_fid == good["fid"]
    assert ev.due(3.0) and not ev.due(2.5)
    ev2 = TrainingEvaluator(real, num_samples=500)
    ev2.load_state_dict(ev.state_dict())
    assert ev2.best_fid == ev.best_fid
    with pytest.raises(EvalError, match="channels differ"):
        ev(lambda n: torch.zeros(n, 3, 28, 28, dtype=torch.uint8))


def test_evaluate_a_run_folder(tmp_path, tiny_overrides, capsys):
    import ganforge

    run = ganforge.train(overrides=tiny_overrides + ["train.steps=2"], runs_dir=tmp_path)
    r = evaluate(run, features="mnist", num_samples=200, metrics="fid,is", seed=3, cache_dir=tmp_path / "c")
    p = r["provenance"]
    assert p["step"] == 2 and Path(p["checkpoint"]).parent.name == "checkpoints" and p["run_dir"] == str(run)
    assert p["num_fake"] == 200 and p["num_real"] == 256 and p["reference"].startswith("train")
    again = evaluate(run, features="mnist", num_samples=200, metrics="fid,is", seed=3, cache_dir=tmp_path / "c")
    assert again["fid"] == r["fid"]  # same seed, same samples
    code = eval_main(
        [
            str(run),
            "--features",
            "mnist",
            "--samples",
            "100",
            "--metrics",
            "fid",
            "--json",
            "--quiet",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert code == 0 and "fid" in json.loads(capsys.readouterr().out)
    saved = list((run / "eval").glob("*-mnist-100.json"))
    assert saved and (run / "eval" / "results.jsonl").is_file()


def test_evaluate_takes_an_options_object_or_its_keywords(sets):
    """``evaluate(..., options=EvalOptions(...))`` and the same settings as keywords give the same result;
    an unknown keyword is a one-line TypeError naming it and the options."""
    from ganforge.metrics import EvalOptions

    real, fake = sets["a"][:300], sets["b"][:200]
    kw = dict(features="mnist", metrics="fid,kid", floor=True, seed=2, cache=False)
    by_kw, by_opts = evaluate(fake, real, **kw), evaluate(fake, real, options=EvalOptions(**kw))
    for r in (by_kw, by_opts):
        r.pop("timings"), r["provenance"].pop("created")
    assert by_kw == by_opts
    with pytest.raises(TypeError) as e:
        evaluate(fake, real, num_sample=10)
    assert "\n" not in str(e.value) and "unexpected keyword argument 'num_sample'" in str(e.value)
    assert "EvalOptions options: metrics, num_samples, features" in str(e.value)
