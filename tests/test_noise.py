"""model.z_dist: the declared noise distribution is what training, the fixed sample/eval noise and
GeneratorHandle.noise draw; the default (normal) keeps the random stream it always had."""

import pytest
import torch

import ganforge
from ganforge.api import trainer
from ganforge.errors import ConfigError
from ganforge.tasks import resolve
from ganforge.tasks.gan.networks import draw_z


def test_uniform_noise_is_uniform_in_minus_one_one():
    z = draw_z(20000, 8, "uniform", torch.Generator().manual_seed(0))
    assert z.shape == (20000, 8) and z.min() >= -1 and z.max() <= 1
    assert z.min() < -0.999 and z.max() > 0.999
    assert abs(z.mean().item()) < 0.01 and z.var().item() == pytest.approx(1 / 3, rel=0.02)
    # flat: every tenth of [-1, 1] holds a tenth of the draws
    assert torch.histc(z, bins=10, min=-1, max=1).div(z.numel()).sub(0.1).abs().max() < 0.005


def test_normal_noise_keeps_the_stream_it_always_had():
    z = draw_z(5000, 8, "normal", torch.Generator().manual_seed(3))
    assert torch.equal(z, torch.randn(5000, 8, generator=torch.Generator().manual_seed(3)))
    assert z.var().item() == pytest.approx(1.0, rel=0.05) and z.abs().max() > 3


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_training_and_sampling_draw_the_declared_distribution(dist, tiny_overrides, tmp_path):
    ov = [
        *tiny_overrides,
        f"model.z_dist={dist}",
        "train.steps=1",
        "train.minutes=null",
        "eval.every_kimg=0",
        "train.sample_count=500",
    ]
    tr = trainer(overrides=ov, dry_run=True)
    seen = []  # the evaluation's fixed noise, caught on its way into the generator
    tr._generate_uint8 = lambda z, y, chunk: seen.append(z)
    tr._eval_samples(4000)
    for z in (tr._z(4000), tr.fixed_z, seen[0]):  # training noise, sample-grid noise, evaluation noise
        inside = bool((z.abs() <= 1).all())
        assert inside == (dist == "uniform")
        assert z.var().item() == pytest.approx(1 / 3 if dist == "uniform" else 1.0, rel=0.1)
    run = ganforge.train(overrides=ov, runs_dir=tmp_path)
    g = ganforge.load(run)
    z = g.noise(4000, seed=5)
    assert bool((z.abs() <= 1).all()) == (dist == "uniform")
    assert torch.equal(g.sample(16, seed=5), g.generate(z[:16]))  # sampling uses that noise


def test_z_dist_is_checked():
    with pytest.raises(ConfigError, match=r"^model\.z_dist: 'gaussian' is not allowed; choose one of: normal, uniform"):
        resolve(None, ["model.z_dist=gaussian"])


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_latent_inpainting_starts_from_the_runs_noise(dist, tiny_overrides, tmp_path):
    from ganforge.tasks.inpaint.latent import LatentInpainter

    run = ganforge.train(
        overrides=[*tiny_overrides, f"model.z_dist={dist}", "train.steps=1", "train.minutes=null", "eval.every_kimg=0"],
        runs_dir=tmp_path,
    )
    z = LatentInpainter.from_run(run)._initial_latents(2, 4, seed=5)  # [2 images, 4 restarts, z_dim]
    old = torch.cat([torch.randn(1, 8, generator=torch.Generator().manual_seed(5 * 1_000_003 + r)) for r in range(4)])
    assert torch.equal(z[0], z[1])  # the same starting points for every image
    if dist == "normal":
        assert torch.equal(z[0], old)  # the stream the search always used
    else:
        assert z.min() >= -1 and z.max() <= 1 and not torch.equal(z[0], old)
