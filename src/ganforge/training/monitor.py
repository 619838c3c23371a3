"""What a run writes for people to watch: metric lines, loss curves, TensorBoard (grids: :mod:`ganforge.imaging`)."""

from __future__ import annotations

import json
import os
import string
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


class MetricsLog:
    """Metrics as JSON lines (``metrics.jsonl``), one object per logged step."""

    def __init__(self, path: Path, resume_step: Optional[int] = None):
        self.path = Path(path)
        self.records: List[Dict[str, Any]] = []
        if self.path.exists():
            from ganforge.runs import read_jsonl

            for rec in read_jsonl(self.path):  # damaged lines (a crash, a disk) are skipped with a warning
                if resume_step is None or rec.get("step", 0) <= resume_step:
                    self.records.append(rec)
            # drop what was logged after the checkpoint we resume from
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, rec: Dict[str, Any]) -> None:
        self.records.append(rec)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


@dataclass(frozen=True)
class Panel:
    """One plot of loss_curve.png: ``series`` of the metric records against kimg, each
    ``(key, label)`` or ``(key, label, style)`` and drawn from the records that hold ``key``;
    ``twin`` series go on a right-hand axis; ``empty`` is shown when no series has data yet."""

    title: str
    series: Sequence[Tuple[str, ...]]
    xlabel: str = "kimg"
    log: bool = False
    ylim: Optional[Tuple[float, float]] = None
    twin: Sequence[Tuple[str, ...]] = ()
    twin_label: str = ""
    empty: str = ""


# the adversarial curves of the GAN and video tasks: losses (with FID when evaluated) and D's outputs
ADVERSARIAL_CURVES = (
    Panel(
        "losses",
        (("loss_d", "D loss"), ("loss_g", "G loss")),
        xlabel="kimg (thousands of real images shown)",
        twin=(("fid", "FID", "k.--"),),
        twin_label="FID",
    ),
    Panel("discriminator outputs (sigmoid of logits)", (("d_real", "D(x)"), ("d_fake", "D(G(z))")), ylim=(-0.02, 1.02)),
)


def _draw(ax, records: List[Dict[str, Any]], series) -> int:
    drawn = 0
    for key, label, *style in series:
        rows = [r for r in records if key in r]
        if rows:
            ax.plot([r["kimg"] for r in rows], [r[key] for r in rows], *style, label=label)
            drawn += 1
    return drawn


def plot_curves(records: List[Dict[str, Any]], path: Path, panels: Sequence[Panel] = ADVERSARIAL_CURVES) -> None:
    """Draw ``panels`` (one row) from the metric records, written as PNG; nothing while no series has data."""
    keys = {s[0] for p in panels for s in (*p.series, *p.twin)}
    if not any(k in r for r in records for k in keys):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(11 if len(panels) <= 2 else 14, 3.8), squeeze=False)
    for ax, p in zip(axes[0], panels):
        if _draw(ax, records, p.series):
            ax.legend()
        elif p.empty:
            ax.text(0.5, 0.5, p.empty, ha="center", va="center")
        if p.log:
            ax.set_yscale("log")
        if p.ylim:
            ax.set_ylim(*p.ylim)
        ax.set_xlabel(p.xlabel)
        ax.set_title(p.title)
        if p.twin and any(s[0] in r for r in records for s in p.twin):
            tw = ax.twinx()
            _draw(tw, records, p.twin)
            tw.set_ylabel(p.twin_label)
            tw.legend(loc="center right")
    save_figure(fig, path)


class _RecordFormatter(string.Formatter):
    """``str.format`` over a record whose keys may hold dots (``val_acc_resize0.5``)."""

    def get_field(self, field_name, args, kwargs):
        return kwargs[field_name], field_name


_FMT = _RecordFormatter()


def format_pieces(pieces: Sequence[str], rec: Dict[str, Any]) -> List[str]:
    """Each format piece filled from ``rec``, leaving out the pieces whose fields ``rec`` lacks."""
    out = []
    for piece in pieces:
        fields = [f for _, f, _, _ in _FMT.parse(piece) if f]
        if all(f in rec for f in fields):
            out.append(_FMT.vformat(piece, (), rec))
    return out


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as ``path`` (PNG, 90 dpi) atomically (a reader never sees half a file); close it."""
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
