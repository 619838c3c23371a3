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
import os
import re
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn

from ganforge import __version__
from ganforge.config import Config, ConfigError
from ganforge.losses import LOSSES, gradient_penalty, r1_penalty
from ganforge.models import build_models
from ganforge.models.dcgan import ModelSizeError
from ganforge.training import checkpoint as ckpt
from ganforge.training.monitor import MetricsLog, TensorBoard, make_grid_uint8, plot_curves, save_png, to_uint8


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the losses became NaN); the message says why and what to try."""


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name}: CUDA is not available on this machine; use train.device=cpu or auto")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("train.device=mps: MPS is not available on this machine; use train.device=cpu or auto")
    return torch.device(name)


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


def next_run_dir(runs_dir: Path, name: str) -> Path:
    """``runs/00003-<name>``: one more than the highest number present; created here."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    while True:
        nums = [int(p.name[:5]) for p in runs_dir.iterdir() if re.match(r"^\d{5}-", p.name)]
        path = runs_dir / f"{(max(nums) + 1 if nums else 0):05d}-{safe}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue  # another process took this number


class Trainer:
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
        self.cfg, self.dry_run = cfg, dry_run
        self._log_fn = log
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = resolve_device(t.device)
        self.amp = bool(t.amp and self.device.type == "cuda")
        if t.amp and not self.amp:
            self.log("train.amp=true needs a CUDA device: training in float32")

        if data is None:
            from ganforge.data import load_dataset

            data = load_dataset(cfg.data)
        self.data = data
        if getattr(self.data, "skipped", None):
            self.log(f"skipped {len(self.data.skipped)} unreadable image file(s), e.g. {self.data.skipped[0]}")
        n = self.data.images.shape[0]
        if t.batch_size > n:
            raise ConfigError(f"train.batch_size={t.batch_size} is larger than the dataset ({n} images)")
        self.img_shape = tuple(self.data.images.shape[1:])
        self.images = self.data.images.to(self.device)

        torch.manual_seed(t.seed)
        try:
            self.G, self.D = build_models(cfg.model, self.img_shape)
        except ModelSizeError as e:
            raise ConfigError(f"model.arch={cfg.model.arch}: {e}") from None
        self.G.to(self.device)
        self.D.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.joint_d = not has_batchnorm(self.D)
        self.loss = LOSSES.get(cfg.loss.name)
        self.opt_g = self._optimizer(self.G, cfg.g_optim)
        self.opt_d = self._optimizer(self.D, cfg.d_optim)
        self.G_fwd, self.D_fwd = self._maybe_compile(self.G), self._maybe_compile(self.D)

        self.batcher = Batcher(n, t.batch_size, t.seed + 1)
        self.noise_gen = torch.Generator(self.device).manual_seed(t.seed + 2)
        self.fixed_z = torch.randn(t.sample_count, cfg.model.z_dim, generator=torch.Generator().manual_seed(t.seed + 3)).to(self.device)
        self.step, self.d_steps, self.images_seen, self.elapsed = 0, 0, 0, 0.0

        self.run_dir: Optional[Path] = None
        if dry_run:
            return
        if resume is not None:
            self.run_dir = Path(resume)
            self._load(ckpt.find_checkpoint(self.run_dir, "last"))
        else:
            self.run_dir = next_run_dir(Path(runs_dir), cfg.run_name())
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())
        (self.run_dir / "samples").mkdir(exist_ok=True)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", resume_step=self.step if resume else None)
        self.tb = TensorBoard(self.run_dir / "tb", t.tensorboard, purge_step=self.step if resume else None)

    # ---- set-up helpers -------------------------------------------------------------------
    def log(self, msg: str) -> None:
        if self._log_fn:
            self._log_fn(msg)
        else:
            print(msg, file=sys.stderr, flush=True)
        if self.run_dir is not None and not self.dry_run:
            with open(self.run_dir / "log.txt", "a") as f:
                f.write(msg + "\n")

    def _optimizer(self, net: nn.Module, o) -> torch.optim.Optimizer:
        if o.name == "adam":
            return torch.optim.Adam(net.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        return torch.optim.RMSprop(net.parameters(), lr=o.lr, alpha=o.beta2, weight_decay=o.weight_decay)

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

    # ---- one step ---------------------------------------------------------------------------
    def _real_batch(self) -> torch.Tensor:
        x = self.images[self.batcher.next().to(self.device)].float().div_(127.5).sub_(1.0)  # [B, C, H, W] in [-1, 1]
        if self.cfg.data.hflip:
            flip = torch.rand(x.shape[0], device=self.device, generator=self.noise_gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.model.z_dim, device=self.device, generator=self.noise_gen)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext()

    def _d_logits(self, real: torch.Tensor, fake: torch.Tensor):
        if self.joint_d:
            r, f = self.D_fwd(torch.cat([real, fake])).float().split([real.shape[0], fake.shape[0]])
            return r, f
        return self.D_fwd(real).float(), self.D_fwd(fake).float()

    def train_step(self) -> Dict[str, float]:
        cfg, B = self.cfg, self.cfg.train.batch_size
        lo = cfg.loss
        stats: Dict[str, float] = {}
        reuse = cfg.train.n_critic == 1
        for i in range(cfg.train.n_critic):
            real = self._real_batch()
            with self._autocast():
                if reuse:
                    fake = self.G_fwd(self._z(B))
                else:
                    with torch.no_grad():
                        fake = self.G_fwd(self._z(B))
                r1_now = lo.r1_gamma > 0 and self.d_steps % lo.r1_every == 0
                if r1_now:
                    real.requires_grad_(True)
                    r, f = self.D_fwd(real).float(), self.D_fwd(fake.detach()).float()
                else:
                    r, f = self._d_logits(real, fake.detach())
                loss_d = self.loss.d(r, f)
                total_d = loss_d
                if lo.gp_weight > 0:
                    gp = gradient_penalty(self.D_fwd, real, fake.float(), generator=self.noise_gen)
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
                fake = self.G_fwd(self._z(B))
            f_g = self.D_fwd(fake).float()
            loss_g = self.loss.g(f_g)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.step += 1
        t = cfg.train
        if t.ema_decay > 0:
            decay = t.ema_decay
            if self.step <= t.ema_warmup:
                decay = min(decay, (1 + self.step) / (10 + self.step))
            ema_update(self.G_ema, self.G, decay)
        else:
            ema_update(self.G_ema, self.G, 0.0)
        with torch.no_grad():
            stats.update(
                loss_d=loss_d.item(),
                loss_g=loss_g.item(),
                d_real=torch.sigmoid(r.detach()).mean().item(),
                d_fake=torch.sigmoid(f.detach()).mean().item(),
            )
        if not all(math.isfinite(v) for v in stats.values()):
            bad = ", ".join(f"{k}={v}" for k, v in stats.items() if not math.isfinite(v))
            raise TrainingError(
                f"training diverged at step {self.step}: {bad}. The last good checkpoint is kept; "
                "try lower learning rates (g_optim.lr, d_optim.lr) or a more stable loss (loss.name=hinge)"
            )
        return stats

    # ---- budget -------------------------------------------------------------------------
    def _done(self) -> Optional[str]:
        t = self.cfg.train
        n = self.images.shape[0]
        if t.steps is not None and self.step >= t.steps:
            return f"{t.steps} steps"
        if t.kimg is not None and self.images_seen >= t.kimg * 1000:
            return f"{t.kimg:g} kimg"
        if t.epochs is not None and self.images_seen >= t.epochs * n:
            return f"{t.epochs:g} epochs"
        if t.minutes is not None and self.elapsed >= t.minutes * 60:
            return f"{t.minutes:g} minutes"
        return None

    def _expected_steps(self) -> Optional[int]:
        t = self.cfg.train
        per_step = t.batch_size * t.n_critic
        cands = []
        if t.steps is not None:
            cands.append(t.steps)
        if t.kimg is not None:
            cands.append(math.ceil(t.kimg * 1000 / per_step))
        if t.epochs is not None:
            cands.append(math.ceil(t.epochs * self.images.shape[0] / per_step))
        return min(cands) if cands else None

    # ---- outputs --------------------------------------------------------------------------
    @torch.no_grad()
    def sample_fixed(self) -> torch.Tensor:
        out = []
        for z in self.fixed_z.split(256):
            out.append(to_uint8(self.G_ema(z)))
        return torch.cat(out)

    def snapshot(self) -> None:
        grid = make_grid_uint8(self.sample_fixed())
        save_png(grid, self.run_dir / "samples" / f"step-{self.step:08d}.png")
        save_png(grid, self.run_dir / "samples" / "latest.png")
        self.tb.image("samples", grid, self.step)
        plot_curves(self.metrics.records, self.run_dir / "loss_curve.png")

    def model_config(self) -> Dict[str, Any]:
        return {
            "ganforge_version": __version__,
            "img_shape": list(self.img_shape),
            "class_names": list(getattr(self.data, "class_names", []) or []),
            "config": self.cfg.to_dict(),
        }

    def save(self) -> Path:
        state = {
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "batcher": self.batcher.state_dict(),
            "noise_gen": self.noise_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "step": self.step,
            "d_steps": self.d_steps,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
        }
        meta = {"step": self.step, "kimg": self.images_seen / 1000, "epoch": self.images_seen / self.images.shape[0],
                "elapsed_s": round(self.elapsed, 3)}
        folder = self.run_dir / "checkpoints" / f"step-{self.step:08d}"
        weights = {"g": self.G.state_dict(), "g_ema": self.G_ema.state_dict(), "d": self.D.state_dict()}
        ckpt.save_checkpoint(folder, weights, self.model_config(), state, meta)
        ckpt.prune_checkpoints(self.run_dir, self.cfg.train.keep_checkpoints)
        return folder

    def _load(self, folder: Path) -> None:
        for key, net in (("g", self.G), ("g_ema", self.G_ema), ("d", self.D)):
            net.load_state_dict(ckpt.load_weights(folder, key))
        s = ckpt.load_state(folder)
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.batcher.load_state_dict(s["batcher"])
        self.noise_gen.set_state(s["noise_gen"])
        torch.set_rng_state(s["torch_rng"])
        if self.device.type == "cuda" and s.get("cuda_rng"):
            torch.cuda.set_rng_state_all(s["cuda_rng"])
        self.step, self.d_steps = int(s["step"]), int(s["d_steps"])
        self.images_seen, self.elapsed = int(s["images_seen"]), float(s["elapsed"])
        self.log(f"resumed from {folder} (step {self.step}, {self.images_seen / 1000:.1f} kimg)")

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> Path:
        if self.dry_run:
            stats = self.train_step()
            self.log("dry run: one step OK  " + "  ".join(f"{k}={v:.4f}" for k, v in stats.items()))
            return Path(".")
        t = self.cfg.train
        stop_reason = self._done()
        if stop_reason:
            self.log(f"nothing to do: the budget ({stop_reason}) is already reached at step {self.step}")
            return self.run_dir
        self.log(
            f"training {self.cfg.model.arch} on {self.data.name} {self.images.shape[0]} images "
            f"{'x'.join(map(str, self.img_shape))}, loss {self.cfg.loss.name}, batch {t.batch_size}, "
            f"device {self.device}, {torch.get_num_threads()} threads; run folder {self.run_dir}"
        )
        if self.step == 0:
            self.snapshot()

        interrupted = {"n": 0}

        def on_sigint(signum, frame):
            interrupted["n"] += 1
            if interrupted["n"] > 1:
                raise KeyboardInterrupt
            self.log("\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort)")

        old_handler = None
        if threading_is_main():
            old_handler = signal.signal(signal.SIGINT, on_sigint)
        bar = self._progress()
        window: Dict[str, float] = {}
        win_steps, win_t0, win_imgs = 0, time.perf_counter(), self.images_seen
        t_last = time.perf_counter()
        reason = None
        try:
            while True:
                reason = self._done()
                if reason or interrupted["n"]:
                    break
                stats = self.train_step()
                now = time.perf_counter()
                self.elapsed += now - t_last
                t_last = now
                for k, v in stats.items():
                    window[k] = window.get(k, 0.0) + v
                win_steps += 1
                if bar is not None:
                    bar.update(1)
                if self.step % t.log_every == 0:
                    dt = max(now - win_t0, 1e-9)
                    rec = {"step": self.step, "kimg": round(self.images_seen / 1000, 3),
                           "epoch": round(self.images_seen / self.images.shape[0], 3), "time_s": round(self.elapsed, 2)}
                    rec.update({k: round(v / win_steps, 5) for k, v in window.items()})
                    rec["img_per_s"] = round((self.images_seen - win_imgs) / dt, 1)
                    self.metrics.append(rec)
                    self.tb.scalars({f"train/{k}": v for k, v in rec.items() if k not in ("step",)}, self.step)
                    if bar is not None:
                        bar.set_postfix_str(
                            f"D {rec['loss_d']:.3f} G {rec['loss_g']:.3f} D(x) {rec['d_real']:.2f} "
                            f"D(G(z)) {rec['d_fake']:.2f} {rec['img_per_s']:.0f} img/s", refresh=False)
                    window, win_steps, win_t0, win_imgs = {}, 0, time.perf_counter(), self.images_seen
                if self.step % t.sample_every == 0:
                    self.snapshot()
                if self.step % t.checkpoint_every == 0:
                    self.save()
                t_last = time.perf_counter()  # outputs are not training time
        finally:
            if bar is not None:
                bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if self.step % t.sample_every != 0:
            self.snapshot()
        plot_curves(self.metrics.records, self.run_dir / "loss_curve.png")
        folder = self.save()
        self.tb.close()
        if interrupted["n"]:
            self.log(f"interrupted at step {self.step}; checkpoint {folder}. Continue with: ganforge train --resume {self.run_dir}")
            raise KeyboardInterrupt
        self.log(f"done ({reason}) at step {self.step}, {self.images_seen / 1000:.1f} kimg, {self.elapsed / 60:.1f} min; "
                 f"samples {self.run_dir / 'samples' / 'latest.png'}")
        return self.run_dir

    def _progress(self):
        if not self.cfg.train.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self._expected_steps(), initial=self.step, unit="step", dynamic_ncols=True,
                    file=sys.stderr, mininterval=0.5, disable=None if not os.environ.get("CI") else True)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
