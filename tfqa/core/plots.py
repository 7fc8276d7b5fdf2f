"""The training plot: loss per optimizer step, and dev EM/F1 per epoch.

Drawn with matplotlib's Agg renderer on a standalone `Figure` (no pyplot, no
global backend switch, no display needed), from plain numbers, so the same
function serves the Keras callback during training and `python -m tfqa
inspect --plot` afterwards.
"""

from __future__ import annotations

import io
import math
import os
from typing import Sequence

import numpy as np

from tfqa.core.metrics import exact_match_of

# (history key, legend label, line style) of the per-epoch evaluation curves; HasAns/NoAns exist for SQuAD 2.0.
EVAL_CURVES = (
    ("f1", "F1", dict(marker="o", linewidth=2.0, color="tab:blue")),
    ("exact", "EM", dict(marker="s", linewidth=2.0, color="tab:orange")),
    ("HasAns_f1", "HasAns F1", dict(marker=".", linewidth=1.0, linestyle="--", color="tab:green")),
    ("NoAns_f1", "NoAns F1", dict(marker=".", linewidth=1.0, linestyle="--", color="tab:red")),
)


def smooth(values: Sequence[float], span: int) -> np.ndarray:
    """Exponential moving average over about `span` steps, bias-corrected at the start (as TensorBoard's).

    Non-finite values are skipped (the average carries over them).
    """
    alpha = 2.0 / (max(1, span) + 1)
    out = np.empty(len(values))
    average, weight = 0.0, 0.0
    for i, value in enumerate(values):
        if value is not None and math.isfinite(value):
            average = (1 - alpha) * average + alpha * value
            weight = (1 - alpha) * weight + alpha
        out[i] = average / weight if weight else np.nan
    return out


def training_figure(steps: Sequence[int], losses: Sequence[float], epochs: Sequence[dict] = (), *,
                    steps_per_epoch: int = 0, title: str = ""):
    """A matplotlib Figure: per-step loss (raw and smoothed) and, when `epochs` have metrics, EM/F1 per epoch.

    `steps` are the global optimizer step numbers of `losses` (gaps are fine: a
    resumed run may lack earlier epochs); `epochs` are history records with
    "epoch" and optionally "exact"/"exact_match", "f1", "HasAns_f1", "NoAns_f1".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [e for e in epochs if _metric(e, "f1") is not None]
    fig = Figure(figsize=(11, 4) if rows else (7, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=(3, 2)) if rows else fig.add_gridspec(1, 1)
    ax = fig.add_subplot(grid[0, 0])
    _loss_panel(ax, np.asarray(steps, dtype=float), np.asarray(losses, dtype=float), steps_per_epoch)
    if rows:
        _eval_panel(fig.add_subplot(grid[0, 1]), rows)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _loss_panel(ax, steps: np.ndarray, losses: np.ndarray, steps_per_epoch: int) -> None:
    finite = np.isfinite(losses)
    if not finite.any():
        ax.text(0.5, 0.5, "no training steps recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss per step")
    span = max(5, len(losses) // 40)
    ax.plot(steps, smooth(losses, span), color="tab:blue", linewidth=2.0, label=f"smoothed (EMA over ~{span} steps)")
    if steps_per_epoch:
        for boundary in range(steps_per_epoch, int(steps.max()), steps_per_epoch):
            ax.axvline(boundary + 0.5, color="0.6", linewidth=0.8, linestyle=":")
    positive = losses[finite & (losses > 0)]
    # Losses fall by orders of magnitude; a log axis keeps the end of training readable.
    if len(positive) == finite.sum() and positive.max() / positive.min() > 30:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_yscale("log")
        ax.set_ylabel("training loss (log scale)")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))  # 0.1, not 10^-1
        # Minor ticks: label 2× and 5× only, and only while few decades are shown.
        two_five = FuncFormatter(lambda y, _: f"{y:g}" if f"{y:.0e}"[0] in "25" else "")
        ax.yaxis.set_minor_formatter(two_five if positive.max() / positive.min() < 1000 else NullFormatter())
    else:
        ax.set_ylabel("training loss")
    ax.set_xlabel("optimizer step" + (" (dotted: epoch ends)" if steps_per_epoch and steps.max() > steps_per_epoch
                                      else ""))
    ax.set_xlim(0, steps.max() + 1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)


def _eval_panel(ax, rows: Sequence[dict]) -> None:
    for key, label, style in EVAL_CURVES:
        points = [(e["epoch"], _metric(e, key)) for e in rows if _metric(e, key) is not None]
        if points:
            ax.plot(*zip(*points), label=label, **style)
    best = max(rows, key=lambda e: (_metric(e, "f1"), -e["epoch"]))
    best_f1 = _metric(best, "f1")
    ax.annotate(f"best F1 {best_f1:.1f}\n(epoch {best['epoch']})", (best["epoch"], best_f1), textcoords="offset points",
                xytext=(0, -28 if best_f1 > 50 else 10), ha="center", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev score (%)")
    ax.set_ylim(-2, 102)
    epochs = [e["epoch"] for e in rows]
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.set_xticks(range(min(epochs), max(epochs) + 1))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def _metric(record: dict, key: str):
    """A metric from an epoch record ("exact": the EM under either SQuAD version's name)."""
    value = exact_match_of(record) if key == "exact" else record.get(key)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def figure_png(fig) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(fig, path: str | os.PathLike):
    """Writes the figure as a PNG, atomically (a watcher never sees half an image)."""
    from tfqa.core.files import write_bytes_atomic

    return write_bytes_atomic(path, figure_png(fig))
