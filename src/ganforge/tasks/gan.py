"""The ``gan`` task: generate images (unconditional or class-conditional GANs).

Config sections: ``model`` (:class:`ModelConfig`), ``loss`` (:class:`LossConfig`), ``augment``
(DiffAugment), ``eval`` (in-training FID) and ``watchdog`` (collapse detection), plus the shared ones.

Training (:class:`GanTrainer`): one step = ``train.n_critic`` discriminator updates, then one
generator update. With ``n_critic == 1`` the fake batch drawn for the D update is reused for the G
update (one G forward per step, as in the DCGAN reference). During the G update the
discriminator's parameters do not require grad, so no time is spent on gradients that would be
discarded. When D has no BatchNorm, real and fake go through D in one forward pass. With
``loss.name=wgan`` (Arjovsky et al. 2017) every critic parameter is clamped to [-loss.clip, loss.clip]
after each critic update. The noise z is ``model.z_dist`` (normal, or uniform in [-1, 1]) in training,
in the fixed sample and evaluation noise and in :meth:`GeneratorHandle.noise`. All randomness
comes from seeded generators whose state is checkpointed, so on CPU a run resumed from a checkpoint
ends with the same weights as one that was never interrupted.

Networks in a checkpoint: ``generator``, ``generator_ema`` (the exponential moving average used for
samples) and ``discriminator``. Loading a run gives a :class:`GeneratorHandle`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge import runs
from ganforge.config import SHARED_SECTIONS, Config, EvalConfig, Section, choice, nonneg, positive
from ganforge.errors import ConfigError, LabelError, ModelBuildError, TrainingError
from ganforge.imaging import make_grid_uint8, to_uint8
from ganforge.losses import LOSSES, clip_weights, d_logistic_smoothed, gradient_penalty, r1_penalty
from ganforge.models import MODELS, build_models
from ganforge.tasks.base import TASKS, ExportNet, Handle, Task
from ganforge.training.augment import AugmentConfig, diff_augment
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import plot_curves
from ganforge.training.parts import check_finite, has_batchnorm
from ganforge.training.watchdog import Event, Watchdog, WatchdogConfig

# ------------------------------------------------------------------------------------------
# the noise


def _normal(n: int, dim: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randn(n, dim, generator=generator, device=device)


def _uniform(n: int, dim: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, dim, generator=generator, device=device).mul_(2.0).sub_(1.0)  # U[0, 1) -> [-1, 1)


Z_DISTRIBUTIONS = {"normal": _normal, "uniform": _uniform}  # model.z_dist -> draw(n, z_dim, generator, device)


def draw_z(n: int, z_dim: int, dist: str, generator: torch.Generator, device=None) -> torch.Tensor:
    """``n`` latent vectors [n, z_dim] from ``model.z_dist`` (``normal`` or ``uniform`` in [-1, 1]), drawn from
    ``generator`` (on its device unless ``device`` is given)."""
    return Z_DISTRIBUTIONS[dist](n, z_dim, generator, device if device is not None else generator.device)


# ------------------------------------------------------------------------------------------
# config sections


@dataclass
class ModelConfig(Section):
    arch: str = "dcgan"  # registry name: dcgan | mlp | resnet (ganforge.models.MODELS)
    z_dim: int = 100
    z_dist: str = "normal"  # the noise G is fed: normal (standard Gaussian) | uniform (in [-1, 1])
    g_width: Optional[int] = None  # generator base width; None = family default (dcgan 64, resnet 64, mlp 256)
    d_width: Optional[int] = None  # discriminator base width; None = family default (dcgan 64, resnet 64, mlp 256)
    g_norm: str = "batch"  # batch | none
    d_norm: str = "batch"  # batch | none | spectral
    conditional: Union[bool, str] = False  # class-conditional G and D (labels from the dataset) | auto: when the data has labels
    num_classes: int = 0  # set from the dataset when conditional (0 = unconditional)
    g_cond: str = "cbn"  # how G sees the label: cbn (conditional BatchNorm) | embed (label embedding joined to z)
    d_cond: str = "projection"  # how D sees the label: projection (Miyato & Koyama 2018) | acgan (auxiliary classifier)
    mbstd: bool = False  # minibatch standard-deviation feature in D (Karras et al. 2018)
    pad: int = 0  # dcgan: run G and D at the image size + 2 pad (G crops its border, D frames its input in black)

    def check(self, key: str = "model") -> None:
        choice(f"{key}.arch", self.arch, MODELS.names())
        positive(f"{key}.z_dim", self.z_dim)
        choice(f"{key}.z_dist", self.z_dist, list(Z_DISTRIBUTIONS))
        positive(f"{key}.g_width", self.g_width, allow_none=True)
        positive(f"{key}.d_width", self.d_width, allow_none=True)
        choice(f"{key}.g_norm", self.g_norm, ["batch", "none"])
        choice(f"{key}.d_norm", self.d_norm, ["batch", "none", "spectral"])
        choice(f"{key}.g_cond", self.g_cond, ["cbn", "embed"])
        choice(f"{key}.d_cond", self.d_cond, ["projection", "acgan"])
        if isinstance(self.conditional, str) and self.conditional != "auto":
            raise ConfigError(f"{key}.conditional: expected true, false or auto, got {self.conditional!r}")
        if self.num_classes < 0:
            raise ConfigError(f"{key}.num_classes: expected 0 or more, got {self.num_classes}")
        nonneg(f"{key}.pad", self.pad)
        if self.pad and self.arch != "dcgan":
            raise ConfigError(f"{key}.pad: only the dcgan architecture can pad, got model.arch={self.arch}")


@dataclass
class LossConfig(Section):
    name: str = "non-saturating"  # minimax | non-saturating | hinge | wgan | wgan-gp | lsgan (ganforge.losses.LOSSES)
    gp_weight: Optional[float] = None  # gradient penalty weight; None -> 10 for wgan-gp, else 0
    clip: float = 0.01  # wgan only: every critic weight is clamped to [-clip, clip] after each critic step
    r1_gamma: float = 0.0  # R1 penalty weight on real images (0 = off)
    r1_every: int = 1  # apply R1 every k discriminator steps (lazy regularisation)
    label_smoothing: float = 0.0  # one-sided: real targets 1 - s for the logistic D loss (Salimans et al. 2016)
    instance_noise: float = 0.0  # std of Gaussian noise added to D's inputs (real and fake)
    instance_noise_steps: int = 0  # anneal the noise linearly to 0 over this many steps (0 = constant)
    acgan_weight: float = 1.0  # weight of the auxiliary classification loss (d_cond=acgan)

    def check(self, key: str = "loss") -> None:
        choice(f"{key}.name", self.name, LOSSES.names())
        if self.gp_weight is None:
            self.gp_weight = 10.0 if self.name == "wgan-gp" else 0.0
        nonneg(f"{key}.gp_weight", self.gp_weight)
        positive(f"{key}.clip", self.clip)
        nonneg(f"{key}.r1_gamma", self.r1_gamma)
        positive(f"{key}.r1_every", self.r1_every)
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"{key}.label_smoothing: expected a value in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing > 0 and self.name not in ("minimax", "non-saturating"):
            raise ConfigError(
                f"{key}.label_smoothing: applies to the logistic losses (minimax, non-saturating), not {self.name!r}"
            )
        nonneg(f"{key}.instance_noise", self.instance_noise)
        nonneg(f"{key}.instance_noise_steps", self.instance_noise_steps)
        nonneg(f"{key}.acgan_weight", self.acgan_weight)
        if self.name == "wgan-gp" and self.gp_weight == 0:
            raise ConfigError(f"{key}.gp_weight: wgan-gp needs a gradient penalty > 0 (10 is standard)")


# ------------------------------------------------------------------------------------------
# training


class GanTrainer(TrainingLoop):
    """Trains a generator against a discriminator (see the module doc); ``run()`` returns the run folder."""

    # ---- set-up ----------------------------------------------------------------------------
    def build(self) -> None:
        cfg, t, m = self.cfg, self.cfg.train, self.cfg.model
        self.labels: Optional[torch.Tensor] = None
        self._auto = m.conditional == "auto"
        if self._auto:  # conditional when the data has labels of 2 or more classes (saved resolved)
            m.conditional = self.data.labels is not None and len(getattr(self.data, "class_names", []) or []) >= 2
        if m.conditional:
            k = len(getattr(self.data, "class_names", []) or [])
            if self.data.labels is None or k < 2:
                raise ConfigError(
                    f"model.conditional=true needs labelled data with at least 2 classes; {self.data.name!r} has "
                    f"{'no labels' if self.data.labels is None else f'{k} class'} (an image folder needs one subfolder per class)"
                )
            if m.num_classes not in (0, k):
                raise ConfigError(f"model.num_classes={m.num_classes} but the dataset has {k} classes; leave it at 0")
            m.num_classes = k
            self.labels = self.data.labels.to(self.device)
        elif m.num_classes:
            raise ConfigError("model.num_classes is set but model.conditional=false; set model.conditional=true")
        self.K = m.num_classes

        try:
            self.G, self.D = build_models(m, self.img_shape)
        except ModelBuildError as e:
            raise ConfigError(f"model.arch={m.arch}: {e}") from None
        # channels-last convolutions: ~15% faster on CPU (measured: the default DCGAN, 1 thread, batch 64)
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.G.to(self.device, memory_format=self.memory_format)
        self.D.to(self.device, memory_format=self.memory_format)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.nets.update(generator=self.G, discriminator=self.D, generator_ema=self.G_ema)
        self.aux = bool(getattr(self.D, "aux", False))
        self.joint_d = not has_batchnorm(self.D) and not self.aux and not m.mbstd  # mbstd groups must not mix real and fake
        self.loss = LOSSES.get(cfg.loss.name)
        self.clip = cfg.loss.clip if cfg.loss.name == "wgan" else 0.0  # weight clipping of the original WGAN
        self.opt_g = self.optimizer(self.G, cfg.g_optim)
        self.opt_d = self.optimizer(self.D, cfg.d_optim)
        self.optims.update(g=self.opt_g, d=self.opt_d)
        self.G_fwd, self.D_fwd = self.wrap(self.G), self.wrap(self.D)

        self.fixed_z = draw_z(t.sample_count, m.z_dim, m.z_dist, torch.Generator().manual_seed(t.seed + 3)).to(self.device)
        self.fixed_y = (torch.arange(t.sample_count) % self.K).to(self.device) if self.K else None
        self.d_steps = 0
        self.watchdog = Watchdog(cfg.watchdog, cfg.loss.name) if cfg.watchdog.enabled else None
        self.evaluator = self._make_evaluator()  # in a dry run too: it checks what the real run needs (weights)

    def _make_evaluator(self):
        """The in-training evaluator (FID/KID/coverage), or None when evaluation is off."""
        e = self.cfg.eval
        features = e.features
        if features == "auto":
            features = "mnist" if self.img_shape[0] == 1 else "none"
        if features == "none" or e.every_kimg <= 0:
            return None
        from ganforge.errors import EvalError
        from ganforge.metrics.training import TrainingEvaluator

        ev = TrainingEvaluator(self.data, features=features, num_samples=e.samples, seed=self.cfg.train.seed,
                               every_kimg=e.every_kimg, device=str(self.device), inception_weights=e.inception_weights)
        try:
            ev.space  # load the extractor now: missing Inception weights fail before training starts
        except EvalError as err:
            raise ConfigError(f"eval.features={features}: {err} (or set eval.features=none)") from None
        # class coverage is only meaningful when the classifier knows the data's classes (MNIST digits)
        self.coverage_meaningful = features == "mnist" and self.cfg.data.dataset in ("mnist-embedded", "mnist")
        return ev

    def class_names(self) -> List[str]:
        return list(getattr(self.data, "class_names", []) or [])

    def run_suffix(self) -> str:
        return self.cfg.model.arch + ("-cond" if self.cfg.model.conditional else "")

    # ---- what goes into the networks --------------------------------------------------------
    def _z(self, n: int) -> torch.Tensor:
        return draw_z(n, self.cfg.model.z_dim, self.cfg.model.z_dist, self.noise_gen, self.device)

    def _fake_labels(self, n: int) -> Optional[torch.Tensor]:
        """Labels for generated images, drawn with the data's class frequencies."""
        if not self.K:
            return None
        return self.labels[torch.randint(self.labels.shape[0], (n,), device=self.device, generator=self.noise_gen)]

    def _g(self, z, y):
        out = self.G_fwd(z, y) if self.K else self.G_fwd(z)
        # under autocast G returns bfloat16; D sees float32 images from both sources, so a
        # compiled D is specialised once (not once per input dtype) and DiffAugment/noise stay float32
        return out.float() if self.amp else out

    def _d(self, x, y):
        """(real/fake logits [N], class logits [N, K] or None) for what D is shown."""
        if self.aux:
            r, c = self.D.forward_aux(x)
            return r.float(), c.float()
        return (self.D_fwd(x, y) if self.K else self.D_fwd(x)).float(), None

    def _d_in(self, x: torch.Tensor) -> torch.Tensor:
        """D's view of an image batch: DiffAugment, then instance noise (both from the seeded generator)."""
        a, lo = self.cfg.augment, self.cfg.loss
        if a.policy:
            x = diff_augment(x, a.policy, a.translation, a.cutout, generator=self.noise_gen)
        std = lo.instance_noise
        if std > 0 and lo.instance_noise_steps > 0:
            std *= max(0.0, 1.0 - self.step / lo.instance_noise_steps)
        if std > 0:
            x = x + std * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=self.noise_gen)
        return x

    def _d_loss(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        s = self.cfg.loss.label_smoothing
        return d_logistic_smoothed(r, f, s) if s > 0 else self.loss.d(r, f)

    # ---- one step ---------------------------------------------------------------------------
    def train_step(self) -> Dict[str, float]:
        cfg, B = self.cfg, self.cfg.train.batch_size
        lo = cfg.loss
        stats: Dict[str, float] = {}
        reuse = cfg.train.n_critic == 1
        for _ in range(cfg.train.n_critic):
            real, idx = self.real_batch(self.memory_format)
            y_real = self.labels[idx] if self.K else None
            y_fake = self._fake_labels(B)
            with self.autocast():
                if reuse:
                    fake = self._g(self._z(B), y_fake)
                else:
                    with torch.no_grad():
                        fake = self._g(self._z(B), y_fake)
                r1_now = lo.r1_gamma > 0 and self.d_steps % lo.r1_every == 0
                if r1_now:
                    real.requires_grad_(True)
                d_real, d_fake = self._d_in(real), self._d_in(fake.detach())
                if self.joint_d and not r1_now:  # one pass through D for both halves
                    y = torch.cat([y_real, y_fake]) if self.K else None
                    r, f = self._d(torch.cat([d_real, d_fake]), y)[0].split([B, B])
                    cr = cf = None
                else:
                    (r, cr), (f, cf) = self._d(d_real, y_real), self._d(d_fake, y_fake)
                loss_d = self._d_loss(r, f)
                total_d = loss_d
                if self.aux:
                    cls = F.cross_entropy(cr, y_real) + F.cross_entropy(cf, y_fake)
                    total_d = total_d + lo.acgan_weight * cls
                    stats["d_cls"] = cls.item()
                if lo.gp_weight > 0:
                    gp = gradient_penalty(lambda x: self._d(x, y_real)[0], real, fake.float(), generator=self.noise_gen)
                    total_d = total_d + lo.gp_weight * gp
                    stats["gp"] = gp.item()
                if r1_now:
                    r1 = r1_penalty(r, real)
                    total_d = total_d + 0.5 * lo.r1_gamma * lo.r1_every * r1
                    stats["r1"] = r1.item()
            self.opt_d.zero_grad(set_to_none=True)
            total_d.backward()
            self.opt_d.step()
            if self.clip:
                clip_weights(self.D, self.clip)
            self.d_steps += 1
            self.images_seen += B
        d_trainable = [p for p in self.D.parameters() if p.requires_grad]  # not blocks frozen by freeze_d
        for p in d_trainable:
            p.requires_grad_(False)
        with self.autocast():
            if not reuse:
                y_fake = self._fake_labels(B)
                fake = self._g(self._z(B), y_fake)
            f_g, cf_g = self._d(self._d_in(fake), y_fake)
            loss_g = self.loss.g(f_g)
            total_g = loss_g + (lo.acgan_weight * F.cross_entropy(cf_g, y_fake) if self.aux else 0.0)
        self.opt_g.zero_grad(set_to_none=True)
        total_g.backward()
        self.step += 1
        if self.watchdog and self.step % self.cfg.watchdog.check_every == 0:
            norms = [p.grad.detach().norm() for p in self.G.parameters() if p.grad is not None]
            stats["g_grad"] = torch.stack(norms).norm().item()
        self.opt_g.step()
        for p in d_trainable:
            p.requires_grad_(True)
        self.update_ema(self.G_ema, self.G)
        with torch.no_grad():
            stats.update(
                loss_d=loss_d.item(),
                loss_g=loss_g.item(),
                d_real=torch.sigmoid(r.detach()).mean().item(),
                d_fake=torch.sigmoid(f.detach()).mean().item(),
            )
        return stats

    # ---- outputs --------------------------------------------------------------------------
    @torch.no_grad()
    def _generate_uint8(self, z: torch.Tensor, y: Optional[torch.Tensor], chunk: int) -> torch.Tensor:
        """uint8 images of the EMA generator for latents ``z`` (and labels ``y``), ``chunk`` at a time."""
        out = []
        for i in range(0, z.shape[0], chunk):
            zc = z[i : i + chunk]
            out.append(to_uint8(self.G_ema(zc, y[i : i + chunk]) if self.K else self.G_ema(zc)).cpu())
        return torch.cat(out)

    def sample_fixed(self) -> torch.Tensor:
        return self._generate_uint8(self.fixed_z, self.fixed_y, 256)

    def sample_grid(self) -> np.ndarray:
        return make_grid_uint8(self.sample_fixed(), nrow=self.K or None)  # conditional: one column per class

    def _plot(self) -> None:
        plot_curves(self.metrics.records, self.run_dir / "loss_curve.png")

    def _extra_state(self) -> Dict[str, Any]:
        return {
            "d_steps": self.d_steps,
            "watchdog": self.watchdog.state_dict() if self.watchdog else {},
            "evaluator": self.evaluator.state_dict() if self.evaluator else {},
        }

    def _restore_extra(self, s: Dict[str, Any], full: bool) -> None:
        self.d_steps = int(s["d_steps"])
        if not full:  # a rollback keeps the watchdog's and evaluator's own history
            return
        if self.watchdog and s.get("watchdog"):
            self.watchdog.load_state_dict(s["watchdog"])
            if self.watchdog.loss_override:
                self.loss = LOSSES.get(self.watchdog.loss_override)
        if self.evaluator and s.get("evaluator"):
            self.evaluator.load_state_dict(s["evaluator"])

    def _after_save(self, weights, model_config, state, meta) -> None:
        if self._rollback_on() and self.watchdog.healthy():
            runs.save_checkpoint(self.run_dir / "checkpoints" / "good", weights, model_config, state, meta)

    # ---- in-training evaluation ---------------------------------------------------------
    def _eval_samples(self, n: int) -> torch.Tensor:
        """n images from the EMA generator with fixed noise (so evaluations differ only by the weights)."""
        gen = torch.Generator().manual_seed(self.cfg.train.seed + 4)
        z = draw_z(n, self.cfg.model.z_dim, self.cfg.model.z_dist, gen).to(self.device)
        y = (torch.arange(n) % self.K).to(self.device) if self.K else None
        return self._generate_uint8(z, y, 500)

    def _evaluate(self) -> None:
        kimg = self.images_seen / 1000
        res = self.evaluator(self._eval_samples, kimg=kimg)
        covered = res.get("classes_covered") if self.coverage_meaningful else None
        rec = {"step": self.step, "kimg": round(kimg, 3), "fid": round(res["fid"], 4), "kid": round(res["kid"], 6),
               "eval_features": res["features"], "eval_samples": res["num_samples"], "eval_s": res["seconds"]}
        if covered is not None:
            rec.update(classes_covered=covered, kl_class=round(res["kl_class"], 5))
        self.metrics.append(rec)
        self.tb.scalars({f"eval/{k}": v for k, v in rec.items() if isinstance(v, (int, float)) and k != "step"},
                        self.step)
        cov = f", classes covered {covered}/10, KL to the real class mix {res['kl_class']:.3f}" if covered is not None else ""
        self.log(f"eval at {kimg:.0f} kimg: FID {res['fid']:.2f} ({res['features']} features, {res['num_samples']} "
                 f"samples){cov}{' (best so far)' if res['is_best'] else ''}")
        if res["is_best"]:
            self.save("best")
        if self.watchdog:
            event = self.watchdog.observe_eval(self.step, res["fid"], covered)
            if event:
                self._act(event)

    # ---- the watchdog ---------------------------------------------------------------------
    def _rollback_on(self) -> bool:
        return self.watchdog is not None and self.cfg.watchdog.action == "rollback"

    def _check_step(self, stats: Dict[str, float]) -> None:
        if self.watchdog is None:
            check_finite(stats, self.step, "try lower learning rates (g_optim.lr, d_optim.lr) or a more stable loss "
                                           "(loss.name=hinge)")
            return
        finite = all(math.isfinite(v) for v in stats.values())
        if finite and self.step % self.cfg.watchdog.check_every != 0:
            return
        event = self.watchdog.observe_step(self.step, stats)
        if event:
            self._act(event)

    def _act(self, event: Event) -> None:
        w = self.cfg.watchdog
        self.log(str(event))
        self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3), "event": event.kind,
                             "message": event.message})
        if w.action == "warn" and event.kind != "nonfinite":
            return
        good = self.run_dir / "checkpoints" / "good"
        if w.action == "stop" or w.action == "warn" or self.watchdog.rollbacks >= w.max_rollbacks \
                or not (good / "meta.json").is_file():
            why = "" if w.action != "rollback" else (
                f" after {self.watchdog.rollbacks} rollback(s)" if self.watchdog.rollbacks else " (no healthy checkpoint)")
            raise TrainingError(f"stopped by the watchdog{why} at step {self.step}: {event.message}")
        self.watchdog.rollbacks += 1
        lrs = [(g["lr"]) for opt in (self.opt_g, self.opt_d) for g in opt.param_groups]
        self._load(good, restore_rng=False)
        # keep the learning rates already lowered by earlier rollbacks, then lower them again:
        # D's alone when D dominates (weaken the winner), both otherwise
        groups = [g for opt in (self.opt_g, self.opt_d) for g in opt.param_groups]
        for g, lr in zip(groups, lrs):
            g["lr"] = lr
        for opt in ((self.opt_d,) if event.kind == "d_dominates" else (self.opt_g, self.opt_d)):
            for group in opt.param_groups:
                group["lr"] *= w.lr_factor
        self.watchdog.reset_symptoms()
        switched = ""
        if event.kind == "d_dominates" and w.switch_minimax and self.watchdog.loss_name == "minimax":
            # the saturating log(1 - D(G(z))) has no gradient once D wins; -log D(G(z)) has (same D loss)
            self.loss = LOSSES.get("non-saturating")
            self.watchdog.loss_override = self.watchdog.loss_name = "non-saturating"
            switched = "; G now uses the non-saturating loss -log D(G(z)) instead of the saturating minimax loss"
        msg = (f"[watchdog] rolled back to step {self.step} (rollback {self.watchdog.rollbacks}/{w.max_rollbacks}); "
               f"learning rates now G {self.opt_g.param_groups[0]['lr']:.2e}, D {self.opt_d.param_groups[0]['lr']:.2e}"
               f"{switched}")
        self.log(msg)
        self.metrics.append({"step": self.step, "kimg": round(self.images_seen / 1000, 3), "event": "rollback",
                             "message": msg})

    # ---- hooks of the shared loop ------------------------------------------------------------
    def _header(self) -> str:
        t = self.cfg.train
        return (f"training {self.cfg.model.arch} on {self.data.name} {self.images.shape[0]} images "
                f"{'x'.join(map(str, self.img_shape))}{self._what_labels()}, loss {self.cfg.loss.name}, "
                f"batch {t.batch_size}, device {self.device}, {torch.get_num_threads()} threads; run folder {self.run_dir}")

    def _what_labels(self) -> str:
        auto = "model.conditional=auto: " if getattr(self, "_auto", False) else ""
        if self.K:
            return f" ({auto}class-conditional, {self.K} classes)"
        return f" ({auto}unconditional, the data has no class labels)" if auto else ""

    def _before_loop(self) -> None:
        if self.step == 0:
            self.snapshot()
            if self._rollback_on():
                self.save("good")

    def _periodic(self) -> None:
        super()._periodic()
        if self.evaluator is not None and self.evaluator.due(self.images_seen / 1000):
            self._evaluate()

    def _postfix(self, rec: Dict[str, Any]) -> str:
        return (f"D {rec['loss_d']:.3f} G {rec['loss_g']:.3f} D(x) {rec['d_real']:.2f} "
                f"D(G(z)) {rec['d_fake']:.2f} {rec['img_per_s']:.0f} img/s")

    def _images_per_step(self) -> int:
        return self.cfg.train.batch_size * self.cfg.train.n_critic


# ------------------------------------------------------------------------------------------
# using a trained generator


class GeneratorHandle(Handle):
    """A trained generator with what is needed to use it: sizes, classes, noise, sampling."""

    task = "gan"

    def __init__(self, module: nn.Module, checkpoint: runs.Checkpoint, config: Config):
        super().__init__(module, checkpoint, config)
        self.z_dim = config.model.z_dim
        self.num_classes = config.model.num_classes if config.model.conditional else 0
        names = list(checkpoint.config.get("class_names", []))
        self.class_names = names if len(names) == self.num_classes else [str(i) for i in range(self.num_classes)]

    def class_index(self, c: Union[int, str]) -> int:
        """A class given by index or by name -> its index (clear error otherwise)."""
        if not self.num_classes:
            raise LabelError("this generator is unconditional: it takes no class")
        if isinstance(c, str) and c in self.class_names:
            return self.class_names.index(c)
        try:
            i = int(c)
        except (TypeError, ValueError):
            i = -1
        if not 0 <= i < self.num_classes:
            raise LabelError(f"class {c!r}: expected an index 0..{self.num_classes - 1} or one of the names: "
                             f"{', '.join(self.class_names)}")
        return i

    def labels_for(self, n: int, labels=None) -> Optional[torch.Tensor]:
        """Class labels [n]: None for unconditional models; an int/name for one class; a sequence
        or tensor of n labels; or (default) the classes in turn 0, 1, ..., K-1, 0, 1, ..."""
        if not self.num_classes:
            if labels is not None:
                raise LabelError("this generator is unconditional: it takes no class labels")
            return None
        if labels is None:
            return torch.arange(n) % self.num_classes
        if isinstance(labels, (int, str)):
            return torch.full((n,), self.class_index(labels), dtype=torch.long)
        y = torch.as_tensor([self.class_index(int(v)) for v in labels], dtype=torch.long)
        if y.shape != (n,):
            raise LabelError(f"expected {n} labels, got {tuple(y.shape)}")
        return y

    def noise(self, n: int, seed: int) -> torch.Tensor:
        """The latent vectors ``sample(n, seed)`` uses: [n, z_dim], on CPU."""
        return draw_z(n, self.z_dim, self.config.model.z_dist, torch.Generator().manual_seed(int(seed)))

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels=None, batch_size: int = 256) -> torch.Tensor:
        """Images in [-1, 1], float [N, C, H, W], for latent vectors ``z`` (and labels if conditional)."""
        y = self.labels_for(z.shape[0], labels)
        out = []
        for i in range(0, z.shape[0], batch_size):
            zc = z[i : i + batch_size].to(self.device)
            if y is None:
                out.append(self.module(zc).float().cpu())
            else:
                out.append(self.module(zc, y[i : i + batch_size].to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, *self.img_shape)

    def sample(self, n: int, seed: int = 0, batch_size: int = 256, labels=None) -> torch.Tensor:
        return self.generate(self.noise(n, seed), labels, batch_size)

    def sample_uint8(self, n: int, seed: int = 0, batch_size: int = 256, labels=None) -> torch.Tensor:
        """uint8 [n, C, H, W]; the same ``seed`` (and labels) gives the same images."""
        return to_uint8(self.sample(n, seed, batch_size, labels))

    def export_inputs(self, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        z = self.noise(batch, 0).to(self.device)
        return (z,) if not self.num_classes else (z, (torch.arange(batch) % self.num_classes).to(self.device))

    def export_networks(self) -> List[ExportNet]:
        """The generator, ``z`` (and ``label`` when conditional) -> ``image``; fixed image size, dynamic batch."""
        dist = "standard normal" if self.config.model.z_dist == "normal" else f"{self.config.model.z_dist} in [-1, 1]"
        values = {"z": f"float32 latent vectors [N, {self.z_dim}], {dist}",
                  "image": "float32 in [-1, 1] (uint8 = round((x + 1) * 127.5))"}
        if self.num_classes:
            values["label"] = f"int64 class index in [0, {self.num_classes})"
        info = {"z_dim": self.z_dim, "z_dist": self.config.model.z_dist, "num_classes": self.num_classes,
                "class_names": list(self.class_names)}
        return [ExportNet("generator", self.module, self.export_inputs(2), ("z", "label")[: 1 + bool(self.num_classes)],
                          ("image",), values=values, info=info)]

    def __repr__(self) -> str:
        cond = f", {self.num_classes} classes" if self.num_classes else ""
        return (f"GeneratorHandle({self.config.model.arch}, {'x'.join(map(str, self.img_shape))}{cond}, "
                f"step {self.step}, {self.checkpoint_path})")


# ------------------------------------------------------------------------------------------
# the task


class GanTask(Task):
    name = "gan"
    summary = "generate images: a GAN (unconditional or class-conditional)"
    sections = {"data": SHARED_SECTIONS["data"], "model": ModelConfig, "loss": LossConfig,
                "g_optim": SHARED_SECTIONS["g_optim"], "d_optim": SHARED_SECTIONS["d_optim"],
                "train": SHARED_SECTIONS["train"], "augment": AugmentConfig, "eval": EvalConfig,
                "watchdog": WatchdogConfig}
    trainer = GanTrainer
    tiny = ("model.z_dim=8", "model.g_width=8", "model.d_width=8", "eval.every_kimg=0")

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        if cfg.loss.name == "wgan-gp" and cfg.model.d_norm == "batch":
            raise ConfigError(
                "model.d_norm: batch norm in the critic breaks the per-sample gradient penalty of wgan-gp; "
                "use model.d_norm=none or spectral"
            )
        if cfg.loss.name == "wgan" and cfg.model.d_norm == "batch":
            raise ConfigError(
                "model.d_norm: batch norm in the critic of wgan divides by the batch's standard deviation, so clipped "
                "weights no longer bound the critic's slope; use model.d_norm=none"
            )

    def load(self, checkpoint: runs.Checkpoint, ema: bool = True, device="cpu") -> GeneratorHandle:
        return self.load_generator(checkpoint, GeneratorHandle, lambda cfg, c: build_models(cfg.model, tuple(c["img_shape"]))[0],
                                   "generator", ema, device)


TASKS.register("gan")(GanTask())
