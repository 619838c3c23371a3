"""What a run writes for people to watch: metric lines, loss curves, TensorBoard (grids: :mod:`ganforge.imaging`)."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np



class MetricsLog:
    """Metrics as JSON lines (``metrics.jsonl``), one object per logged step."""

    def __init__(self, path: Path, resume_step: Optional[int] = None):
        self.path = Path(path)
        self.records: List[Dict[str, Any]] = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if resume_step is None or rec.get("step", 0) <= resume_step:
                    self.records.append(rec)
            # drop what was logged after the checkpoint we resume from
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, rec: Dict[str, Any]) -> None:
        self.records.append(rec)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def plot_curves(records: List[Dict[str, Any]], path: Path) -> None:
    """Loss curves and D outputs against kimg, written as PNG."""
    rows = [r for r in records if "loss_d" in r]
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["kimg"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(x, [r["loss_d"] for r in rows], label="D loss")
    axes[0].plot(x, [r["loss_g"] for r in rows], label="G loss")
    axes[0].set_xlabel("kimg (thousands of real images shown)")
    axes[0].set_title("losses")
    axes[0].legend()
    axes[1].plot(x, [r["d_real"] for r in rows], label="D(x)")
    axes[1].plot(x, [r["d_fake"] for r in rows], label="D(G(z))")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_xlabel("kimg")
    axes[1].set_title("discriminator outputs (sigmoid of logits)")
    axes[1].legend()
    evals = [r for r in records if "fid" in r]
    if evals:
        ax = axes[0].twinx()
        ax.plot([r["kimg"] for r in evals], [r["fid"] for r in evals], "k.--", label="FID")
        ax.set_ylabel("FID")
        ax.legend(loc="center right")
    save_figure(fig, path)


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as ``path`` (PNG, 90 dpi) atomically, so a reader never sees half a file, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


class TensorBoard:
    """Thin wrapper that turns itself off with one warning when tensorboard is missing."""

    def __init__(self, log_dir: Path, enabled: bool, purge_step: Optional[int] = None):
        self.writer = None
        if not enabled:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        except ImportError:
            warnings.warn("tensorboard is not installed: TensorBoard logging is off (pip install tensorboard)")

    def scalars(self, values: Dict[str, float], step: int) -> None:
        if self.writer:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)

    def image(self, tag: str, grid_hwc: np.ndarray, step: int) -> None:
        if self.writer:
            self.writer.add_image(tag, grid_hwc, step, dataformats="HWC")

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()
