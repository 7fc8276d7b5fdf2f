"""`python -m tfqa inspect`: everything known about a training run, from the files in its folder.

The files and their names are `tfqa.core.run_dir`'s; history.json and
training.png are `tfqa.core.history`'s. No TensorFlow here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from tfqa.core.history import best_epoch, history_steps
from tfqa.core.metrics import exact_match_of
from tfqa.core.resume import RECORDED_PER_EPOCH
from tfqa.training.presets import preset_of
from tfqa.core.run_dir import (DEFAULT_EXPORT, HISTORY_FILE, KERAS_MODEL_FILE, MODEL_CONFIG_FILE, PLOT_FILE,
                               RESULTS_FILE, RUN_FILES, SETTINGS_FILE, RunDirError, checkpoint_path,
                               read_run_json, saved_model_backend)


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
    if not any((out / name).is_file() for name in RUN_FILES):
        raise RunDirError(f"{output_dir}: not a tfqa run (it has none of {', '.join(RUN_FILES)}; expected the "
                          "--output_dir of train_keras.py)")
    missing: list[dict] = []
    settings = _read_json(out, SETTINGS_FILE, missing, "the run's settings (written when training ends: still "
                          "training, or stopped early?)")
    results = _read_json(out, RESULTS_FILE, missing, "the final dev metrics (written after the final evaluation; "
                         "none for a run without evaluation)")
    history = _read_json(out, HISTORY_FILE, missing, "per-step losses and data sizes (runs from before tfqa "
                         "recorded them have none)")
    keras_hub = saved_model_backend(out) == "keras_hub"  # its model.keras holds the config: no config.json
    model_config = {"architectures": [f"keras-hub QA model ({KERAS_MODEL_FILE})"]} if keras_hub else _read_json(
        out, MODEL_CONFIG_FILE, missing, "the model's config (save_pretrained, when training ends)")
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
        "changed_on_resume": _changed_on_resume(history),
        "epochs": [_epoch_row(e) for e in epochs],
        "best_epoch": best and {"epoch": best["epoch"], "exact": exact_match_of(best), "f1": best["f1"]},
        "final": final or None,
        "export": _export_info(out, config, history, results),
        "plot": str(plot) if plot.is_file() else None,
        "missing": missing,
    }
    last = epochs[-1]["epoch"] if epochs else None
    if best and best["epoch"] != last:
        checkpoint = checkpoint_path(out, best["epoch"], (config or {}).get("backend", "transformers"))
        report["best_epoch"]["note"] = (f"the saved model is the last epoch's ({last}); the best epoch's weights are "
                                        + (str(checkpoint) if checkpoint.is_file() else "not kept"))
    return report


def _changed_on_resume(history: dict) -> dict:
    """{flag name: [{"value", "epochs"}, ...]} for each schedule setting a resume changed, from the values each
    epoch record was trained with (history.json's "config" holds the last attempt's only)."""
    changed = {}
    records = sorted((e for e in history.get("epochs", []) if not e.get("partial") and "trained_with" in e),
                     key=lambda e: e.get("epoch", 0))
    for name in RECORDED_PER_EPOCH:
        spans: list[dict] = []
        for record in records:
            value = record["trained_with"].get(name)
            if spans and spans[-1]["value"] == value:
                spans[-1]["epochs"].append(record.get("epoch"))
            else:
                spans.append({"value": value, "epochs": [record.get("epoch")]})
        if len(spans) > 1:
            changed[name] = spans
    return changed


def _spans(spans: list[dict]) -> str:
    """E.g. "0.001 (epoch 1), 0.002 (epochs 2–4)"."""
    def epochs(numbers):
        return f"epoch {numbers[0]}" if len(numbers) == 1 else f"epochs {numbers[0]}–{numbers[-1]}"
    return ", ".join(f"{_num(span['value'])} ({epochs(span['epochs'])})" for span in spans)


def _read_json(out: Path, name: str, missing: list, what: str) -> dict:
    path = out / name
    if not path.is_file():
        missing.append({"file": name, "why": what})
        return {}
    try:
        return read_run_json(path)
    except RunDirError as e:
        missing.append({"file": name, "why": f"{str(e).removeprefix(f'{path}: ')}: {what}"})
        return {}


def _epoch_row(record: dict) -> dict:
    row = {"epoch": record.get("epoch"), "loss": record.get("loss")}
    for key in ("exact", "f1", "HasAns_f1", "NoAns_f1"):
        value = exact_match_of(record) if key == "exact" else record.get(key)
        if value is not None:
            row[key] = value
    return row


def _without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


def _first(mapping: dict, *keys):
    return next((mapping[k] for k in keys if k in mapping), None)


def _model_info(config: dict, model_config: dict) -> dict:
    preset = preset_of(config)
    architectures = model_config.get("architectures") or []
    return {
        # A preset may build its model from scratch; model_name_or_path then keeps its unused default.
        "model_name_or_path": preset.model_description if preset else config.get("model_name_or_path"),
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
    candidates.append(out / DEFAULT_EXPORT)
    base = next((c for c in candidates if c.is_dir()), None)
    info = {"recorded": recorded, "base": str(base) if base else None, "versions": [], "newest": None}
    if base:
        from tfqa.export.versions import version_dirs

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
    schedule = f"{_num(s['epochs'])} epoch{'' if s['epochs'] == 1 else 's'}"
    if s["steps_per_epoch"]:
        schedule += f" × {s['steps_per_epoch']:,} steps"
    if s["steps_trained"]:
        schedule += f" ({s['steps_trained']:,} steps recorded)"
    batch = f"batch {s['global_batch'] or s['per_replica_batch_size']}"
    if s["replicas"] and s["replicas"] > 1:
        batch += f" ({s['per_replica_batch_size']} per replica × {s['replicas']})"
    changed = dict(report.get("changed_on_resume") or {})
    rate = _spans(changed.pop("learning_rate")) if "learning_rate" in changed else _num(s["learning_rate"])
    lines.append(f"  settings  {schedule}, {batch}, learning rate {rate}"
                 + (f" (warmup {s['warmup_ratio']:.0%})" if s["warmup_ratio"] is not None else ""))
    if changed:
        lines.append("            changed on resume: " + "; ".join(f"--{name} {_spans(spans)}"
                                                                   for name, spans in changed.items()))
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
        text = f"EM {exact_match_of(final):.2f}, F1 {final['f1']:.2f}"
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
