"""The watchdog's rules on synthetic signals (the training-level tests are in test_stability.py)."""

import math

from ganforge.training.watchdog import Watchdog, WatchdogConfig


def feed(w, steps, **stats):
    events = []
    for s in steps:
        e = w.observe_step(s, dict(stats))
        if e:
            events.append(e)
    return events


def test_nonfinite_is_reported_at_once():
    w = Watchdog(WatchdogConfig(), "non-saturating")
    e = w.observe_step(7, {"loss_d": math.nan, "loss_g": 1.0})
    assert e.kind == "nonfinite" and "loss_d" in e.message and e.step == 7


def test_domination_needs_patience_and_resets():
    w = Watchdog(WatchdogConfig(patience=50, check_every=10), "non-saturating")
    assert feed(w, range(10, 60, 10), d_real=0.999, d_fake=0.001) == []  # 40 steps: not yet
    assert not w.healthy()
    ev = feed(w, [60], d_real=0.999, d_fake=0.001)
    assert len(ev) == 1 and ev[0].kind == "d_dominates" and "discriminator has won since step 10" in ev[0].message
    # a healthy reading resets the count
    w2 = Watchdog(WatchdogConfig(patience=50), "non-saturating")
    feed(w2, range(10, 50, 10), d_real=0.999, d_fake=0.001)
    feed(w2, [50], d_real=0.7, d_fake=0.3)
    assert w2.healthy()
    assert feed(w2, range(60, 100, 10), d_real=0.999, d_fake=0.001) == []


def test_domination_is_not_judged_for_wasserstein():
    w = Watchdog(WatchdogConfig(patience=10), "wgan-gp")
    assert feed(w, range(0, 100, 10), d_real=1.0, d_fake=0.0) == []


def test_vanishing_generator_gradient():
    w = Watchdog(WatchdogConfig(patience=20, g_grad_min=1e-4), "minimax")
    ev = feed(w, range(0, 40, 10), d_real=0.6, d_fake=0.4, g_grad=1e-7)
    assert ev and ev[0].kind == "g_vanishing"


def test_fid_rise_and_coverage_drop():
    w = Watchdog(WatchdogConfig(fid_rise=1.5, coverage_drop=2), "non-saturating")
    assert w.observe_eval(100, fid=40.0, classes_covered=10) is None
    assert w.observe_eval(200, fid=20.0, classes_covered=10) is None
    e = w.observe_eval(300, fid=31.0, classes_covered=10)
    assert e.kind == "fid_rise" and "best so far (20.00)" in e.message
    e = w.observe_eval(400, fid=21.0, classes_covered=7)
    assert e.kind == "coverage_drop" and "7 classes, down from 10" in e.message


def test_state_round_trip():
    w = Watchdog(WatchdogConfig(patience=50), "non-saturating")
    feed(w, [10, 20], d_real=0.999, d_fake=0.001)
    w.observe_eval(5, fid=3.0)
    w2 = Watchdog(WatchdogConfig(patience=50), "non-saturating")
    w2.load_state_dict(w.state_dict())
    assert w2.state_dict() == w.state_dict()


def test_minimax_domination_advises_the_non_saturating_loss():
    w = Watchdog(WatchdogConfig(patience=20), "minimax")
    ev = feed(w, range(0, 40, 10), d_real=0.999, d_fake=0.001)
    assert ev and "loss.name=non-saturating" in ev[0].message
