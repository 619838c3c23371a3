"""Self-conditioned training (issue 31): unlabelled images trained on k-means clusters as classes.

Checked: k-means deterministic for a seed and right on separated blobs; new clusters matched to the old
(scipy's and the built-in Hungarian method agree); the default K; the start line and what the run records
(config resolved, class names, cluster sizes); resume exact with the clusters in the checkpoint (classifier
features, and discriminator features re-clustered during training); sampling without a class draws the
clusters in proportion to their sizes, with a class one cluster, in every output form; a folder of colour
images trains with model.conditional=auto; impossible settings refused.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge import runs
from ganforge.api import load_generator
from ganforge.cli import main
from ganforge.config import ConfigError
from ganforge.tasks.gan import clusters as C
from tests.test_training import assert_same, weights

UNLABELLED = ["model.conditional=auto", "data.labels=false"]


def blobs(k=5, per=40, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 10
    x = centres.repeat_interleave(per, 0) + torch.randn(k * per, dim, generator=g)
    return x, torch.arange(k).repeat_interleave(per)


def same_partition(a, b):
    """Whether labelings a and b group the points alike (up to the numbering)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# ---- the algorithm --------------------------------------------------------------------------------------


def test_kmeans_is_deterministic_for_a_seed_and_finds_separated_blobs():
    x, truth = blobs()
    a, ca = C.kmeans(x, 5, torch.Generator().manual_seed(3))
    b, cb = C.kmeans(x, 5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(ca, cb)
    assert a.dtype == torch.int64 and a.shape == (200,) and ca.shape == (5, 8)
    assert same_partition(a, truth)
    # a generator's state decides: the same draws again after restoring it
    g = torch.Generator().manual_seed(9)
    state = g.get_state()
    first = C.kmeans(C.normalise(torch.randn(300, 6, generator=torch.Generator().manual_seed(1))), 7, g)[0]
    g.set_state(state)
    again = C.kmeans(C.normalise(torch.randn(300, 6, generator=torch.Generator().manual_seed(1))), 7, g)[0]
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="k=5 needs 1 <= k <= 3"):
        C.kmeans(x[:3], 5, g)


def test_new_clusters_are_matched_to_the_old_ones():
    x, truth = blobs(k=6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    renamed = perm[truth]  # the same clusters, numbered otherwise
    assert torch.equal(C.match_clusters(truth, renamed, 6), truth)
    noisy = renamed.clone()
    noisy[:7] = (noisy[:7] + 1) % 6  # a few images moved
    matched = C.match_clusters(truth, noisy, 6)
    assert (matched == truth).float().mean() > 0.95


def test_the_builtin_hungarian_method_agrees_with_scipy():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 12):
        for _ in range(5):
            w = rng.integers(0, 50, (n, n)).astype(float)
            r, c = linear_sum_assignment(w, maximize=True)
            best = w[r, c].sum()
            rows = C.hungarian(-w)
            assert sorted(rows) == list(range(n))
            assert w[rows, list(range(n))].sum() == best
            assert C.assignment(w, maximize=True) == [int(r[list(c).index(j)]) for j in range(n)]


def test_matching_works_without_scipy(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import fails: the built-in method is used
    w = np.array([[0, 9, 1], [8, 0, 0], [1, 1, 7]], dtype=float)
    assert C.assignment(w, maximize=True) == [1, 0, 2]
    x, truth = blobs(k=4)
    assert torch.equal(C.match_clusters(truth, (truth + 1) % 4, 4), truth)


def test_the_default_number_of_clusters_follows_the_data_size():
    assert [C.default_k(n) for n in (16, 20, 256, 10_000, 20_000, 50_000, 10**6)] == [2, 2, 10, 20, 40, 50, 50]


def test_proportional_labels_match_the_shares():
    y = C.proportional(1000, [1, 3, 0, 6])
    assert torch.bincount(y, minlength=4).tolist() == [100, 300, 0, 600]
    assert C.proportional(7, [1, 1, 1]).shape == (7,)


# ---- training on clusters -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The embedded digits with their labels hidden: 10 clusters of the shipped classifier's features."""
    from tests.conftest import TINY

    return ganforge.train(overrides=TINY + UNLABELLED + ["train.steps=4"], runs_dir=tmp_path_factory.mktemp("runs"))


def test_unlabelled_digits_train_on_clusters_of_classifier_features(digits_run):
    log = (digits_run / "log.txt").read_text()
    assert "data.labels=false: the 10 classes of 'mnist' are not used" in log
    assert "(model.conditional=auto: no labels: 10 clusters of classifier features)" in log  # the start line
    assert "clustered 256 images at step 0: 10 clusters of classifier features" in log
    assert digits_run.name.endswith("-dcgan-clusters")
    saved = runs.read_run_config(digits_run)["model"]  # resolved, so a resume needs nothing else
    assert (saved["conditional"], saved["num_classes"], saved["clusters"], saved["cluster_features"]) == (
        True,
        10,
        10,
        "mnist",
    )
    folder = runs.find_checkpoint(digits_run)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["class_names"] == [f"cluster {i}" for i in range(10)]
    assert sum(cfg["cluster_sizes"]) == 256 and min(cfg["cluster_sizes"]) > 0
    state = runs.load_state(folder)["clusters"]
    assert torch.equal(torch.bincount(state["labels"], minlength=10), torch.tensor(cfg["cluster_sizes"]))
    # the clusters are the digits, nearly (the classifier's features): most of each cluster is one digit
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset

    truth = load_dataset(DataConfig(limit=256)).labels
    purity = sum(torch.bincount(truth[state["labels"] == j]).max() for j in range(10)) / 256
    assert purity > 0.8
    g = load_generator(digits_run)
    assert g.num_classes == 10 and g.class_names[3] == "cluster 3"
    assert g.class_weights == pytest.approx([s / 256 for s in cfg["cluster_sizes"]])


def test_sampling_without_a_class_draws_clusters_in_proportion(digits_run, tmp_path):
    g = load_generator(digits_run)
    w = torch.tensor(g.class_weights)
    n = 20_000
    y = g.labels_for(n, None, seed=5)
    freq = torch.bincount(y, minlength=10) / n
    assert (freq - w).abs().max() < 0.01
    # one sample per seed: each seed draws a cluster with its probability (binomial tolerance, 4 sigma)
    m = 3000
    first = torch.tensor([int(g.labels_for(1, None, seed=s)[0]) for s in range(m)])
    freq1 = torch.bincount(first, minlength=10) / m
    assert ((freq1 - w).abs() < 4 * (w * (1 - w) / m).sqrt() + 1e-3).all()
    assert not torch.equal(g.labels_for(64, None, seed=0), g.labels_for(64, None, seed=1))
    # sample() draws them with its seed, and the images are those of these labels
    assert torch.equal(g.sample_uint8(8, seed=2), g.sample_uint8(8, seed=2, labels=g.labels_for(8, None, seed=2)))
    # the CLI: without --class the .npz records the drawn clusters; --class picks one, by index or name
    assert main(["sample", str(digits_run), "--n", "40", "--seed", "3", "--out", str(tmp_path / "s.npz")]) == 0
    z = np.load(tmp_path / "s.npz")
    assert z["arr_1"].tolist() == g.labels_for(40, None, seed=3).tolist()
    assert np.array_equal(z["arr_0"], g.sample_uint8(40, seed=3).permute(0, 2, 3, 1).numpy())
    assert main(["sample", str(digits_run), "--class", "cluster 4", "--n", "3", "--out", str(tmp_path / "c.npz")]) == 0
    assert np.load(tmp_path / "c.npz")["arr_1"].tolist() == [4, 4, 4]
    assert main(["sample", str(digits_run), "--n", "4", "--out", str(tmp_path / "dir")]) == 0
    names = sorted(p.name for p in (tmp_path / "dir").iterdir())
    assert len(names) == 4 and all("_cluster-" in s for s in names)
    assert main(["interpolate", str(digits_run), "--rows", "2", "--steps", "2", "--out", str(tmp_path / "i.png")]) == 0
    info = g.export_networks()[0].info
    assert info["class_weights"] == pytest.approx(g.class_weights, abs=1e-6)


@pytest.mark.parametrize(
    "extra",
    [
        [],  # classifier features: clustered once
        ["model.cluster_features=discriminator", "model.recluster_every=2", "model.clusters=5"],  # re-clustered
    ],
)
def test_resume_is_exact_with_clusters(tmp_path, tiny_overrides, extra):
    o = tiny_overrides + UNLABELLED + extra
    full = ganforge.train(overrides=o + ["train.steps=6"], runs_dir=tmp_path / "a")
    part = ganforge.train(overrides=o + ["train.steps=3"], runs_dir=tmp_path / "b")
    ganforge.train(resume=part, overrides=["train.steps=6"])
    wa, sa = weights(full)
    wb, sb = weights(part)
    assert_same(wa, wb)
    assert torch.equal(sa["clusters"]["labels"], sb["clusters"]["labels"])
    assert torch.equal(sa["clusters"]["gen"], sb["clusters"]["gen"])
    assert sa["clusters"]["count"] == sb["clusters"]["count"] == (1 if not extra else 3)  # steps 0, 2, 4
    if extra:
        log = (full / "log.txt").read_text()
        assert "5 clusters of discriminator features, re-clustered every 2 steps" in log
        assert "re-clustered 256 images at step 4" in log and "kept their cluster" in log
        assert "re-clustered 256 images at step 4" in (part / "log.txt").read_text()  # after the resume


def test_the_same_seed_gives_the_same_clusters_and_another_seed_other_draws(tmp_path, tiny_overrides):
    o = tiny_overrides + UNLABELLED + ["train.steps=1"]
    a = ganforge.train(overrides=o, runs_dir=tmp_path)
    b = ganforge.train(overrides=o, runs_dir=tmp_path)
    la = runs.load_state(runs.find_checkpoint(a))["clusters"]
    lb = runs.load_state(runs.find_checkpoint(b))["clusters"]
    assert torch.equal(la["labels"], lb["labels"]) and torch.equal(la["gen"], lb["gen"])


def colour_folder(path, n=40, size=16):
    """n unlabelled colour images: blobs of a few colours on noise."""
    path.mkdir()
    rng = np.random.default_rng(0)
    palette = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 40)]
    for i in range(n):
        im = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        c = palette[i % len(palette)]
        r = 3 + i % 4
        im[size // 2 - r : size // 2 + r, size // 2 - r : size // 2 + r] = c
        Image.fromarray(im).save(path / f"{i:03d}.png")
    return path


def test_a_folder_of_colour_images_trains_on_clusters_with_auto(tmp_path, tiny_overrides):
    folder = colour_folder(tmp_path / "colour")
    o = [x for x in tiny_overrides if not x.startswith("data.limit")]
    run = ganforge.train(
        overrides=o
        + ["model.conditional=auto", "data.dataset=folder", f"data.root={folder}", "train.batch_size=8"]
        + ["model.recluster_every=3", "train.steps=4"],
        runs_dir=tmp_path / "runs",
    )
    log = (run / "log.txt").read_text()
    assert (
        "(model.conditional=auto: no labels: 5 clusters of discriminator features, re-clustered every 3 steps)" in log
    )
    assert "re-clustered 40 images at step 3" in log
    g = load_generator(run)
    assert g.num_classes == 5 and g.img_shape == (3, 16, 16) and abs(sum(g.class_weights) - 1) < 1e-9
    assert g.sample_uint8(6, seed=0).shape == (6, 3, 16, 16)


def test_impossible_cluster_settings_are_refused(tmp_path, tiny_overrides):
    from ganforge.tasks import resolve

    with pytest.raises(ConfigError, match=r"model\.clusters=5 trains on clusters as classes: it needs"):
        resolve(None, ["model.conditional=false", "model.clusters=5"])
    with pytest.raises(ConfigError, match=r"model\.clusters: expected 0 \(off\), 2 or more"):
        resolve(None, ["model.clusters=1"])
    with pytest.raises(ConfigError, match=r"model\.cluster_features: 'nope' is not allowed"):
        ganforge.train(overrides=tiny_overrides + UNLABELLED + ["model.cluster_features=nope"], runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"model\.clusters=999: expected 2 to 256"):
        ganforge.train(overrides=tiny_overrides + UNLABELLED + ["model.clusters=999"], runs_dir=tmp_path)
    # clusters=0: the plain unconditional GAN, said so in the start line
    run = ganforge.train(
        overrides=tiny_overrides + UNLABELLED + ["model.clusters=0", "train.steps=1"], runs_dir=tmp_path
    )
    assert load_generator(run).num_classes == 0
    assert "unconditional, the data has no class labels; model.clusters=0" in (run / "log.txt").read_text()


def test_in_training_evaluation_draws_clusters_in_proportion(tmp_path, tiny_overrides):
    from ganforge.api import trainer

    tr = trainer(
        overrides=tiny_overrides + UNLABELLED + ["train.steps=2", "eval.every_kimg=0.032", "eval.samples=64"],
        runs_dir=tmp_path,
    )
    tr.run()
    assert any("fid" in r for r in runs.read_metrics(tr.run_dir))
    seen = []
    tr._generate_uint8 = lambda z, y, chunk: seen.append(y) or torch.zeros(len(z), 1, 28, 28, dtype=torch.uint8)
    tr._eval_samples(200)
    expected = C.proportional(200, tr.clusters.sizes())
    assert torch.equal(torch.bincount(seen[0], minlength=10), torch.bincount(expected, minlength=10))
