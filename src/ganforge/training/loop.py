"""The training loop every task shares: :class:`TrainingLoop` (its hooks are listed there).

The loop owns what tasks must not repeat: set-up (threads, device, bfloat16, the dataset kept on the
device, seeded batches and named random streams), the run folder and checkpoints (every network,
optimiser, random stream and counter, so a resumed CPU run ends bit for bit where an uninterrupted
one does), budgets, progress, metric windows, curves, Ctrl-C/SIGTERM, the ``best`` and ``good``
checkpoints, and several processes (``torchrun``, :mod:`ganforge.training.distributed`): each rank
takes its slice of the global batch, optimisers average gradients, statistics and stop decisions are
shared, rank 0 writes; a task's random streams are ``torch.Generator`` attributes of its trainer,
reseeded per rank, and nothing that decides control flow may depend on them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ganforge import runs
from ganforge.errors import ConfigError, RunError, WriteError
from ganforge.imaging import save_png
from ganforge.training import distributed, streams
from ganforge.training import transfer as weight_transfer
from ganforge.training.monitor import MetricsLog, Panel, TensorBoard, format_pieces, plot_curves
from ganforge.training.parts import Batcher, amp_enabled, check_finite, ema_decay, ema_update, resolve_device

# keys that may change when a run is resumed; everything else is fixed by the run
RESUMABLE_KEYS = {
    "train.steps",
    "train.kimg",
    "train.epochs",
    "train.minutes",
    "train.log_every",
    "train.sample_every",
    "train.checkpoint_every",
    "train.checkpoint_minutes",
    "train.keep_checkpoints",
    "train.progress",
    "train.tensorboard",
    "train.sync_bn",
}


# the methods a task's trainer overrides (see TrainingLoop); every other method of the loop is not
HOOKS = ("build", "train_step", "sample_grid", "evaluate", "check_step", "extra_state", "load_extra_state", "load_data")


class _MemoryLog:
    """The metrics log of ranks other than 0: records kept in memory, nothing written."""

    def __init__(self):
        self.records: List[Dict[str, Any]] = []

    def append(self, rec: Dict[str, Any]) -> None:
        self.records.append(rec)


class TrainingLoop:
    """Builds a task's networks from a config and trains them; ``run()`` returns the run folder.

    A task's trainer subclasses it and overrides these hooks, and no other method of this class:

    - ``build()``: networks into ``self.nets``, optimisers into ``self.optims``, fixed sample batches;
      runs after ``torch.manual_seed(train.seed)``. Required.
    - ``train_step() -> stats``: one step; advances ``self.step`` and ``self.images_seen``. Required.
    - ``sample_grid() -> HxWxC uint8``: the picture of a snapshot (rank 0; may log metrics). Required.
    - ``evaluate()``: after every step, before its snapshot and checkpoint (so a checkpoint holds the
      step's evaluation); the task checks whether an evaluation is due and may call :meth:`keep_best`.
    - ``check_step(stats)``: inspect a step's statistics; may raise or roll back (move ``self.step``).
      Default: raise on non-finite statistics, with ``diverged_advice``.
    - ``extra_state() -> dict`` / ``load_extra_state(state, full)``: task state saved in checkpoints
      (``full=False``: a rollback, weights and counters only).
    - ``load_data(data)``: the dataset the loop batches (default: ``data`` or ``cfg.data`` loaded);
      tasks that train on pairs or clips load them here.

    What else a task declares, as attributes (class attributes, or set in ``build()``): ``task`` (the ``cfg.task``
    it trains, checked first), ``compiles`` (False: ``train.compile`` is ignored), ``progress`` (format pieces over
    a metrics record for the progress bar; a piece whose fields are missing is left out), ``summary`` (pieces over
    the newest record holding their fields, for the final line), ``curves`` (the
    :class:`~ganforge.training.monitor.Panel` list of loss_curve.png), ``diverged_advice``, and in ``build()``:
    ``description`` (the start line), ``run_suffix`` (the run folder's name after the data), ``dataset_label``,
    ``images_per_step``, ``model_info`` (added to a checkpoint's config.json) and ``watchdog`` (with
    ``action=rollback`` the loop keeps ``checkpoints/good``). Helpers for the hooks: :meth:`rng` (named random
    streams), :meth:`keep_best`, :meth:`restore`, :meth:`real_batch`, :meth:`update_ema`, :meth:`optimizer`,
    :meth:`wrap`, :meth:`autocast`, :meth:`save`, :meth:`log`.

    ``runs_dir``: where the numbered run folder is made; ``resume``: a run folder to continue, from
    its newest intact checkpoint (``resume_from="last"``, falling back to older ones when the newest
    is damaged) or the one ``resume_from`` names (a step, ``good``, ``best``, a folder); ``data``: an
    ``ImageData`` already in memory instead of ``cfg.data``; ``log``: where messages go (default:
    standard error); ``dry_run``: build everything and run one step, writing nothing.
    """

    # ---- what a task declares (see the class doc) ---------------------------------------------
    task: str = ""  # the task (cfg.task) this trainer trains; checked before anything is built
    compiles: bool = True  # False: the task runs eagerly and train.compile is ignored (with a log line)
    progress: Sequence[str] = ()
    summary: Sequence[str] = ()
    curves: Sequence[Panel] = ()
    diverged_advice = "try lower learning rates (g_optim.lr, d_optim.lr)"
    description: Optional[str] = None
    run_suffix: Optional[str] = None
    dataset_label: Optional[str] = None
    images_per_step: Optional[int] = None
    model_info: Mapping[str, Any] = MappingProxyType({})
    watchdog = None

    def __init__(
        self,
        cfg,
        runs_dir: Path | str = "runs",
        resume: Optional[Path | str] = None,
        data=None,
        log: Optional[Callable[[str], None]] = None,
        dry_run: bool = False,
        resume_from: str = "last",
        transfer: Optional[weight_transfer.Transfer] = None,
    ):
        if self.task and cfg.task != self.task:
            raise ConfigError(
                f"task: {type(self).__name__} trains task={self.task} and needs task={self.task}, got task={cfg.task}"
            )
        self.cfg, self.dry_run = cfg, dry_run
        self._log_fn = log
        self._early_log: List[str] = []  # messages logged before the run folder exists
        self.run_dir: Optional[Path] = None
        self.nets: Dict[str, nn.Module] = {}  # every network a checkpoint holds, by file name
        self.optims: Dict[str, torch.optim.Optimizer] = {}  # every optimiser, saved as opt_<key>
        self.step, self.images_seen, self.elapsed = 0, 0, 0.0
        self._streams: Dict[str, torch.Generator] = {}  # random streams checkpointed by the loop, by state key
        self._best: Optional[Dict[str, Any]] = None  # what keep_best has kept (saved as state["best"])
        self._hooks: List[Any] = []  # gradient-averaging hooks on the optimisers (several processes)
        self._stop = self._save_due = False  # decisions every rank takes alike (see _sync)
        self._setup(data)
        if cfg.train.compile and not self.compiles:
            self.log(f"train.compile is not used by the {self.task} task: running eagerly")
        torch.manual_seed(cfg.train.seed)
        self.build()
        # init_from / freeze_d (training/transfer.py): weights copied into a new run, D blocks frozen (again on resume)
        record = weight_transfer.apply(self, transfer, resume)
        self._distribute()
        if not dry_run:
            self._open_run(runs_dir, resume, resume_from)
            if self.is_main:
                weight_transfer.save_record(self, record)

    # ---- the hooks a task overrides -------------------------------------------------------------
    def build(self) -> None:
        """Build the networks (into ``self.nets``), optimisers (``self.optims``) and anything else
        the steps need. Runs after ``torch.manual_seed(train.seed)``."""
        raise NotImplementedError

    def train_step(self) -> Dict[str, float]:
        """One training step; advances ``self.step`` and ``self.images_seen``; returns statistics."""
        raise NotImplementedError

    def sample_grid(self) -> np.ndarray:
        """The HxWxC uint8 picture a snapshot writes to ``samples/`` (may also log metrics)."""
        raise NotImplementedError

    def evaluate(self) -> None:
        """Periodic evaluation after a step (before its snapshot and checkpoint): the task decides
        whether one is due. Under several processes every rank calls it and must decide alike."""

    def check_step(self, stats: Dict[str, float]) -> None:
        """Inspect a step's statistics; may raise, or move ``self.step`` back (a rollback)."""
        check_finite(stats, self.step, self.diverged_advice)

    def extra_state(self) -> Dict[str, Any]:
        """Task state saved in checkpoints next to the loop's (random streams made with
        ``rng(..., save_as=...)`` are saved by the loop)."""
        return {}

    def load_extra_state(self, state: Dict[str, Any], full: bool) -> None:
        """Restore :meth:`extra_state` from a checkpoint's state; ``full=False`` for a rollback
        (weights and counters only: keep the task's own history)."""

    def load_data(self, data):
        """The dataset the loop batches and keeps on the device (``images`` [N, ...] uint8): ``data``
        when given, else ``cfg.data`` loaded."""
        if data is not None:
            return data
        from ganforge.data import load_dataset

        return load_dataset(self.cfg.data)

    # ---- helpers for the hooks -------------------------------------------------------------------
    def stream_seed(self, name: str) -> int:
        """The seed of the named random stream (:mod:`ganforge.training.streams`)."""
        return streams.stream_seed(self.cfg.train.seed, name)

    def rng(self, name: str, device="cpu", save_as: Optional[str] = None) -> torch.Generator:
        """A ``torch.Generator`` for the named random stream. With ``save_as`` the loop checkpoints it
        under that state key and restores it on resume; keep it as an attribute of the trainer, so
        several processes draw independent numbers (it is reseeded per rank)."""
        gen = streams.generator(self.cfg.train.seed, name, device)
        if save_as:
            self._streams[save_as] = gen
        return gen

    def keep_best(self, metric: str, value: float, lower_is_better: bool = True, label: Optional[str] = None) -> bool:
        """Record an evaluation: when ``value`` improves on the best so far, keep it (checkpointed with
        the run, so it survives a resume) and write the ``best`` checkpoint. Returns whether it did.
        Every rank calls it under several processes (it saves)."""
        if not math.isfinite(value):
            return False
        b = self._best
        if b is not None and not (value < b["value"] if lower_is_better else value > b["value"]):
            return False
        self._best = {
            "metric": metric,
            "label": label or metric,
            "value": float(value),
            "step": self.step,
            "kimg": round(self.images_seen / 1000, 3),
        }
        self.save("best")
        return True

    @property
    def good_checkpoint(self) -> Path:
        """``checkpoints/good``: the newest checkpoint written while ``self.watchdog`` was healthy."""
        return self.run_dir / "checkpoints" / "good"

    def restore(self, folder: Path) -> None:
        """Go back to a checkpoint's weights, optimisers and counters (a rollback): the random streams
        and ``extra_state`` (loaded with ``full=False``) go on."""
        self._load(Path(folder), restore_rng=False)

    def _header(self) -> str:
        """The line logged when training starts."""
        what = self.description or (
            f"{self.cfg.task} on {self.data.name} {self.images.shape[0]} images {'x'.join(map(str, self.img_shape))}"
        )
        return (
            f"training {what}, batch {self.cfg.train.batch_size}, device {self.device}, "
            f"{torch.get_num_threads()} threads; run folder {self.run_dir}"
        )

    def _world_line(self) -> str:
        """The line logged under several processes: the per-process and the global batch."""
        t = self.cfg.train
        return (
            f"{self.world} processes ({'NCCL' if self.device.type == 'cuda' else 'gloo'}): batch {t.batch_size} "
            f"per process, {t.batch_size * self.world} per step in all (train.batch_size is per process); "
            f"rank 0 writes the run folder"
        )

    def _keeps_good(self) -> bool:
        """Whether the loop keeps ``checkpoints/good`` (a watchdog that rolls back)."""
        return self.watchdog is not None and getattr(self.watchdog.cfg, "action", None) == "rollback"

    def _periodic(self) -> None:
        """Evaluation, snapshots and checkpoints after a step (not counted in images/s). Under several
        processes every rank calls it and must take the same decisions (they may not use the local clock)."""
        t = self.cfg.train
        step = self.step
        self.evaluate()
        if self.step != step:  # the evaluation rolled the run back
            return
        if self.step % t.sample_every == 0:
            self.snapshot()
        if self.step % t.checkpoint_every == 0 or self._save_due:
            self.save()

    def _plot(self) -> None:
        """Redraw the run's loss_curve.png from ``curves``."""
        if self.curves:
            plot_curves(self.metrics.records, self.run_dir / "loss_curve.png", self.curves)

    def _postfix(self, rec: Dict[str, Any]) -> str:
        """The progress bar's text for a metrics record."""
        return " ".join([*format_pieces(self.progress, rec), f"{rec['img_per_s']:.0f} img/s"])

    def _done_extra(self) -> str:
        """Added to the final 'done' line: the ``summary`` pieces and the best evaluation."""
        out = ""
        for piece in self.summary:
            rec = next((r for r in reversed(self.metrics.records) if format_pieces([piece], r)), None)
            if rec is not None:
                out += format_pieces([piece], rec)[0] + "; "
        if self._best is not None:
            v = self._best["value"]
            out += (
                f"best {self._best['label']} {v:.2f} (checkpoint 'best'); "
                if abs(v) >= 1
                else f"best {self._best['label']} {v:.4g} (checkpoint 'best'); "
            )
        return out

    def _images_per_step(self) -> int:
        return self.images_per_step or self.cfg.train.batch_size

    def _task_state(self) -> Dict[str, Any]:
        """The task's checkpointed state: its saved random streams and :meth:`extra_state`."""
        return {**{key: g.get_state() for key, g in self._streams.items()}, **self.extra_state()}

    def _restore_task_state(self, s: Dict[str, Any], full: bool) -> None:
        if full:
            for key, g in self._streams.items():
                g.set_state(s[key])
        self.load_extra_state(s, full)

    # ---- set-up shared by the tasks ----------------------------------------------------------
    def _setup(self, data) -> None:
        """Threads, device, mixed precision, the dataset (loaded once, kept on the device), batches."""
        t = self.cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = distributed.init_from_env(resolve_device(t.device))
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.is_main = self.rank == 0
        self.amp = amp_enabled(t.amp, self.device, self.log)
        self.data = self.load_data(data)
        if not getattr(self.cfg.data, "labels", True) and getattr(self.data, "labels", None) is not None:
            self.log(f"data.labels=false: the {len(self.data.class_names)} classes of {self.data.name!r} are not used")
            self.data = dataclasses.replace(self.data, labels=None, class_names=[])
        if getattr(self.data, "skipped", None):
            self.log(f"skipped {len(self.data.skipped)} unreadable image file(s), e.g. {self.data.skipped[0]}")
        n = self.data.images.shape[0]
        if t.batch_size > n:
            raise ConfigError(f"train.batch_size={t.batch_size} is larger than the dataset ({n} images)")
        self.img_shape = tuple(int(s) for s in self.data.images.shape[1:])
        self.images = self.data.images.to(self.device)
        self.batcher = Batcher(n, t.batch_size, self.stream_seed("batches"))
        self.noise_gen = self.rng("noise", self.device)

    def _distribute(self) -> None:
        """Under several processes: SyncBatchNorm (``train.sync_bn``, CUDA), rank 0's weights everywhere,
        per-rank random streams, and gradient averaging before every optimiser step."""
        if self.world == 1:
            return
        if getattr(self.cfg.train, "sync_bn", False):
            if self.device.type == "cuda":
                n = distributed.convert_sync_batchnorm(self.nets)
                self.log(f"train.sync_bn=true: {n} BatchNorm layers synchronised across {self.world} processes")
            else:
                self.log(
                    "train.sync_bn=true: SyncBatchNorm runs on CUDA only; on the CPU each process normalises "
                    "its own batch and the running statistics are averaged before every checkpoint and sample grid"
                )
        distributed.broadcast_state(self.nets)
        distributed.decorrelate(self, self.cfg.train.seed)
        self._hooks = distributed.average_gradients_before_step(self.optims)

    def close(self) -> None:
        """Release the networks and optimisers (and their gradient hooks), then leave the process group
        (barrier, ``destroy_process_group``): the clean end of a multi-process run."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.optims.clear()
        self.nets.clear()
        distributed.shutdown()

    def _open_run(self, runs_dir, resume, resume_from: str = "last") -> None:
        """A new numbered run folder (config.yaml written), or the folder being resumed (tidied after a
        crash, its checkpoint loaded); then the metrics log and TensorBoard writer, continuing at the step."""
        if resume is not None:
            self.run_dir = Path(resume)
            early, self._early_log = self._early_log, []
            for line in early:
                self.log(line)
            if self.is_main:
                for what in runs.recover(self.run_dir):
                    self.log(f"after an interrupted run: {what}")
            distributed.barrier()  # the other ranks read the checkpoints once rank 0 has tidied them
            self._resume(resume_from)
        else:
            if self.is_main:
                self.run_dir = runs.next_run_dir(Path(runs_dir), self._run_name())
                (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
            self.run_dir = Path(distributed.broadcast_object(str(self.run_dir)))
            early, self._early_log = self._early_log, []
            if self.is_main:
                with open(self.run_dir / "log.txt", "a") as f:
                    f.writelines(line + "\n" for line in early)
        if not self.is_main:  # only rank 0 writes the run folder
            self.metrics = _MemoryLog()
            self.tb = TensorBoard(self.run_dir / "tb", False)
            return
        (self.run_dir / "samples").mkdir(exist_ok=True)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", resume_step=self.step if resume else None)
        self.tb = TensorBoard(self.run_dir / "tb", self.cfg.train.tensorboard, purge_step=self.step if resume else None)

    def _run_name(self) -> str:
        """The run folder's suffix: ``name`` when set, else ``<data>-<run_suffix>``."""
        if self.cfg.name:
            return self.cfg.name
        d = self.cfg.data
        ds = self.dataset_label or {"mnist-embedded": "mnist"}.get(d.dataset, d.dataset)
        if not self.dataset_label and d.dataset == "folder" and d.root:
            ds = Path(d.root).name or "folder"
        return f"{ds}-{self.run_suffix or self.cfg.task}"

    # ---- helpers the tasks use ----------------------------------------------------------------
    def log(self, msg: str) -> None:
        """Print a message (standard error, or the ``log`` callback) and append it to the run's log.txt;
        messages from before the run folder exists are written there when it is made. Under several
        processes only rank 0 logs."""
        if not getattr(self, "is_main", True):
            return
        if self._log_fn:
            self._log_fn(msg)
        else:
            print(msg, file=sys.stderr, flush=True)
        if self.dry_run:
            return
        if self.run_dir is None:
            self._early_log.append(msg)
            return
        with open(self.run_dir / "log.txt", "a") as f:
            f.write(msg + "\n")

    @staticmethod
    def optimizer(net, o) -> torch.optim.Optimizer:
        """An optimiser from an ``OptimConfig`` (``g_optim`` / ``d_optim``) for a network, or for a list of
        parameters (one optimiser over several networks, e.g. CycleGAN's two generators)."""
        params = list(net.parameters()) if isinstance(net, nn.Module) else list(net)
        if o.name == "adam":
            return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        return torch.optim.RMSprop(params, lr=o.lr, alpha=o.beta2, weight_decay=o.weight_decay)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    def wrap(self, net: nn.Module) -> Callable:
        """What the train step calls instead of ``net``: ``torch.compile(net)`` with ``train.compile=true``
        (falling back to eager with a message where it cannot run), else ``net`` itself."""
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

    def real_batch(self, memory_format=torch.contiguous_format) -> Tuple[torch.Tensor, torch.Tensor]:
        """(images [B, C, H, W] in [-1, 1], their dataset indices): the next seeded batch, flipped
        at random (from ``noise_gen``) when ``data.hflip``."""
        idx = self.batcher.next().to(self.device)
        x = self.images[idx].float().div_(127.5).sub_(1.0)  # [B, C, H, W] in [-1, 1]
        if self.cfg.data.hflip:
            flip = torch.rand(x.shape[0], device=self.device, generator=self.noise_gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x.contiguous(memory_format=memory_format), idx

    def update_ema(self, ema: nn.Module, net: nn.Module) -> None:
        """Move ``ema`` towards ``net`` with ``train.ema_decay`` (warmed up when ``train.ema_warmup``)."""
        t = self.cfg.train
        ema_update(ema, net, ema_decay(t.ema_decay, t.ema_warmup, self.step))

    def snapshot(self) -> None:
        """Write the task's sample grid (samples/step-N.png and latest.png, TensorBoard) and the curves.
        Every rank calls it (the BatchNorm statistics are averaged first); rank 0 draws and writes."""
        distributed.average_buffers(self.nets)
        if not self.is_main:
            return
        grid = self.sample_grid()
        save_png(grid, self.run_dir / "samples" / f"step-{self.step:08d}.png")
        save_png(grid, self.run_dir / "samples" / "latest.png")
        self.tb.image("samples", grid, self.step)
        self._plot()

    # ---- checkpoints ------------------------------------------------------------------------
    def model_config(self) -> Dict[str, Any]:
        """config.json of a checkpoint: enough to rebuild the networks without the run folder (the
        shared fields, then the task's ``model_info``)."""
        from ganforge import __version__

        return {
            "ganforge_version": __version__,
            "task": self.cfg.task,
            "img_shape": list(self.img_shape),
            "class_names": [],
            "config": self.cfg.to_dict(),
            **self.model_info,
        }

    def save(self, name: Optional[str] = None) -> Path:
        """Write a checkpoint (``step-N`` by default, or a named one such as ``good``/``best``).
        Every rank calls it: BatchNorm statistics are averaged, the weights checked to agree, every
        rank's random streams and task state gathered; rank 0 writes; all wait until it is written."""
        distributed.average_buffers(self.nets)
        distributed.check_in_sync(self.nets, f"checkpoint at step {self.step}")
        ranks = distributed.all_gather_object(self._rank_state()) if self.world > 1 else []
        state = {f"opt_{k}": opt.state_dict() for k, opt in self.optims.items()}
        state.update(
            {
                "batcher": self.batcher.state_dict(),
                "noise_gen": self.noise_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "step": self.step,
                "images_seen": self.images_seen,
                "elapsed": self.elapsed,
                **self._task_state(),
                "best": self._best,
                "world_size": self.world,
                "rank_states": ranks[1:],  # ranks 1..N-1: their own streams and task state (rank 0's is above)
            }
        )
        meta = {
            "step": self.step,
            "kimg": self.images_seen / 1000,
            "epoch": self.images_seen / self.images.shape[0],
            "elapsed_s": round(self.elapsed, 3),
        }
        folder = self.run_dir / "checkpoints" / (name or f"step-{self.step:08d}")
        if name is None:
            self._last_save = time.perf_counter()
        if self.is_main:
            weights = {key: net.state_dict() for key, net in self.nets.items()}
            model_config = self.model_config()
            runs.save_checkpoint(folder, weights, model_config, state, meta)
            if name is None:
                runs.prune_checkpoints(self.run_dir, self.cfg.train.keep_checkpoints)
                if self._keeps_good() and self.watchdog.healthy():  # a checkpoint to roll back to
                    runs.save_checkpoint(self.good_checkpoint, weights, model_config, state, meta)
        distributed.barrier()  # e.g. a watchdog rollback on any rank reads what rank 0 wrote
        return folder

    def _rank_state(self) -> Dict[str, Any]:
        """What differs between ranks: the random streams and the task's own state."""
        return {
            "noise_gen": self.noise_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "extra": self._task_state(),
        }

    def _restore_rank_state(self, s: Dict[str, Any]) -> None:
        """Under several processes, after rank 0's state is loaded: this rank's own streams and task state
        when the checkpoint was written by as many processes; otherwise (another number of processes)
        fresh streams for ranks other than 0, seeded from (seed, rank, step): the data order is re-sharded."""
        saved = int(s.get("world_size", 1))
        if self.world == 1 or self.rank == 0:
            if saved != self.world:
                self.log(
                    f"the checkpoint was written by {saved} process(es), this run has {self.world}: counters, "
                    "optimisers and the data order continue; the batches are re-sharded"
                )
            return
        if saved == self.world:
            own = s["rank_states"][self.rank - 1]
            self.noise_gen.set_state(own["noise_gen"])
            torch.set_rng_state(own["torch_rng"])
            if self.device.type == "cuda" and own.get("cuda_rng"):
                torch.cuda.set_rng_state_all(own["cuda_rng"])
            self._restore_task_state(own["extra"], full=True)
        else:
            distributed.decorrelate(self, self.cfg.train.seed, self.step)

    def _load(self, folder: Path, restore_rng: bool = True) -> None:
        """Load a checkpoint: weights, optimisers and counters; with ``restore_rng`` (resume) also
        the data order, every random generator and the elapsed time; without it (a rollback) the
        run goes on with fresh batches and noise from the current generators."""
        for key, net in self.nets.items():
            runs.load_network(net, folder, key)
        s = runs.load_state(folder)
        for key, opt in self.optims.items():
            try:
                opt.load_state_dict(s[f"opt_{key}"])
            except (KeyError, ValueError) as e:
                raise RunError(
                    f"training state '{folder / 'state.pt'}' does not fit the run's optimiser {key!r}: {e}"
                ) from None
        self.step, self.images_seen = int(s["step"]), int(s["images_seen"])
        self._restore_task_state(s, full=restore_rng)
        if not restore_rng:
            return
        self._best = s["best"] if "best" in s else _legacy_best(s)
        self.elapsed = float(s["elapsed"])
        self.batcher.load_state_dict(s["batcher"])
        self.noise_gen.set_state(s["noise_gen"])
        torch.set_rng_state(s["torch_rng"])
        if self.device.type == "cuda" and s.get("cuda_rng"):
            torch.cuda.set_rng_state_all(s["cuda_rng"])
        self._restore_rank_state(s)
        self.log(f"resumed from {folder} (step {self.step}, {self.images_seen / 1000:.1f} kimg)")

    def _resume(self, which: str) -> None:
        """Load the checkpoint to continue from: ``which`` when it names one, else the newest that
        loads (a damaged newest checkpoint is reported and the next older one is used)."""
        if which != "last":
            self._load(runs.find_checkpoint(self.run_dir, which))
            return
        candidates = runs.resume_candidates(self.run_dir)
        if not candidates:
            raise RunError(
                f"run '{self.run_dir}' has no complete checkpoint to resume from (checkpoints/step-*/meta.json)"
            )
        damaged = []
        for folder in candidates:
            try:
                self._load(folder)
            except RunError as e:
                damaged.append(f"{folder.name}: {e}")
                continue
            for d in damaged:
                self.log(f"skipped a damaged checkpoint: {d}")
            if damaged:
                self.log(f"resumed from {folder.name}, the newest intact checkpoint")
            return
        raise RunError(f"run '{self.run_dir}': no checkpoint could be loaded; {'; '.join(damaged)}")

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
        per_step = self._images_per_step() * self.world
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

        return tqdm(
            total=self._expected_steps(),
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5,
            disable=True if os.environ.get("CI") else None,
        )

    def _log_window(self, window: Dict[str, float], counts: Dict[str, int], seconds: float, images: int, bar) -> None:
        rec: Dict[str, Any] = {
            "step": self.step,
            "kimg": round(self.images_seen / 1000, 3),
            "epoch": round(self.images_seen / self.images.shape[0], 3),
            "time_s": round(self.elapsed, 2),
        }
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
        stop_reason = self._done()
        if stop_reason:
            self.log(f"nothing to do: the budget ({stop_reason}) is already reached at step {self.step}")
            return self.run_dir
        self.log(self._header())
        if self.world > 1:
            self.log(self._world_line())
        self._last_save = time.perf_counter()
        try:
            return self._train()
        except OSError as e:  # a full disk or a vanished folder while writing logs, grids or curves
            raise WriteError(
                f"cannot write to the run folder '{self.run_dir}': {runs.write_failure(self.run_dir, e)}; "
                f"{self._resume_hint()}"
            ) from None
        except WriteError as e:
            raise WriteError(f"{e}; {self._resume_hint()}") from None

    def _resume_hint(self) -> str:
        last = runs.resume_candidates(self.run_dir)
        return (
            f"continue from {last[0].name} once fixed: ganforge train --resume {self.run_dir}"
            if last
            else "no checkpoint was written yet"
        )

    def _sync(self, stats: Dict[str, float], interrupted: Dict[str, int]) -> Dict[str, float]:
        """After a step: the statistics averaged over the ranks, and the decisions every rank must take
        alike: ``self.elapsed`` becomes rank 0's, a stop request on any rank stops all
        (``self._stop``), a checkpoint is due by time when it is on any rank (``self._save_due``).
        One ``all_reduce``; in one process only the local decisions."""
        t = self.cfg.train
        save_due = time.perf_counter() - self._last_save >= t.checkpoint_minutes * 60
        if self.world == 1:
            self._stop, self._save_due = interrupted["n"] > 0, save_due
            return stats
        keys = sorted(stats)
        vals = [float(stats[k]) for k in keys]
        vals += [self.elapsed if self.is_main else 0.0, float(interrupted["n"] > 0), float(save_due)]
        out = distributed.all_sum(vals)
        self.elapsed = out[len(keys)]
        self._stop, self._save_due = out[len(keys) + 1] > 0, out[len(keys) + 2] > 0
        return {k: v / self.world for k, v in zip(keys, out[: len(keys)])}

    def _train(self) -> Path:
        t = self.cfg.train
        if self.step == 0:
            self.snapshot()
            if self._keeps_good():
                self.save("good")

        interrupted = {"n": 0}
        self._stop, self._save_due = False, False

        def on_sigint(signum, frame):
            interrupted["n"] += 1
            if interrupted["n"] > 1:
                raise KeyboardInterrupt
            self.log("\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort)")

        def on_sigterm(signum, frame):  # torchrun sends it to every worker after a Ctrl-C: not a second press
            if not interrupted["n"]:
                interrupted["n"] = 1
                self.log("\nterminated (SIGTERM): finishing this step and writing a checkpoint")

        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            old_handlers = {
                signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
                signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
            }
        bar = self._progress() if self.is_main else None
        window: Dict[str, float] = {}
        counts: Dict[str, int] = {}
        win_t0, win_imgs = time.perf_counter(), self.images_seen
        t_last = time.perf_counter()
        reason = None
        try:
            while True:
                reason = self._done()
                if self.world == 1:
                    self._stop = interrupted["n"] > 0
                if reason or self._stop:  # alike on every rank: the budget and the stop flag are synchronised
                    break
                seen = self.images_seen
                stats = self.train_step()
                self.images_seen = seen + (self.images_seen - seen) * self.world  # every rank's images
                now = time.perf_counter()  # the budget is wall-clock: outputs and evaluation count too
                self.elapsed += now - t_last
                t_last = now
                stats = self._sync(stats, interrupted)
                step_before = self.step
                self.check_step(stats)
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
                    # BatchNorm running statistics agree before anything uses them (evaluations, grids,
                    # checkpoints): a few kB per step, nothing in one process
                    distributed.average_buffers(self.nets)
                    self._periodic()
                    win_t0 += time.perf_counter() - t_out  # images/s counts training only (the budget counts all)
                else:  # rolled back: start a fresh metrics window
                    window, counts, win_t0, win_imgs = {}, {}, time.perf_counter(), self.images_seen
                    if bar is not None:
                        bar.n = self.step
        finally:
            if bar is not None:
                bar.close()
            for sig, old in old_handlers.items():
                signal.signal(sig, old)
        self.elapsed += time.perf_counter() - t_last
        self.elapsed = distributed.broadcast_object(self.elapsed)
        if self.step % t.sample_every != 0:
            self.snapshot()
        if self.is_main:
            self._plot()
        folder = self.save()
        self.tb.close()
        if self._stop:
            self.log(
                f"interrupted at step {self.step}; checkpoint {folder}. "
                f"Continue with: ganforge train --resume {self.run_dir}"
            )
            raise KeyboardInterrupt
        self.log(
            f"done ({reason}) at step {self.step}, {self.images_seen / 1000:.1f} kimg, {self.elapsed / 60:.1f} min; "
            f"{self._done_extra()}samples {self.run_dir / 'samples' / 'latest.png'}"
        )
        return self.run_dir


def _legacy_best(s: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The best evaluation of a checkpoint written before ``keep_best`` (no ``best`` key): translate's
    ``best_fid``, or the GAN evaluator's own ``best_fid``."""
    for value, metric, label in (
        (s.get("best_fid"), "select_fid", "selection FID"),
        ((s.get("evaluator") or {}).get("best_fid"), "fid", "FID"),
    ):
        if value is not None and math.isfinite(float(value)):
            return {"metric": metric, "label": label, "value": float(value), "step": None, "kimg": None}
    return None
