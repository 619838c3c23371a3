"""Each loss against a value computed by hand from its textbook definition."""

import math

import pytest
import torch

from ganforge.losses import LOSSES, clip_weights, gradient_penalty, r1_penalty

REAL = [0.0, 2.0]
FAKE = [-1.0, 1.0]


def sig(t):
    return 1 / (1 + math.exp(-t))


def mean(xs):
    return sum(xs) / len(xs)


# D(x) = sigmoid(logit); definitions as written in the papers
EXPECTED = {
    "minimax": (
        mean([-math.log(sig(r)) for r in REAL]) + mean([-math.log(1 - sig(f)) for f in FAKE]),
        mean([math.log(1 - sig(f)) for f in FAKE]),  # exactly log(1 - D(G(z))), minimised by G
    ),
    "non-saturating": (
        mean([-math.log(sig(r)) for r in REAL]) + mean([-math.log(1 - sig(f)) for f in FAKE]),
        mean([-math.log(sig(f)) for f in FAKE]),
    ),
    "hinge": (mean([max(0, 1 - r) for r in REAL]) + mean([max(0, 1 + f) for f in FAKE]), -mean(FAKE)),
    "wgan": (mean(FAKE) - mean(REAL), -mean(FAKE)),  # the critic estimates E[D(x)] - E[D(G(z))]
    "wgan-gp": (mean(FAKE) - mean(REAL), -mean(FAKE)),
    "lsgan": (
        0.5 * mean([(r - 1) ** 2 for r in REAL]) + 0.5 * mean([f**2 for f in FAKE]),
        0.5 * mean([(f - 1) ** 2 for f in FAKE]),
    ),
}


def test_every_registered_loss_has_a_hand_computed_check():
    assert set(LOSSES.names()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_values(name):
    loss = LOSSES.get(name)
    r, f = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
    d_exp, g_exp = EXPECTED[name]
    assert loss.d(r, f).item() == pytest.approx(d_exp, rel=1e-12, abs=1e-12)
    assert loss.g(f).item() == pytest.approx(g_exp, rel=1e-12, abs=1e-12)


def test_minimax_saturates_where_nonsaturating_does_not():
    """With D confident the fake is fake (logit -10), minimax gives G almost no gradient."""
    f = torch.tensor([-10.0], requires_grad=True)
    LOSSES.get("minimax").g(f).backward()
    g_mm = f.grad.abs().item()
    f.grad = None
    LOSSES.get("non-saturating").g(f).backward()
    g_ns = f.grad.abs().item()
    assert g_mm < 1e-4 < 0.9 < g_ns


def test_logistic_losses_stay_finite_for_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    for name in ("minimax", "non-saturating"):
        assert torch.isfinite(LOSSES.get(name).d(big, big))
        assert torch.isfinite(LOSSES.get(name).g(big))


def test_gradient_penalty_of_linear_critic():
    # D(x) = <w, x>: the gradient is w everywhere, so the penalty is (||w|| - 1)^2 = (3 - 1)^2
    w = torch.tensor([[[[2.0, 1.0], [2.0, 0.0]]]])
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0, rel=1e-6)


def test_r1_penalty_of_linear_critic():
    w = torch.tensor([[[[2.0, 1.0], [2.0, 0.0]]]])
    real = torch.randn(3, 1, 2, 2).requires_grad_(True)
    logits = (real * w).flatten(1).sum(1)
    assert r1_penalty(logits, real).item() == pytest.approx(9.0, rel=1e-6)


def test_one_sided_label_smoothing_matches_bce():
    from ganforge.losses import d_logistic_smoothed

    r, f = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
    t = 0.9
    expected = mean([-(t * math.log(sig(x)) + (1 - t) * math.log(1 - sig(x))) for x in REAL]) + mean(
        [-math.log(1 - sig(x)) for x in FAKE]
    )
    assert d_logistic_smoothed(r, f, 0.1).item() == pytest.approx(expected, rel=1e-12)
    assert d_logistic_smoothed(r, f, 0.0).item() == pytest.approx(EXPECTED["minimax"][0], rel=1e-12)


def test_clip_weights_clamps_every_parameter_in_place():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.linspace(-1, 1, 12).view(4, 3))
    before = [p.detach().clone() for p in net.parameters()]
    clip_weights(net, 0.05)
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p, b.clamp(-0.05, 0.05))
    assert net[0].weight.max().item() == pytest.approx(0.05) and net[0].weight.min().item() == pytest.approx(-0.05)


WGAN_RUN = [
    "loss.name=wgan",
    "model.d_norm=none",
    "train.n_critic=2",
    "train.steps=3",
    "train.minutes=null",
    "d_optim.name=rmsprop",
    "d_optim.lr=0.05",
    "eval.every_kimg=0",
]


@pytest.mark.parametrize("clip", [0.01, 0.002])
def test_wgan_training_keeps_every_critic_weight_within_the_clip(clip, tiny_overrides, tmp_path):
    import ganforge
    from ganforge import runs

    # a learning rate far too large for the clip: without clipping the critic's weights leave the range at once
    run = ganforge.train(overrides=[*tiny_overrides, *WGAN_RUN, f"loss.clip={clip}"], runs_dir=tmp_path)
    critic = runs.open_checkpoint(run).weights("discriminator")
    c = torch.tensor(clip)  # float32, as the weights
    assert critic and all(w.abs().max() <= c for w in critic.values())
    assert any(w.abs().max() == c for w in critic.values())  # the bound is reached


def test_wgan_without_clipping_would_leave_the_range(tiny_overrides, tmp_path):
    """The same run with a critic loss that is not wgan: the weights leave [-0.01, 0.01] (so the test above
    tests the clipping)."""
    import ganforge
    from ganforge import runs

    run = ganforge.train(overrides=[*tiny_overrides, *WGAN_RUN, "loss.name=wgan-gp"], runs_dir=tmp_path)
    critic = runs.open_checkpoint(run).weights("discriminator")
    assert max(w.abs().max().item() for w in critic.values()) > 0.01


def test_wgan_refuses_batchnorm_in_the_critic():
    from ganforge.errors import ConfigError
    from ganforge.tasks import resolve

    with pytest.raises(ConfigError, match=r"^model\.d_norm: batch norm in the critic of wgan"):
        resolve(None, ["loss.name=wgan"])
    with pytest.raises(ConfigError, match=r"^loss\.clip: expected a positive number"):
        resolve(None, ["loss.name=wgan", "model.d_norm=none", "loss.clip=0"])


def test_wgan_preset_has_the_papers_settings():
    from ganforge.tasks import resolve

    cfg = resolve("wgan")
    assert (cfg.loss.name, cfg.loss.clip, cfg.loss.gp_weight, cfg.model.d_norm) == ("wgan", 0.01, 0.0, "none")
    for o in (cfg.g_optim, cfg.d_optim):
        assert (o.name, o.lr) == ("rmsprop", 5e-5)
    assert cfg.train.n_critic == 5 and cfg.train.threads == 1 and cfg.train.has_budget()
