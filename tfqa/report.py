"""A run's record and its report: history.json, training.png and `python -m tfqa inspect`.

Training keeps, in `OUTPUT_DIR/history.json` (rewritten atomically after every
epoch), the data sizes, the settings, and one record per epoch: its mean loss,
the loss of every optimizer step, and the dev metrics when the run evaluates.
`training.png` is drawn from it (`tfqa.plots`), and `run_report` reads it with
the other files of the run for `inspect`. No TensorFlow here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

HISTORY_FILE = "history.json"
PLOT_FILE = "training.png"
RESULTS_FILE = "eval_results.json"
SETTINGS_FILE = "tfqa_config.json"
MODEL_CONFIG_FILE = "config.json"

_RUN_FILES = (SETTINGS_FILE, RESULTS_FILE, HISTORY_FILE)


class RunDirError(Exception):
    """The directory is not a training run's output directory (one-line message)."""


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
        history = json.loads((Path(output_dir) / HISTORY_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return history if isinstance(history, dict) else {}


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
    from tfqa.plots import save_png, training_figure

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
            results = json.loads((out / RESULTS_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            results = {}
        history = {"epochs": results.get("epochs") or []} if isinstance(results, dict) else {}
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


def exact(record: dict):
    """EM of a metrics dict: "exact" in SQuAD v2.0 results, "exact_match" in v1.1."""
    return record.get("exact", record.get("exact_match"))


def run_report(output_dir: str | Path) -> dict:
    """Everything known about a run from the files in its output directory, as a JSON-able dict.

    Missing or unreadable files are listed under "missing" and the rest is
    still reported; a directory holding none of the run files raises RunDirError.
    """
    out = Path(output_dir)
    if not out.exists():
        raise RunDirError(f"{output_dir}: no such directory")
    if not out.is_dir():
        raise RunDirError(f"{output_dir}: not a directory (expected the --output_dir of a training run)")
    if not any((out / name).is_file() for name in _RUN_FILES):
        raise RunDirError(f"{output_dir}: not a tfqa run (it has none of {', '.join(_RUN_FILES)}; expected the "
                          "--output_dir of train_keras.py)")
    missing: list[dict] = []
    settings = _read_json(out, SETTINGS_FILE, missing, "the run's settings (written when training ends: still "
                          "training, or stopped early?)")
    results = _read_json(out, RESULTS_FILE, missing, "the final dev metrics (written after the final evaluation; "
                         "none for a run without evaluation)")
    history = _read_json(out, HISTORY_FILE, missing, "per-step losses and data sizes (runs from before tfqa "
                         "recorded them have none)")
    model_config = _read_json(out, MODEL_CONFIG_FILE, missing, "the model's config (save_pretrained, when "
                              "training ends)")
    config = settings or history.get("config") or {}

    epochs = [_without(e, "step_losses") for e in history.get("epochs", []) if not e.get("partial")]
    if not any("f1" in e for e in epochs) and results.get("epochs"):
        epochs = results["epochs"]  # a run from before history.json
    best = best_epoch(epochs)
    final = {k: v for k, v in results.items() if k not in ("epochs", "export")}
    steps, _ = history_steps(history)
    plot = out / PLOT_FILE
    if not plot.is_file():
        missing.append({"file": PLOT_FILE, "why": "the training plot (drawn after every epoch; `python -m tfqa inspect "
                        f"{output_dir} --plot` draws it from {HISTORY_FILE} or {RESULTS_FILE})"})
    report = {
        "output_dir": str(output_dir),
        "data": {
            "train_file": config.get("train_file"), "predict_file": config.get("predict_file"),
            "train_questions": history.get("train_questions"), "train_windows": history.get("train_windows"),
            "eval_questions": history.get("eval_questions") or final.get("total"),
            "eval_windows": history.get("eval_windows"),
        },
        "model": _model_info(config, model_config),
        "settings": {
            "epochs": config.get("num_train_epochs"), "steps_per_epoch": history.get("steps_per_epoch"),
            "steps_trained": len(steps) or None,
            "per_replica_batch_size": config.get("per_replica_batch_size"), "replicas": history.get("replicas"),
            "global_batch": history.get("global_batch"), "learning_rate": config.get("learning_rate"),
            "warmup_ratio": config.get("warmup_ratio"), "max_seq_length": config.get("max_seq_length"),
            "doc_stride": config.get("doc_stride"), "max_query_length": config.get("max_query_length"),
            "squad_version": None if "version_2_with_negative" not in config
            else "2.0" if config["version_2_with_negative"] else "1.1",
            "seed": config.get("seed"),
        },
        "epochs": [_epoch_row(e) for e in epochs],
        "best_epoch": best and {"epoch": best["epoch"], "exact": exact(best), "f1": best["f1"]},
        "final": final or None,
        "export": _export_info(out, config, history, results),
        "plot": str(plot) if plot.is_file() else None,
        "missing": missing,
    }
    last = epochs[-1]["epoch"] if epochs else None
    if best and best["epoch"] != last:
        checkpoint = out / "checkpoints" / f"epoch-{best['epoch']:02d}.h5"
        report["best_epoch"]["note"] = (f"the saved model is the last epoch's ({last}); the best epoch's weights are "
                                        + (str(checkpoint) if checkpoint.is_file() else "not kept"))
    return report


def _read_json(out: Path, name: str, missing: list, what: str) -> dict:
    path = out / name
    if not path.is_file():
        missing.append({"file": name, "why": what})
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        missing.append({"file": name, "why": f"unreadable ({e}): {what}"})
        return {}
    if not isinstance(value, dict):
        missing.append({"file": name, "why": f"not a JSON object: {what}"})
        return {}
    return value


def _epoch_row(record: dict) -> dict:
    row = {"epoch": record.get("epoch"), "loss": record.get("loss")}
    for key in ("exact", "f1", "HasAns_f1", "NoAns_f1"):
        value = exact(record) if key == "exact" else record.get(key)
        if value is not None:
            row[key] = value
    return row


def _without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


def _first(mapping: dict, *keys):
    return next((mapping[k] for k in keys if k in mapping), None)


def _model_info(config: dict, model_config: dict) -> dict:
    smoke = config.get("preset") == "smoke"
    architectures = model_config.get("architectures") or []
    return {
        # The smoke preset builds its tiny model from scratch; model_name_or_path keeps its unused default.
        "model_name_or_path": "built from scratch (--preset smoke)" if smoke
        else config.get("model_name_or_path"),
        "model_type": model_config.get("model_type"),
        "architecture": architectures[0] if architectures else None,
        "hidden_size": _first(model_config, "hidden_size", "dim", "d_model", "n_embd"),
        "layers": _first(model_config, "num_hidden_layers", "n_layers", "num_layers", "n_layer"),
        "attention_heads": _first(model_config, "num_attention_heads", "n_heads", "n_head"),
        "vocab_size": model_config.get("vocab_size"),
    }


def _export_info(out: Path, config: dict, history: dict, results: dict) -> dict:
    """Where the TF Serving export is and which versions it holds.

    Recorded paths are relative to where training ran, so the default place
    under the given output directory is also tried.
    """
    recorded = history.get("export") or results.get("export")
    candidates = [Path(recorded).parent] if recorded else []
    export_dir = config.get("export_dir") or ""
    if export_dir and export_dir != "none":
        candidates.append(Path(export_dir))
    candidates.append(out / "export" / "tfqa")
    base = next((c for c in candidates if c.is_dir()), None)
    info = {"recorded": recorded, "base": str(base) if base else None, "versions": [], "newest": None}
    if base:
        from tfqa.servables import version_dirs

        info["versions"] = sorted(version_dirs(base))
        info["newest"] = str(base / str(info["versions"][-1])) if info["versions"] else None
    elif export_dir == "none":
        info["note"] = "export disabled (--export_dir none)"
    return info


def format_report(report: dict) -> str:
    """The report as a few lines of text for a terminal."""
    data, model, s = report["data"], report["model"], report["settings"]
    lines = [f"run: {report['output_dir']}"]

    def sizes(questions, windows):
        parts = [f"{questions:,} questions" if questions else "", f"{windows:,} windows" if windows else ""]
        return ", ".join(p for p in parts if p) or "sizes not recorded"

    lines.append(f"  data      train {data['train_file'] or '?'}: {sizes(data['train_questions'], data['train_windows'])}")
    lines.append(f"            dev   {data['predict_file'] or '?'}: {sizes(data['eval_questions'], data['eval_windows'])}")
    shape = ", ".join(p for p in (
        f"hidden size {model['hidden_size']}" if model["hidden_size"] else "",
        f"{model['layers']} layers" if model["layers"] else "",
        f"{model['attention_heads']} heads" if model["attention_heads"] else "",
        f"vocab {model['vocab_size']:,}" if model["vocab_size"] else "") if p)
    kind = " / ".join(p for p in (model["model_type"], model["architecture"]) if p)
    lines.append(f"  model     {model['model_name_or_path'] or '?'}" + (f": {kind}" if kind else "")
                 + (f", {shape}" if shape else ""))
    schedule = f"{_num(s['epochs'])} epochs"
    if s["steps_per_epoch"]:
        schedule += f" × {s['steps_per_epoch']:,} steps"
    if s["steps_trained"]:
        schedule += f" ({s['steps_trained']:,} steps recorded)"
    batch = f"batch {s['global_batch'] or s['per_replica_batch_size']}"
    if s["replicas"] and s["replicas"] > 1:
        batch += f" ({s['per_replica_batch_size']} per replica × {s['replicas']})"
    lines.append(f"  settings  {schedule}, {batch}, learning rate {_num(s['learning_rate'])}"
                 + (f" (warmup {s['warmup_ratio']:.0%})" if s["warmup_ratio"] is not None else ""))
    lines.append(f"            max_seq_length {_num(s['max_seq_length'])}, doc_stride {_num(s['doc_stride'])}, "
                 f"max_query_length {_num(s['max_query_length'])}, SQuAD {s['squad_version'] or '?'}, "
                 f"seed {_num(s['seed'])}")

    epochs = report["epochs"]
    if epochs:
        columns = [("epoch", "epoch", "{:>5}"), ("loss", "mean loss", "{:>9.4f}"), ("exact", "EM", "{:>6.2f}"),
                   ("f1", "F1", "{:>6.2f}"), ("HasAns_f1", "HasAns F1", "{:>9.2f}"), ("NoAns_f1", "NoAns F1", "{:>8.2f}")]
        columns = [c for c in columns if any(e.get(c[0]) is not None for e in epochs)]
        lines.append("")
        lines.append("  " + "  ".join(f"{title:>{len(fmt.format(0))}}" for _, title, fmt in columns))
        for e in epochs:
            cells = [fmt.format(e[key]) if e.get(key) is not None else f"{'–':>{len(fmt.format(0))}}"
                     for key, _, fmt in columns]
            lines.append("  " + "  ".join(cells))
        lines.append("")
    best = report["best_epoch"]
    if best:
        lines.append(f"  best      epoch {best['epoch']}: F1 {best['f1']:.2f}, EM {best['exact']:.2f}"
                     + (f" — {best['note']}" if best.get("note") else ""))
    elif epochs:
        lines.append("  best      no per-epoch evaluation recorded")
    final = report["final"]
    if final:
        text = f"EM {exact(final):.2f}, F1 {final['f1']:.2f}"
        if final.get("total"):
            text += f" on {final['total']:,} questions"
        if "HasAns_f1" in final and "NoAns_f1" in final:
            text += (f" (HasAns F1 {final['HasAns_f1']:.2f} on {final.get('HasAns_total', 0):,}, NoAns F1 "
                     f"{final['NoAns_f1']:.2f} on {final.get('NoAns_total', 0):,})")
        elif "HasAns_f1" in final:
            text += f" (all {final.get('HasAns_total', 0):,} answerable)"
        if final.get("best_f1") is not None:
            text += f"; best F1 {final['best_f1']:.2f} at null threshold {final.get('best_f1_thresh', 0):.2f}"
        lines.append(f"  final     {text}")
    export = report["export"]
    if export["versions"]:
        versions = ", ".join(str(v) for v in export["versions"])
        lines.append(f"  export    {export['base']}: version{'s' * (len(export['versions']) > 1)} {versions} "
                     f"(newest: {export['newest']})")
    elif export["base"]:
        lines.append(f"  export    {export['base']}: no versions in it")
    else:
        lines.append(f"  export    none{' (' + export['note'] + ')' if export.get('note') else ''}")
    lines.append(f"  plot      {report['plot'] or 'none'}")
    for item in report["missing"]:
        lines.append(f"  missing   {item['file']}: {item['why']}")
    return "\n".join(lines)


def _num(value) -> str:
    if value is None:
        return "?"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)
