"""The collapse watchdog: notices the classic ways a GAN run fails and says so in plain words.

It checks cheap signals every ``check_every`` steps (non-finite values, a dominating discriminator, a
vanishing generator gradient) and each in-training evaluation (a rising FID, a drop in class coverage);
see :class:`Watchdog`. A symptom must persist for ``patience`` steps (evaluation symptoms count at once).
The trainer decides what to do with an :class:`Event` (``watchdog.action``): warn, roll back to the last
healthy checkpoint with lower learning rates, or stop with the diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ganforge.config import Section, choice, positive
from ganforge.errors import ConfigError


@dataclass
class WatchdogConfig(Section):
    enabled: bool = True  # watch for collapse and divergence while training
    action: str = "rollback"  # warn | rollback (to the last good checkpoint, lower the learning rates) | stop
    patience: int = 200  # steps a symptom must persist before it counts
    d_fake_min: float = 0.02  # D(G(z)) below this (D dominates) ...
    d_real_min: float = 0.98  # ... while D(x) is above this
    g_grad_min: float = 1e-4  # generator gradient norm below this = vanishing
    fid_rise: float = 1.5  # in-training FID above this factor x the best so far
    coverage_drop: int = 2  # classes covered falling this many below the best so far
    lr_factor: float = 0.25  # learning rates are multiplied by this on each rollback (only D's when D dominates)
    max_rollbacks: int = 3  # then stop with a diagnosis
    switch_minimax: bool = True  # when D dominates a minimax run, a rollback also moves G to the non-saturating loss
    check_every: int = 10  # steps between checks of the cheap signals

    def check(self, key: str = "watchdog") -> None:
        choice(f"{key}.action", self.action, ["warn", "rollback", "stop"])
        for k in ("patience", "max_rollbacks", "check_every"):
            positive(f"{key}.{k}", getattr(self, k))
        if not 0 < self.lr_factor < 1:
            raise ConfigError(f"{key}.lr_factor: expected a value in (0, 1), got {self.lr_factor}")
        if self.fid_rise <= 1:
            raise ConfigError(f"{key}.fid_rise: expected a factor > 1, got {self.fid_rise}")


ADVICE = {
    "nonfinite": "lower the learning rates, or use a bounded loss (loss.name=hinge) with model.d_norm=spectral",
    "d_dominates": "weaken D or strengthen G: lower d_optim.lr, add loss.r1_gamma, model.d_norm=spectral, "
    "augment.policy=translation,cutout for small data, or loss.label_smoothing=0.1",
    "g_vanishing": "use the non-saturating or hinge loss instead of minimax, or lower d_optim.lr",
    "fid_rise": "training got worse: lower the learning rates or keep the 'best' checkpoint "
    "(ganforge sample --checkpoint best)",
    "coverage_drop": "mode collapse: try model.mbstd=true, augment.policy, loss.r1_gamma, or a lower g_optim.lr",
}


@dataclass
class Event:
    """A symptom found at ``step``: its ``kind`` (see :class:`Watchdog`) and a plain-words ``message``."""

    kind: str
    step: int
    message: str

    def __str__(self) -> str:
        return f"[watchdog] step {self.step}: {self.message}"


class Watchdog:
    """Watches a run's statistics and evaluations for these symptoms:

    * ``nonfinite``     a loss or a weight became NaN/inf (acts at once);
    * ``d_dominates``   D(x) stays near 1 and D(G(z)) near 0: the discriminator has won and the
                        generator gets no useful gradient (logistic and hinge losses);
    * ``g_vanishing``   the generator's gradient norm stays near zero;
    * ``fid_rise``      the in-training FID rose well above the best seen so far;
    * ``coverage_drop`` the generator draws fewer classes than it did (mode collapse).
    """

    def __init__(self, cfg, loss_name: str):
        self.cfg = cfg
        self.loss_name = loss_name
        self.watch_domination = loss_name in ("minimax", "non-saturating", "hinge")
        self.dom_since: Optional[int] = None
        self.vanish_since: Optional[int] = None
        self.best_fid: Optional[float] = None
        self.best_covered: Optional[int] = None
        self.rollbacks = 0
        self.loss_override: Optional[str] = None  # set when a rollback replaced G's minimax loss

    # ---- cheap signals --------------------------------------------------------------------
    def observe_step(self, step: int, stats: Dict[str, float]) -> Optional[Event]:
        bad = [k for k, v in stats.items() if not math.isfinite(v)]
        if bad:
            return Event(
                "nonfinite",
                step,
                f"{', '.join(bad)} became NaN/inf; the run has diverged. Advice: {ADVICE['nonfinite']}",
            )
        c = self.cfg
        advice = ADVICE["d_dominates"]
        if self.loss_name == "minimax":
            advice = (
                "the saturating minimax loss gives G almost no gradient once D wins: use "
                "loss.name=non-saturating (the standard fix, from the same paper); or " + advice
            )
        if self.watch_domination and "d_fake" in stats:
            dominated = stats["d_fake"] < c.d_fake_min and stats["d_real"] > c.d_real_min
            self.dom_since = (self.dom_since if self.dom_since is not None else step) if dominated else None
            if dominated and step - self.dom_since >= c.patience:
                since = self.dom_since
                self.dom_since = None
                return Event(
                    "d_dominates",
                    step,
                    f"the discriminator has won since step {since}: D(x)={stats['d_real']:.3f}, "
                    f"D(G(z))={stats['d_fake']:.3f}, so the generator learns nothing and its samples "
                    f"stop improving. Advice: {advice}",
                )
        if "g_grad" in stats:
            vanishing = stats["g_grad"] < c.g_grad_min
            self.vanish_since = (self.vanish_since if self.vanish_since is not None else step) if vanishing else None
            if vanishing and step - self.vanish_since >= c.patience:
                since = self.vanish_since
                self.vanish_since = None
                return Event(
                    "g_vanishing",
                    step,
                    f"the generator's gradient has been near zero (norm {stats['g_grad']:.2e}) since step "
                    f"{since}. Advice: {ADVICE['g_vanishing']}",
                )
        return None

    # ---- evaluation signals --------------------------------------------------------------
    def observe_eval(
        self, step: int, fid: Optional[float] = None, classes_covered: Optional[int] = None
    ) -> Optional[Event]:
        c = self.cfg
        event = None
        if fid is not None and math.isfinite(fid):
            if self.best_fid is not None and fid > c.fid_rise * self.best_fid:
                event = Event(
                    "fid_rise",
                    step,
                    f"FID rose to {fid:.2f}, more than {c.fid_rise:g}x the best so far "
                    f"({self.best_fid:.2f}). Advice: {ADVICE['fid_rise']}",
                )
            self.best_fid = fid if self.best_fid is None else min(self.best_fid, fid)
        if classes_covered is not None:
            if self.best_covered is not None and classes_covered <= self.best_covered - c.coverage_drop:
                event = event or Event(
                    "coverage_drop",
                    step,
                    f"the generator now draws {classes_covered} classes, down from {self.best_covered}. "
                    f"Advice: {ADVICE['coverage_drop']}",
                )
            self.best_covered = (
                classes_covered if self.best_covered is None else max(self.best_covered, classes_covered)
            )
        return event

    def healthy(self) -> bool:
        """No symptom building up right now (used to mark checkpoints safe to roll back to)."""
        return self.dom_since is None and self.vanish_since is None

    def reset_symptoms(self) -> None:
        self.dom_since = self.vanish_since = None

    def state_dict(self) -> Dict[str, Any]:
        return {
            "dom_since": self.dom_since,
            "vanish_since": self.vanish_since,
            "best_fid": self.best_fid,
            "best_covered": self.best_covered,
            "rollbacks": self.rollbacks,
            "loss_override": self.loss_override,
        }

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.dom_since, self.vanish_since = s.get("dom_since"), s.get("vanish_since")
        self.best_fid, self.best_covered = s.get("best_fid"), s.get("best_covered")
        self.rollbacks = int(s.get("rollbacks", 0))
        self.loss_override = s.get("loss_override")
        if self.loss_override:
            self.loss_name = self.loss_override
