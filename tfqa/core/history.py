"""A run's record: history.json and training.png, written while training and read by `inspect`.

Training keeps, in `OUTPUT_DIR/history.json` (rewritten atomically after every
epoch), the data sizes, the settings, and one record per epoch: its mean loss,
the loss of every optimizer step, and the dev metrics when the run evaluates.
`training.png` is drawn from it (`tfqa.core.plots`). No TensorFlow here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from tfqa.core.run_dir import HISTORY_FILE, PLOT_FILE, RESULTS_FILE, RunDirError, read_run_json


def step_losses_from_running_means(means: Sequence[float]) -> list[float]:
    """The loss of each optimizer step of one epoch, from the running means tf-keras logs after each batch.

    tf-keras puts in the batch logs the mean loss of the epoch so far (its loss
    tracker is a `Mean` weighted by batch size, reset every epoch). tfqa's
    training batches all have the same size (the pipeline repeats the data
    before batching), so step t's loss is t·mean_t − (t−1)·mean_{t−1}. The
    means are float32, so a recovered value is exact to about t × 1e-7 of the
    loss: ~1e-3 of it after 10,000 steps of one epoch, invisible in a plot.
    """
    steps, previous = [], 0.0
    for t, mean in enumerate(means, 1):
        steps.append(t * mean - (t - 1) * previous)
        previous = mean
    return steps


def load_history(output_dir: str | Path) -> dict:
    """The run's history.json, or {} when there is none (or it cannot be read)."""
    try:
        return read_run_json(Path(output_dir) / HISTORY_FILE)
    except RunDirError:
        return {}


def history_steps(history: dict) -> tuple[list[int], list[float]]:
    """(global optimizer step numbers, losses) of every recorded step, in order.

    Step numbers come from the epoch number and `steps_per_epoch`, so the
    steps of a resumed run whose history lacks earlier epochs land where they belong.
    """
    epochs = sorted(history.get("epochs", []), key=lambda e: e.get("epoch", 0))
    per_epoch = history.get("steps_per_epoch") or max((len(e.get("step_losses") or []) for e in epochs), default=0)
    steps, losses = [], []
    for record in epochs:
        first = (record.get("epoch", 1) - 1) * per_epoch
        for i, loss in enumerate(record.get("step_losses") or []):
            steps.append(first + i + 1)
            losses.append(math.nan if loss is None else loss)
    return steps, losses


def write_training_plot(path: str | Path, history: dict, title: str = "") -> Path:
    """Draws `history` (see the module docstring) into a PNG at `path`, atomically."""
    from tfqa.core.plots import save_png, training_figure

    steps, losses = history_steps(history)
    return save_png(training_figure(steps, losses, history.get("epochs", []),
                                    steps_per_epoch=history.get("steps_per_epoch") or 0, title=title), path)


def redraw_plot(output_dir: str | Path) -> Path:
    """Draws OUTPUT_DIR/training.png again from history.json, or from eval_results.json's epochs (older runs).

    Raises RunDirError when neither has any epoch.
    """
    out = Path(output_dir)
    history = load_history(out)
    if not history.get("epochs"):
        try:
            results = read_run_json(out / RESULTS_FILE)
        except RunDirError:
            results = {}
        history = {"epochs": results.get("epochs") or []}
    if not history.get("epochs"):
        raise RunDirError(f"{output_dir}: nothing to plot (no epochs in {HISTORY_FILE} or {RESULTS_FILE})")
    return write_training_plot(out / PLOT_FILE, history, plot_title(output_dir, history))


def plot_title(output_dir: str | Path, history: dict) -> str:
    epochs = [e for e in history.get("epochs", []) if not e.get("partial")]
    steps, _ = history_steps(history)
    title = f"{output_dir}: {len(epochs)} epoch{'s' * (len(epochs) != 1)}" + (f", {len(steps):,} steps" if steps else "")
    best = best_epoch(epochs)
    if best:
        title += f"; best dev F1 {best['f1']:.1f} (epoch {best['epoch']})"
    return title


def best_epoch(epochs: Sequence[dict]) -> dict | None:
    """The epoch record with the highest dev F1 (the earliest on ties); None without evaluation."""
    scored = [e for e in epochs if isinstance(e.get("f1"), (int, float))]
    return max(scored, key=lambda e: (e["f1"], -e.get("epoch", 0))) if scored else None


def finished_training(output_dir: str | Path, settings: dict) -> dict:
    """The history of a run with these settings whose training finished but whose end did not ({} otherwise).

    Training ends with the evaluation and the export; `RecordHistory.finish` then records "final".
    A run stopped in between (Ctrl-C, SIGKILL during the export) has every planned epoch complete
    and no "final": rerun, it evaluates and exports the weights of its last epoch instead of training
    again (tf-keras deletes its backup when training ends, so it would start over from epoch 1).
    """
    history = load_history(output_dir)
    planned = history.get("epochs_planned")
    if not isinstance(planned, int) or planned < 1 or "final" in history or history.get("config") != settings:
        return {}
    done = {e.get("epoch") for e in history.get("epochs", []) if not e.get("partial")}
    return history if done >= set(range(1, planned + 1)) else {}


def interruption_summary(output_dir: str | Path) -> str:
    """What a run cut short by Ctrl-C leaves, from its history.json, e.g.
    "interrupted after 250 training steps (2 of 4 epochs complete); the same command resumes from epoch 3".

    The backup tf-keras resumes from is written at each epoch's end, right after history.json,
    so the first epoch not complete in the history is the one a rerun starts at.
    """
    history = load_history(output_dir)
    epochs = history.get("epochs", [])
    if not epochs:
        return "interrupted before the first training step was recorded; nothing to resume: the same command starts again"
    steps = sum(len(e.get("step_losses") or []) for e in epochs)
    done = max((e.get("epoch", 0) for e in epochs if not e.get("partial")), default=0)
    planned = history.get("epochs_planned")
    if planned and done >= planned:
        return (f"interrupted after training ({steps:,} steps, {done} epochs); the same command evaluates and "
                "exports the trained model without training again")
    of = f" of {planned}" if planned else ""
    return (f"interrupted after {steps:,} training steps ({done}{of} epochs complete); "
            f"the same command resumes from epoch {done + 1}")
