"""Stabilisers are applied when switched on, and the watchdog notices and recovers collapse."""

import pytest
import torch

from ganforge.tasks import resolve
from ganforge.tasks.gan.trainer import GanTrainer as Trainer
from ganforge.training.parts import ema_update


def trainer(tiny, extra, data=None):
    cfg = resolve(None, tiny + ["train.steps=3"] + extra)
    return Trainer(cfg, dry_run=True, data=data)


def capture_d_inputs(tr):
    seen = []
    tr.D.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    return seen


def test_diffaugment_changes_what_d_sees(tiny_overrides):
    plain = trainer(tiny_overrides, ["model.d_norm=none"])
    aug = trainer(tiny_overrides, ["model.d_norm=none", "augment.policy=cutout"])
    a, b = capture_d_inputs(plain), capture_d_inputs(aug)
    plain.train_step(), aug.train_step()
    # same seed, same real batch: only the augmentation differs; cutout zeroes (-1 is black, 0 is grey) whole squares
    assert a[0].shape == b[0].shape
    assert not torch.equal(a[0][:16], b[0][:16])
    zeros = (b[0][:16] == 0).flatten(1).sum(1)  # no MNIST pixel maps to exactly 0: zeros are cutout
    assert zeros.min() >= 7 * 7 and zeros.max() == 14 * 14  # a 14x14 square, clipped at the border as in the paper


def test_instance_noise_is_added_and_annealed(tiny_overrides):
    clean = trainer(tiny_overrides, [])
    noisy = trainer(tiny_overrides, ["loss.instance_noise=0.5", "loss.instance_noise_steps=2"])
    a, b = capture_d_inputs(clean), capture_d_inputs(noisy)
    clean.train_step(), noisy.train_step()
    diff = b[0] - a[0]  # D's first input is the real batch in both
    assert diff.std().item() == pytest.approx(0.5, rel=0.1)
    noisy.train_step(), noisy.train_step()  # step 2: the noise has annealed to 0
    clean.train_step(), clean.train_step()
    assert torch.equal(a[-3], b[-3])


def test_label_smoothing_is_the_d_loss(tiny_overrides):
    from ganforge.losses import d_logistic, d_logistic_smoothed

    tr = trainer(tiny_overrides, ["loss.label_smoothing=0.2"])
    outs = []
    tr.D.register_forward_hook(lambda mod, args, out: outs.append(out.detach().clone()))
    s = tr.train_step()
    real, fake = outs[0], outs[1]  # D has BatchNorm: real and fake go through separately
    assert s["loss_d"] == pytest.approx(d_logistic_smoothed(real, fake, 0.2).item(), rel=1e-6)
    assert s["loss_d"] != pytest.approx(d_logistic(real, fake).item(), rel=1e-3)


def test_r1_and_gp_are_computed(tiny_overrides):
    s = trainer(tiny_overrides, ["loss.r1_gamma=10", "loss.gp_weight=1"]).train_step()
    assert s["r1"] > 0 and s["gp"] >= 0


def test_two_time_scale_learning_rates(tiny_overrides):
    tr = trainer(tiny_overrides, ["g_optim.lr=1e-4", "d_optim.lr=4e-4", "d_optim.beta1=0", "d_optim.beta2=0.9"])
    assert tr.opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert tr.opt_d.param_groups[0]["lr"] == pytest.approx(4e-4)
    assert tr.opt_d.param_groups[0]["betas"] == (0.0, 0.9)


def test_ema_warmup(tiny_overrides):
    tr = trainer(tiny_overrides, ["train.ema_decay=0.999", "train.ema_warmup=true"])
    before = [p.detach().clone() for p in tr.G_ema.parameters()]
    tr.train_step()
    # step 1 of the warm-up: decay = min(0.999, 2/11), so EMA = 2/11 * old + 9/11 * new
    for pe, p0, p in zip(tr.G_ema.parameters(), before, tr.G.parameters()):
        assert torch.allclose(pe, p0 + (p.detach() - p0) * (1 - 2 / 11), atol=1e-6)
    g = torch.nn.Linear(2, 2)
    e = torch.nn.Linear(2, 2)
    ema_update(e, g, 0.0)
    assert torch.equal(e.weight, g.weight)


def test_minibatch_std_and_spectral_norm_are_in_d(tiny_overrides):
    tr = trainer(tiny_overrides, ["model.mbstd=true", "model.d_norm=spectral"])
    names = [type(m).__name__ for m in tr.D.modules()]
    assert "MinibatchStd" in names
    assert any(hasattr(m, "parametrizations") for m in tr.D.modules())


# ---- the watchdog on a run that really collapses ------------------------------------------
# A DCGAN whose discriminator learns 50x faster than its generator (Adam lr 1e-2 vs 2e-4, the
# textbook sigmoid/BCE loss): D wins within a few dozen steps, D(G(z)) -> 0, and the samples
# freeze as grey checkerboards. Small and short so the test takes seconds.
UNSTABLE = [
    "data.limit=2048",
    "model.z_dim=16",
    "model.g_width=16",
    "model.d_width=16",
    "train.batch_size=32",
    "train.progress=false",
    "train.tensorboard=false",
    "train.log_every=20",
    "train.sample_every=100",
    "train.checkpoint_every=50",
    "train.sample_count=32",
    "train.steps=400",
    "d_optim.lr=1e-2",
    "watchdog.patience=40",
    "watchdog.check_every=10",
]


def _events(run):
    import json

    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"event"' in x]


def _fid_to_data(run, n=512):
    from ganforge.api import load_generator
    from ganforge.config import DataConfig
    from ganforge.data import load_dataset
    from ganforge.metrics import get_feature_space
    from ganforge.metrics.compute import fid

    space = get_feature_space("mnist")
    real = load_dataset(DataConfig(limit=n)).images
    fake = load_generator(run).sample_uint8(n, seed=0)
    return fid(space.extract(fake)["features"], space.extract(real)["features"])


def test_watchdog_detects_discriminator_domination(tmp_path):
    import ganforge

    run = ganforge.train(overrides=UNSTABLE + ["train.steps=120", "watchdog.action=warn"], runs_dir=tmp_path)
    kinds = [e["event"] for e in _events(run)]
    assert "d_dominates" in kinds  # fails with watchdog.enabled=false: nothing is noticed
    assert "discriminator has won" in (run / "log.txt").read_text()


def test_watchdog_stop_action_stops_with_a_diagnosis(tmp_path):
    import ganforge
    from ganforge.errors import TrainingError

    with pytest.raises(TrainingError, match=r"stopped by the watchdog at step \d+: the discriminator has won"):
        ganforge.train(overrides=UNSTABLE + ["watchdog.action=stop"], runs_dir=tmp_path)


def test_rollback_recovers_a_run_that_otherwise_ends_as_noise(tmp_path):
    import ganforge

    off = ganforge.train(overrides=UNSTABLE + ["watchdog.enabled=false"], runs_dir=tmp_path)
    on = ganforge.train(overrides=UNSTABLE, runs_dir=tmp_path)  # default action: rollback
    assert [e["event"] for e in _events(on)].count("rollback") >= 1
    fid_off, fid_on = _fid_to_data(off), _fid_to_data(on)
    # without the watchdog the samples stay noise; with it they move towards digits
    assert fid_on < 0.5 * fid_off, (fid_on, fid_off)


def test_rollback_rescues_the_saturating_minimax_loss(tmp_path):
    """Original-paper loss + a fast D: without the watchdog G never recovers (no gradient); with it, the
    rollback moves G to the non-saturating loss and the run leaves the collapse."""
    import ganforge

    o = UNSTABLE + ["loss.name=minimax"]
    off = ganforge.train(overrides=o + ["watchdog.enabled=false"], runs_dir=tmp_path)
    on = ganforge.train(overrides=o, runs_dir=tmp_path)
    msgs = [e["message"] for e in _events(on) if e["event"] == "rollback"]
    assert msgs and "non-saturating" in msgs[0]
    assert _fid_to_data(on) < 0.5 * _fid_to_data(off)
