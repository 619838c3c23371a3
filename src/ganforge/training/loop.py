"""What every ganforge training task shares: the loop around ``train_step``.

:class:`TrainingLoop` is the base of :class:`~ganforge.training.trainer.Trainer` (GANs) and
:class:`~ganforge.training.inpaint_trainer.InpaintTrainer` (completion networks). It owns the
budget (steps / kimg / epochs / wall-clock minutes), the progress bar, the metric windows
(means over ``train.log_every`` steps into metrics.jsonl and TensorBoard), Ctrl-C handling (the
first interrupt finishes the step and writes a checkpoint, a second aborts) and the end of a run.
A task provides ``train_step`` and the hooks below; it sets ``cfg``, ``images``, ``step``,
``images_seen``, ``elapsed``, ``run_dir``, ``metrics``, ``tb``, ``dry_run`` and ``_log_fn``.
"""
from __future__ import annotations

import math
import os
import re
import signal
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ganforge.config import ConfigError
from ganforge.training import checkpoint as ckpt
from ganforge.training.monitor import MetricsLog, TensorBoard


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


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN with AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_enabled(requested: bool, device: torch.device, log) -> bool:
    """``train.amp``: bfloat16 autocast on CUDA, and on CPUs with native bfloat16 support; else float32."""
    if not requested:
        return False
    if device.type == "cuda":
        return True
    if device.type == "cpu" and cpu_bf16_supported():
        return True
    log(f"train.amp=true: {'this CPU has no native bfloat16 support' if device.type == 'cpu' else device.type} "
        "(bfloat16 autocast needs CUDA or a CPU with AVX512-BF16/AMX): training in float32")
    return False


class TrainingLoop:
    # ---- hooks a task provides ----------------------------------------------------------------
    def train_step(self) -> Dict[str, float]:
        raise NotImplementedError

    def _header(self) -> str:
        """The line logged when training starts."""
        raise NotImplementedError

    def _before_loop(self) -> None:
        """Called once before the first step of a new or resumed run."""

    def _check_step(self, stats: Dict[str, float]) -> None:
        """Inspect a step's statistics; may raise, or move ``self.step`` back (a rollback)."""

    def _periodic(self) -> None:
        """Snapshots, checkpoints and evaluations after a step (not counted in images/s)."""
        t = self.cfg.train
        if self.step % t.sample_every == 0:
            self.snapshot()
        if self.step % t.checkpoint_every == 0:
            self.save()

    def _plot(self) -> None:
        """Redraw the run's loss_curve.png."""
        raise NotImplementedError

    def _postfix(self, rec: Dict[str, Any]) -> str:
        """The progress bar's text for a metrics record."""
        return f"{rec['img_per_s']:.0f} img/s"

    def _done_extra(self) -> str:
        """Added to the final 'done' line (e.g. the validation figure)."""
        return ""

    def _images_per_step(self) -> int:
        return self.cfg.train.batch_size

    # ---- set-up shared by the tasks ----------------------------------------------------------
    def _setup(self, cfg, data, log, dry_run: bool) -> None:
        """Threads, device, mixed precision and the dataset (loaded once, kept on the device)."""
        self.cfg, self.dry_run = cfg, dry_run
        self._log_fn = log
        self.run_dir: Optional[Path] = None
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = resolve_device(t.device)
        self.amp = amp_enabled(t.amp, self.device, self.log)
        if data is None:
            from ganforge.data import load_dataset

            data = load_dataset(cfg.data)
        self.data = data
        if getattr(self.data, "skipped", None):
            self.log(f"skipped {len(self.data.skipped)} unreadable image file(s), e.g. {self.data.skipped[0]}")
        n = self.data.images.shape[0]
        if t.batch_size > n:
            raise ConfigError(f"train.batch_size={t.batch_size} is larger than the dataset ({n} images)")
        self.img_shape = tuple(int(s) for s in self.data.images.shape[1:])
        self.images = self.data.images.to(self.device)

    def _open_run(self, runs_dir, resume) -> None:
        """A new numbered run folder (config.yaml written), or the folder being resumed (its last
        checkpoint loaded); then the metrics log and TensorBoard writer, continuing at the step."""
        if resume is not None:
            self.run_dir = Path(resume)
            self._load(ckpt.find_checkpoint(self.run_dir, "last"))
        else:
            self.run_dir = next_run_dir(Path(runs_dir), self.cfg.run_name())
            (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
        (self.run_dir / "samples").mkdir(exist_ok=True)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", resume_step=self.step if resume else None)
        self.tb = TensorBoard(self.run_dir / "tb", self.cfg.train.tensorboard, purge_step=self.step if resume else None)

    # ---- checkpoints ------------------------------------------------------------------------
    def model_config(self) -> Dict[str, Any]:
        """config.json of a checkpoint: enough to rebuild the networks without the run folder."""
        from ganforge import __version__

        return {
            "ganforge_version": __version__,
            "task": self.cfg.task,
            "img_shape": list(self.img_shape),
            "class_names": list(getattr(self.data, "class_names", []) or []) if self.cfg.task == "gan" else [],
            "config": self.cfg.to_dict(),
        }

    def _nets(self) -> Dict[str, nn.Module]:
        """The networks a checkpoint holds, by weight-file key (see checkpoint.WEIGHT_FILES)."""
        nets = {"g": self.G, "d": self.D}
        if self.G_ema is not None:
            nets["g_ema"] = self.G_ema
        return nets

    def _extra_state(self) -> Dict[str, Any]:
        """Task-specific training state saved next to the shared one."""
        return {}

    def _restore_extra(self, s: Dict[str, Any], full: bool) -> None:
        """Restore ``_extra_state``; ``full=False`` for a rollback (weights and counters only)."""

    def _after_save(self, weights, model_config, state, meta) -> None:
        """Called after each numbered checkpoint (the GAN trainer keeps a last known-good copy)."""

    def save(self, name: Optional[str] = None) -> Path:
        """Write a checkpoint (``step-N`` by default, or a named one such as ``good``/``best``)."""
        state = {
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "batcher": self.batcher.state_dict(),
            "noise_gen": self.noise_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            **self._extra_state(),
        }
        meta = {"step": self.step, "kimg": self.images_seen / 1000, "epoch": self.images_seen / self.images.shape[0],
                "elapsed_s": round(self.elapsed, 3)}
        folder = self.run_dir / "checkpoints" / (name or f"step-{self.step:08d}")
        weights = {key: net.state_dict() for key, net in self._nets().items()}
        model_config = self.model_config()
        ckpt.save_checkpoint(folder, weights, model_config, state, meta)
        if name is None:
            ckpt.prune_checkpoints(self.run_dir, self.cfg.train.keep_checkpoints)
            self._after_save(weights, model_config, state, meta)
        return folder

    def _load(self, folder: Path, restore_rng: bool = True) -> None:
        """Load a checkpoint: weights, optimisers and counters; with ``restore_rng`` (resume) also
        the data order, every random generator and the elapsed time; without it (a rollback) the
        run goes on with fresh batches and noise from the current generators."""
        for key, net in self._nets().items():
            try:
                net.load_state_dict(ckpt.load_weights(folder, key))
            except RuntimeError as e:
                raise ckpt.RunError(f"weights in '{folder}' do not match the run's config: {e}") from None
        s = ckpt.load_state(folder)
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.step, self.images_seen = int(s["step"]), int(s["images_seen"])
        self._restore_extra(s, full=restore_rng)
        if not restore_rng:
            return
        self.elapsed = float(s["elapsed"])
        self.batcher.load_state_dict(s["batcher"])
        self.noise_gen.set_state(s["noise_gen"])
        torch.set_rng_state(s["torch_rng"])
        if self.device.type == "cuda" and s.get("cuda_rng"):
            torch.cuda.set_rng_state_all(s["cuda_rng"])
        self.log(f"resumed from {folder} (step {self.step}, {self.images_seen / 1000:.1f} kimg)")

    # ---- shared helpers -------------------------------------------------------------------
    def log(self, msg: str) -> None:
        if self._log_fn:
            self._log_fn(msg)
        else:
            print(msg, file=sys.stderr, flush=True)
        if self.run_dir is not None and not self.dry_run:
            with open(self.run_dir / "log.txt", "a") as f:
                f.write(msg + "\n")

    @staticmethod
    def _optimizer(net: nn.Module, o) -> torch.optim.Optimizer:
        if o.name == "adam":
            return torch.optim.Adam(net.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        return torch.optim.RMSprop(net.parameters(), lr=o.lr, alpha=o.beta2, weight_decay=o.weight_decay)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    # ---- budget -------------------------------------------------------------------------
    def _done(self) -> Optional[str]:
        """Why the budget is reached, or None."""
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
        per_step = self._images_per_step()
        cands = []
        if t.steps is not None:
            cands.append(t.steps)
        if t.kimg is not None:
            cands.append(math.ceil(t.kimg * 1000 / per_step))
        if t.epochs is not None:
            cands.append(math.ceil(t.epochs * self.images.shape[0] / per_step))
        return min(cands) if cands else None

    def _progress(self):
        if not self.cfg.train.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self._expected_steps(), initial=self.step, unit="step", dynamic_ncols=True,
                    file=sys.stderr, mininterval=0.5, disable=True if os.environ.get("CI") else None)

    def _log_window(self, window: Dict[str, float], counts: Dict[str, int], seconds: float, images: int, bar) -> None:
        rec: Dict[str, Any] = {"step": self.step, "kimg": round(self.images_seen / 1000, 3),
                               "epoch": round(self.images_seen / self.images.shape[0], 3),
                               "time_s": round(self.elapsed, 2)}
        rec.update({k: round(v / counts[k], 5) for k, v in window.items()})  # means over the interval
        rec["img_per_s"] = round(images / max(seconds, 1e-9), 1)
        self.metrics.append(rec)
        self.tb.scalars({f"train/{k}": v for k, v in rec.items() if k != "step"}, self.step)
        if bar is not None:
            bar.set_postfix_str(self._postfix(rec), refresh=False)

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> Path:
        """Train until the budget is reached (or Ctrl-C); returns the run folder."""
        if self.dry_run:
            stats = self.train_step()
            self.log("dry run: one step OK  " + "  ".join(f"{k}={v:.4f}" for k, v in stats.items()))
            return Path(".")
        t = self.cfg.train
        stop_reason = self._done()
        if stop_reason:
            self.log(f"nothing to do: the budget ({stop_reason}) is already reached at step {self.step}")
            return self.run_dir
        self.log(self._header())
        self._before_loop()

        interrupted = {"n": 0}

        def on_sigint(signum, frame):
            interrupted["n"] += 1
            if interrupted["n"] > 1:
                raise KeyboardInterrupt
            self.log("\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort)")

        old_handler = None
        if threading.current_thread() is threading.main_thread():
            old_handler = signal.signal(signal.SIGINT, on_sigint)
        bar = self._progress()
        window: Dict[str, float] = {}
        counts: Dict[str, int] = {}
        win_t0, win_imgs = time.perf_counter(), self.images_seen
        t_last = time.perf_counter()
        reason = None
        try:
            while True:
                reason = self._done()
                if reason or interrupted["n"]:
                    break
                stats = self.train_step()
                step_before = self.step
                self._check_step(stats)
                if self.step == step_before:
                    for k, v in stats.items():
                        window[k] = window.get(k, 0.0) + v
                        counts[k] = counts.get(k, 0) + 1
                    if bar is not None:
                        bar.update(1)
                    if self.step % t.log_every == 0:
                        self._log_window(window, counts, time.perf_counter() - win_t0, self.images_seen - win_imgs, bar)
                        window, counts, win_t0, win_imgs = {}, {}, time.perf_counter(), self.images_seen
                    t_out = time.perf_counter()
                    self._periodic()
                    win_t0 += time.perf_counter() - t_out  # images/s counts training only (the budget counts all)
                else:  # rolled back: start a fresh metrics window
                    window, counts, win_t0, win_imgs = {}, {}, time.perf_counter(), self.images_seen
                    if bar is not None:
                        bar.n = self.step
                now = time.perf_counter()  # the budget is wall-clock: outputs and evaluation count too
                self.elapsed += now - t_last
                t_last = now
        finally:
            if bar is not None:
                bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if self.step % t.sample_every != 0:
            self.snapshot()
        self._plot()
        folder = self.save()
        self.tb.close()
        if interrupted["n"]:
            self.log(f"interrupted at step {self.step}; checkpoint {folder}. "
                     f"Continue with: ganforge train --resume {self.run_dir}")
            raise KeyboardInterrupt
        self.log(f"done ({reason}) at step {self.step}, {self.images_seen / 1000:.1f} kimg, {self.elapsed / 60:.1f} min; "
                 f"{self._done_extra()}samples {self.run_dir / 'samples' / 'latest.png'}")
        return self.run_dir
