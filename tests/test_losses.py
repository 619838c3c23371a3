"""Each loss against a value computed by hand from its textbook definition."""
import math

import pytest
import torch

from ganforge.losses import LOSSES, gradient_penalty, r1_penalty

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
    "wgan-gp": (mean(FAKE) - mean(REAL), -mean(FAKE)),
    "lsgan": (0.5 * mean([(r - 1) ** 2 for r in REAL]) + 0.5 * mean([f**2 for f in FAKE]),
              0.5 * mean([(f - 1) ** 2 for f in FAKE])),
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
    expected = mean([-(t * math.log(sig(x)) + (1 - t) * math.log(1 - sig(x))) for x in REAL]) + \
        mean([-math.log(1 - sig(x)) for x in FAKE])
    assert d_logistic_smoothed(r, f, 0.1).item() == pytest.approx(expected, rel=1e-12)
    assert d_logistic_smoothed(r, f, 0.0).item() == pytest.approx(EXPECTED["minimax"][0], rel=1e-12)
