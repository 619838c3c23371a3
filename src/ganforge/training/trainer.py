"""The training loop: data in memory, D/G steps on logits, EMA, snapshots, exact resume.

One step = ``train.n_critic`` discriminator updates, then one generator update. With
``n_critic == 1`` the fake batch drawn for the D update is reused for the G update (one G
forward per step, as in the DCGAN reference). During the G update the discriminator's
parameters do not require grad, so no time is spent on gradients that would be discarded.
When D has no BatchNorm, real and fake go through D in one forward pass.

All randomness comes from seeded generators whose state is checkpointed, so on CPU a run
resumed from a checkpoint ends with the same weights as one that was never interrupted.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import Config, ConfigError
from ganforge.losses import LOSSES, d_logistic_smoothed, gradient_penalty, r1_penalty
from ganforge.models import build_models
from ganforge.models.layers import ModelBuildError
from ganforge.training import checkpoint as ckpt
from ganforge.training.augment import diff_augment
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import make_grid_uint8, plot_curves, save_png, to_uint8
from ganforge.training.watchdog import Event, Watchdog


from ganforge.errors import TrainingError  # noqa: E402,F401  (re-exported)


# keys that may change when a run is resumed; everything else is fixed by the run
RESUMABLE_KEYS = {
    "train.steps", "train.kimg", "train.epochs", "train.minutes", "train.log_every", "train.sample_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.progress", "train.tensorboard",
}


class Batcher:
    """Random batches of indices, epoch by epoch without replacement; reproducible and resumable."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch, self.pos = 0, 0
        self.perm = torch.randperm(n, generator=self.gen)

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:  # drop the incomplete tail; start a new epoch
            self.perm = torch.randperm(self.n, generator=self.gen)
            self.pos, self.epoch = 0, self.epoch + 1
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> Dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])
        self.perm, self.pos, self.epoch = s["perm"], int(s["pos"]), int(s["epoch"])


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


class Trainer(TrainingLoop):
    """Builds everything from a :class:`Config` and runs the loop. ``run()`` returns the run folder."""

    def __init__(
        self,
        cfg: Config,
        runs_dir: Path | str = "runs",
        resume: Optional[Path | str] = None,
        data=None,
        log: Optional[Callable[[str], None]] = None,
        dry_run: bool = False,
    ):
        self._setup(cfg, data, log, dry_run)
        t, m = cfg.train, cfg.model
        n = self.images.shape[0]
        self.labels: Optional[torch.Tensor] = None
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

        torch.manual_seed(t.seed)
        try:
            self.G, self.D = build_models(m, self.img_shape)
        except ModelBuildError as e:
            raise ConfigError(f"model.arch={m.arch}: {e}") from None
        self.G.to(self.device)
        self.D.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.aux = bool(getattr(self.D, "aux", False))
        self.joint_d = not has_batchnorm(self.D) and not self.aux and not m.mbstd  # mbstd groups must not mix real and fake
        self.loss = LOSSES.get(cfg.loss.name)
        self.opt_g = self._optimizer(self.G, cfg.g_optim)
        self.opt_d = self._optimizer(self.D, cfg.d_optim)
        self.G_fwd, self.D_fwd = self._maybe_compile(self.G), self._maybe_compile(self.D)

        self.batcher = Batcher(n, t.batch_size, t.seed + 1)
        self.noise_gen = torch.Generator(self.device).manual_seed(t.seed + 2)
        self.fixed_z = torch.randn(t.sample_count, m.z_dim, generator=torch.Generator().manual_seed(t.seed + 3)).to(self.device)
        self.fixed_y = (torch.arange(t.sample_count) % self.K).to(self.device) if self.K else None
        self.step, self.d_steps, self.images_seen, self.elapsed = 0, 0, 0, 0.0
        self.watchdog = Watchdog(cfg.watchdog, cfg.loss.name) if cfg.watchdog.enabled else None
        self.evaluator = None if dry_run else self._make_evaluator()

        if not dry_run:
            self._open_run(runs_dir, resume)

    # ---- set-up helpers -------------------------------------------------------------------
    def _make_evaluator(self):
        """The in-training evaluator (FID/KID/coverage), or None when evaluation is off."""
        e = self.cfg.eval
        features = e.features
        if features == "auto":
            features = "mnist" if self.img_shape[0] == 1 else "none"
        if features == "none" or e.every_kimg <= 0:
            return None
        from ganforge.metrics import EvalError, TrainingEvaluator

        ev = TrainingEvaluator(self.data, features=features, num_samples=e.samples, seed=self.cfg.train.seed,
                               every_kimg=e.every_kimg, device=str(self.device), inception_weights=e.inception_weights)
        try:
            ev.space  # load the extractor now: missing Inception weights fail before training starts
        except EvalError as err:
            raise ConfigError(f"eval.features={features}: {err} (or set eval.features=none)") from None
        # class coverage is only meaningful when the classifier knows the data's classes (MNIST digits)
        self.coverage_meaningful = features == "mnist" and self.cfg.data.dataset in ("mnist-embedded", "mnist")
        return ev

    def _maybe_compile(self, net: nn.Module) -> Callable:
        if not self.cfg.train.compile:
            return net
        try:
            compiled = torch.compile(net)
        except Exception as e:  # torch.compile unavailable on this platform
            self.log(f"train.compile=true failed ({type(e).__name__}: {e}); running eagerly")
            return net

        state = {"fn": compiled}

        def call(*args):
            try:
                return state["fn"](*args)
            except Exception as e:  # a backend/compiler problem shows on the first call
                if state["fn"] is net:
                    raise
                self.log(f"torch.compile failed on first use ({type(e).__name__}); running eagerly")
                state["fn"] = net
                return net(*args)

        return call

    # ---- what goes into the networks --------------------------------------------------------
    def _real_batch(self):
        idx = self.batcher.next().to(self.device)
        x = self.images[idx].float().div_(127.5).sub_(1.0)  # [B, C, H, W] in [-1, 1]
        if self.cfg.data.hflip:
            flip = torch.rand(x.shape[0], device=self.device, generator=self.noise_gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x, (self.labels[idx] if self.K else None)

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.model.z_dim, device=self.device, generator=self.noise_gen)

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
            real, y_real = self._real_batch()
            y_fake = self._fake_labels(B)
            with self._autocast():
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
            self.d_steps += 1
            self.images_seen += B
        self.D.requires_grad_(False)
        with self._autocast():
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
        self.D.requires_grad_(True)
        t = cfg.train
        decay = t.ema_decay
        if decay > 0 and t.ema_warmup:
            decay = min(decay, (1 + self.step) / (10 + self.step))
        ema_update(self.G_ema, self.G, decay)
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
    def sample_fixed(self) -> torch.Tensor:
        out = []
        ys = self.fixed_y.split(256) if self.K else [None] * len(self.fixed_z.split(256))
        for z, y in zip(self.fixed_z.split(256), ys):
            out.append(to_uint8(self.G_ema(z, y) if self.K else self.G_ema(z)))
        return torch.cat(out)

    def snapshot(self) -> None:
        grid = make_grid_uint8(self.sample_fixed(), nrow=self.K or None)  # conditional: one column per class
        save_png(grid, self.run_dir / "samples" / f"step-{self.step:08d}.png")
        save_png(grid, self.run_dir / "samples" / "latest.png")
        self.tb.image("samples", grid, self.step)
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
            ckpt.save_checkpoint(self.run_dir / "checkpoints" / "good", weights, model_config, state, meta)

    # ---- in-training evaluation ---------------------------------------------------------
    @torch.no_grad()
    def _eval_samples(self, n: int) -> torch.Tensor:
        """n images from the EMA generator with fixed noise (so evaluations differ only by the weights)."""
        gen = torch.Generator().manual_seed(self.cfg.train.seed + 4)
        z = torch.randn(n, self.cfg.model.z_dim, generator=gen).to(self.device)
        y = (torch.arange(n) % self.K).to(self.device) if self.K else None
        out = []
        for i in range(0, n, 500):
            zc = z[i : i + 500]
            out.append(to_uint8(self.G_ema(zc, y[i : i + 500]) if self.K else self.G_ema(zc)).cpu())
        return torch.cat(out)

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

    def _watch(self, stats: Dict[str, float]) -> None:
        finite = all(math.isfinite(v) for v in stats.values())
        if self.watchdog is None:
            if not finite:
                bad = ", ".join(f"{k}={v}" for k, v in stats.items() if not math.isfinite(v))
                raise TrainingError(
                    f"training diverged at step {self.step}: {bad}. The last good checkpoint is kept; "
                    "try lower learning rates (g_optim.lr, d_optim.lr) or a more stable loss (loss.name=hinge)")
            return
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

    # ---- hooks of the shared loop (ganforge.training.loop) -----------------------------------
    def _header(self) -> str:
        t = self.cfg.train
        return (f"training {self.cfg.model.arch} on {self.data.name} {self.images.shape[0]} images "
                f"{'x'.join(map(str, self.img_shape))}{f' ({self.K} classes)' if self.K else ''}, loss {self.cfg.loss.name}, "
                f"batch {t.batch_size}, device {self.device}, {torch.get_num_threads()} threads; run folder {self.run_dir}")

    def _before_loop(self) -> None:
        if self.step == 0:
            self.snapshot()
            if self._rollback_on():
                self.save("good")

    def _check_step(self, stats: Dict[str, float]) -> None:
        self._watch(stats)

    def _periodic(self) -> None:
        super()._periodic()
        if self.evaluator is not None and self.evaluator.due(self.images_seen / 1000):
            self._evaluate()

    def _plot(self) -> None:
        plot_curves(self.metrics.records, self.run_dir / "loss_curve.png")

    def _postfix(self, rec: Dict[str, Any]) -> str:
        return (f"D {rec['loss_d']:.3f} G {rec['loss_g']:.3f} D(x) {rec['d_real']:.2f} "
                f"D(G(z)) {rec['d_fake']:.2f} {rec['img_per_s']:.0f} img/s")

    def _images_per_step(self) -> int:
        return self.cfg.train.batch_size * self.cfg.train.n_critic
