"""The gan task: trainer."""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.config import choice
from ganforge.errors import ConfigError, ModelBuildError, TrainingError
from ganforge.imaging import make_grid_uint8, to_uint8
from ganforge.losses import LOSSES, clip_weights, d_logistic_smoothed, gradient_penalty, r1_penalty
from ganforge.tasks.gan.augment import diff_augment
from ganforge.tasks.gan.clusters import Clusters, default_k, describe, kmeans, match_clusters, normalise, proportional
from ganforge.tasks.gan.clusters import features as cluster_features
from ganforge.tasks.gan.networks import build_models, draw_z
from ganforge.training import distributed
from ganforge.training.loop import TrainingLoop
from ganforge.training.monitor import ADVERSARIAL_CURVES
from ganforge.training.parts import check_finite, has_batchnorm
from ganforge.training.watchdog import Event, Watchdog


class GanTrainer(TrainingLoop):
    """Trains a generator against a discriminator (see the module doc); ``run()`` returns the run folder."""

    task = "gan"

    progress = ("D {loss_d:.3f} G {loss_g:.3f} D(x) {d_real:.2f} D(G(z)) {d_fake:.2f}",)
    curves = ADVERSARIAL_CURVES
    diverged_advice = "try lower learning rates (g_optim.lr, d_optim.lr) or a more stable loss (loss.name=hinge)"

    # ---- set-up ----------------------------------------------------------------------------
    def build(self) -> None:
        cfg, t, m = self.cfg, self.cfg.train, self.cfg.model
        self.labels: Optional[torch.Tensor] = None  # int64 [N] on the device: the data's labels or the clusters
        self.clusters: Optional[Clusters] = None  # pseudo-labels (model.clusters), clustered at the first step
        self._auto = m.conditional == "auto"
        names = list(getattr(self.data, "class_names", []) or [])
        has_labels = self.data.labels is not None and len(names) >= 2
        n = int(self.images.shape[0])
        if m.clusters or (m.clusters is None and self._auto and not has_labels and n >= 16):
            self._set_up_clusters(m.clusters or default_k(n))
        elif self._auto:  # conditional when the data has labels of 2 or more classes (saved resolved)
            m.conditional = has_labels
        if m.conditional and self.clusters is None:
            k = len(names)
            if not has_labels:
                raise ConfigError(
                    f"model.conditional=true needs labelled data with at least 2 classes; {self.data.name!r} has "
                    f"{'no labels' if self.data.labels is None else f'{k} class'} "
                    "(an image folder needs one subfolder per class; model.conditional=auto trains on clusters "
                    "of the images instead)"
                )
            if m.num_classes not in (0, k):
                raise ConfigError(f"model.num_classes={m.num_classes} but the dataset has {k} classes; leave it at 0")
            m.num_classes = k
            self.labels = self.data.labels.to(self.device)
        elif not m.conditional and m.num_classes:
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
        self.joint_d = (
            not has_batchnorm(self.D) and not self.aux and not m.mbstd
        )  # mbstd groups must not mix real and fake
        self.loss = LOSSES.get(cfg.loss.name)
        self.clip = cfg.loss.clip if cfg.loss.name == "wgan" else 0.0  # weight clipping of the original WGAN
        self.opt_g = self.optimizer(self.G, cfg.g_optim)
        self.opt_d = self.optimizer(self.D, cfg.d_optim)
        self.optims.update(g=self.opt_g, d=self.opt_d)
        self.G_fwd, self.D_fwd = self.wrap(self.G), self.wrap(self.D)

        self.fixed_z = draw_z(t.sample_count, m.z_dim, m.z_dist, self.rng("samples")).to(self.device)
        self.fixed_y = (torch.arange(t.sample_count) % self.K).to(self.device) if self.K else None
        self.d_steps = 0
        self.watchdog = Watchdog(cfg.watchdog, cfg.loss.name) if cfg.watchdog.enabled else None
        self.evaluator = self._make_evaluator()  # in a dry run too: it checks what the real run needs (weights)
        self.images_per_step = t.batch_size * t.n_critic
        self.run_suffix = m.arch + ("-clusters" if self.clusters else "-cond" if m.conditional else "")
        self.model_info = {"class_names": names}
        if self.clusters:  # the clusters' sizes go to config.json when known: sampling draws clusters in proportion
            self.model_info = {"class_names": [f"cluster {i}" for i in range(self.K)], "cluster_sizes": []}
        self.description = (
            f"{m.arch} on {self.data.name} {self.images.shape[0]} images "
            f"{'x'.join(map(str, self.img_shape))}{self._what_labels()}, loss {cfg.loss.name}"
        )

    def _set_up_clusters(self, k: int) -> None:
        """Pseudo-labels: ``k`` clusters of the images (model.clusters) in the chosen feature space; the
        config is resolved (conditional, num_classes, clusters, cluster_features) so a resume rebuilds the same."""
        from ganforge.metrics.features import FEATURES

        m, n = self.cfg.model, int(self.images.shape[0])
        choice("model.cluster_features", m.cluster_features, ["auto", "discriminator", *FEATURES.names()])
        if m.cluster_features == "auto":
            m.cluster_features = "mnist" if self.img_shape[0] == 1 else "discriminator"
        if not 2 <= k <= n:
            raise ConfigError(f"model.clusters={k}: expected 2 to {n} (the number of images)")
        if m.num_classes not in (0, k):
            raise ConfigError(f"model.num_classes={m.num_classes} but model.clusters={k}; leave it at 0")
        m.conditional, m.num_classes, m.clusters = True, k, k
        every = m.recluster_every if m.cluster_features == "discriminator" else 0  # a fixed space clusters once
        self.clusters = Clusters(k, m.cluster_features, every, self.rng("clusters"))

    def _cluster(self) -> None:
        """Cluster the images (rank 0; the labels are broadcast): at the first step, then every
        ``recluster_every`` steps with the discriminator's features, renumbered to match the old clusters."""
        c = self.clusters
        t0 = time.perf_counter()
        agree = None
        if self.is_main:
            feats = cluster_features(self.images, c.features, c.gen, self.D, self.memory_format, self.device)
            labels, _ = kmeans(normalise(feats), c.k, c.gen)
            if c.labels is not None:
                labels = match_clusters(c.labels, labels, c.k)
                agree = float((labels == c.labels).float().mean())
            payload = (labels, c.gen.get_state())
        else:
            payload = None
        labels, gen_state = distributed.broadcast_object(payload) if self.world > 1 else payload
        c.gen.set_state(gen_state)
        c.labels, c.last_step, c.count = labels.long().cpu(), self.step, c.count + 1
        self.labels = c.labels.to(self.device)
        sizes = c.sizes()
        self.model_info["cluster_sizes"] = sizes
        share = [s / len(c.labels) for s in sizes]
        what = f"{c.k} clusters of {describe(c.features)}"
        kept = f"; {agree:.0%} of the images kept their cluster" if agree is not None else ""
        self.log(
            f"{'re-clustered' if agree is not None else 'clustered'} {len(c.labels)} images at step {self.step}: "
            f"{what}, {min(share):.1%}-{max(share):.1%} each ({time.perf_counter() - t0:.1f} s){kept}"
        )

    def _make_evaluator(self):
        """The in-training evaluator (FID/KID/coverage), or None when evaluation is off."""
        e = self.cfg.eval
        features = e.features
        if e.every_kimg is not None and e.every_kimg <= 0:
            return None
        from ganforge.errors import EvalError
        from ganforge.metrics.features import auto_features, get_feature_space
        from ganforge.metrics.training import TrainingEvaluator

        if features == "auto":  # grey: mnist; colour: Inception with local weights, else effnet, else off
            try:
                features = auto_features(self.img_shape[0], e.inception_weights)[0] or "none"
            except EvalError as err:
                raise ConfigError(f"eval.inception_weights: {err}") from None
        if features == "none":
            return None
        try:  # load the extractor now: missing weights or a missing extra fail before training starts
            weights = e.inception_weights if features == "inception" else None
            space = get_feature_space(features, weights_path=weights, device=str(self.device))
        except EvalError as err:
            raise ConfigError(f"eval.features={features}: {err} (or set eval.features=none)") from None
        ev = TrainingEvaluator(
            self.data,
            features=features,
            num_samples=e.samples or space.train_samples,  # null: the space's own default (what it costs)
            seed=self.cfg.train.seed,
            every_kimg=space.train_every_kimg if e.every_kimg is None else e.every_kimg,
            device=str(self.device),
            max_real=space.train_max_real,
            cache=True,  # the real images' features, computed once per machine (as ganforge eval does)
            feature_space=space,
        )
        # class coverage is only meaningful when the classifier knows the data's classes (MNIST digits)
        self.coverage_meaningful = features == "mnist" and self.cfg.data.dataset in ("mnist-embedded", "mnist")
        return ev

    def _what_labels(self) -> str:
        auto = "model.conditional=auto: " if self._auto else ""
        c = self.clusters
        if c:
            why = "no labels" if self.data.labels is None else "labels not used"
            again = f", re-clustered every {c.every} steps" if c.every else ""
            return f" ({auto}{why}: {c.k} clusters of {describe(c.features)}{again})"
        if self.K:
            return f" ({auto}class-conditional, {self.K} classes)"
        if not auto:
            return ""
        why = "model.clusters=0" if self.cfg.model.clusters == 0 else "too few images to cluster"
        return f" ({auto}unconditional, the data has no class labels; {why})"

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
        if self.clusters is not None and self.clusters.due(self.step):
            self._cluster()  # inside the step: its time counts in the wall-clock budget
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

    def extra_state(self) -> Dict[str, Any]:
        return {
            "d_steps": self.d_steps,
            "watchdog": self.watchdog.state_dict() if self.watchdog else {},
            "evaluator": self.evaluator.state_dict() if self.evaluator else {},
            "clusters": self.clusters.state_dict() if self.clusters else {},
        }

    def load_extra_state(self, s: Dict[str, Any], full: bool) -> None:
        self.d_steps = int(s["d_steps"])
        if not full:  # a rollback keeps the watchdog's and evaluator's own history (and the clusters)
            return
        if self.clusters and s.get("clusters"):
            self.clusters.load_state_dict(s["clusters"])
            if self.clusters.labels is not None:
                self.labels = self.clusters.labels.to(self.device)
                self.model_info["cluster_sizes"] = self.clusters.sizes()
        if self.watchdog and s.get("watchdog"):
            self.watchdog.load_state_dict(s["watchdog"])
            if self.watchdog.loss_override:
                self.loss = LOSSES.get(self.watchdog.loss_override)
        if self.evaluator and s.get("evaluator"):
            self.evaluator.load_state_dict(s["evaluator"])

    # ---- in-training evaluation ---------------------------------------------------------
    def _eval_samples(self, n: int) -> torch.Tensor:
        """n images from the EMA generator with fixed noise (so evaluations differ only by the weights)."""
        z = draw_z(n, self.cfg.model.z_dim, self.cfg.model.z_dist, self.rng("eval")).to(self.device)
        if self.clusters:  # clusters in proportion to their sizes (the real data's mix)
            y = proportional(n, self.clusters.sizes()).to(self.device)
        else:
            y = (torch.arange(n) % self.K).to(self.device) if self.K else None
        return self._generate_uint8(z, y, 500)

    def evaluate(self) -> None:
        """FID/KID (and class coverage) every ``eval.every_kimg``; the best FID keeps checkpoint ``best``."""
        if self.evaluator is None or not self.evaluator.due(self.images_seen / 1000):
            return
        kimg = self.images_seen / 1000
        res = self.evaluator(self._eval_samples, kimg=kimg)
        covered = res.get("classes_covered") if self.coverage_meaningful else None
        rec = {
            "step": self.step,
            "kimg": round(kimg, 3),
            "fid": round(res["fid"], 4),
            "kid": round(res["kid"], 6),
            "eval_features": res["features"],
            "eval_samples": res["num_samples"],
            "eval_s": res["seconds"],
        }
        if covered is not None:
            rec.update(classes_covered=covered, kl_class=round(res["kl_class"], 5))
        self.metrics.append(rec)
        self.tb.scalars(
            {f"eval/{k}": v for k, v in rec.items() if isinstance(v, (int, float)) and k != "step"}, self.step
        )
        cov = (
            f", classes covered {covered}/10, KL to the real class mix {res['kl_class']:.3f}"
            if covered is not None
            else ""
        )
        best = self.keep_best("fid", res["fid"], label="FID")
        self.log(
            f"eval at {kimg:.0f} kimg: FID {res['fid']:.2f} ({res['features']} features, {res['num_samples']} "
            f"samples){cov}{' (best so far)' if best else ''}"
        )
        if self.watchdog:
            event = self.watchdog.observe_eval(self.step, res["fid"], covered)
            if event:
                self._act(event)

    # ---- the watchdog ---------------------------------------------------------------------
    def check_step(self, stats: Dict[str, float]) -> None:
        """Non-finite statistics stop the run; with the watchdog, its symptoms act (warn, stop, roll back)."""
        if self.watchdog is None:
            check_finite(stats, self.step, self.diverged_advice)
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
        self.metrics.append(
            {
                "step": self.step,
                "kimg": round(self.images_seen / 1000, 3),
                "event": event.kind,
                "message": event.message,
            }
        )
        if w.action == "warn" and event.kind != "nonfinite":
            return
        good = self.good_checkpoint
        if (
            w.action == "stop"
            or w.action == "warn"
            or self.watchdog.rollbacks >= w.max_rollbacks
            or not (good / "meta.json").is_file()
        ):
            why = (
                ""
                if w.action != "rollback"
                else (
                    f" after {self.watchdog.rollbacks} rollback(s)"
                    if self.watchdog.rollbacks
                    else " (no healthy checkpoint)"
                )
            )
            raise TrainingError(f"stopped by the watchdog{why} at step {self.step}: {event.message}")
        self.watchdog.rollbacks += 1
        lrs = [(g["lr"]) for opt in (self.opt_g, self.opt_d) for g in opt.param_groups]
        self.restore(good)
        # keep the learning rates already lowered by earlier rollbacks, then lower them again:
        # D's alone when D dominates (weaken the winner), both otherwise
        groups = [g for opt in (self.opt_g, self.opt_d) for g in opt.param_groups]
        for g, lr in zip(groups, lrs):
            g["lr"] = lr
        for opt in (self.opt_d,) if event.kind == "d_dominates" else (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] *= w.lr_factor
        self.watchdog.reset_symptoms()
        switched = ""
        if event.kind == "d_dominates" and w.switch_minimax and self.watchdog.loss_name == "minimax":
            # the saturating log(1 - D(G(z))) has no gradient once D wins; -log D(G(z)) has (same D loss)
            self.loss = LOSSES.get("non-saturating")
            self.watchdog.loss_override = self.watchdog.loss_name = "non-saturating"
            switched = "; G now uses the non-saturating loss -log D(G(z)) instead of the saturating minimax loss"
        msg = (
            f"[watchdog] rolled back to step {self.step} (rollback {self.watchdog.rollbacks}/{w.max_rollbacks}); "
            f"learning rates now G {self.opt_g.param_groups[0]['lr']:.2e}, D {self.opt_d.param_groups[0]['lr']:.2e}"
            f"{switched}"
        )
        self.log(msg)
        self.metrics.append(
            {"step": self.step, "kimg": round(self.images_seen / 1000, 3), "event": "rollback", "message": msg}
        )
