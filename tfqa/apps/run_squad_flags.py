"""The flags of Transformers' legacy `run_squad.py` that are not tfqa settings, accepted by `train_keras.py`.

People come to tfqa with a run_squad.py command line. Its settings flags are
`TrainConfig` settings of the same name (`--gradient_accumulation_steps`,
`--warmup_steps`, `--save_steps`, ...); the rest are here: flags that change
how the command runs (`--fp16`, `--overwrite_output_dir`, `--verbose_logging`)
and flags for PyTorch machinery tfqa does not have, each accepted with one
line on what tfqa does instead.
"""

from __future__ import annotations

import argparse

# flag → (argparse keywords, the note printed when the flag is given; None: no note, the flag acts)
FLAGS: dict[str, tuple[dict, str | None]] = {
    "--fp16": (dict(action="store_true", help="same as --mixed_precision fp16"), None),
    "--overwrite_output_dir": (dict(action="store_true", help="train into an --output_dir that holds a finished "
                                    "run, replacing its outputs (without it, such a folder is refused; an "
                                    "interrupted run resumes)"), None),
    "--verbose_logging": (dict(action="store_true", help="same as --verbose"), None),
    "--evaluate_during_training": (dict(action="store_true", help="accepted: tfqa evaluates after every epoch "
                                        "when there is dev data"),
                                   "tfqa evaluates on --predict_file after every epoch (eval_results.json, "
                                   "history.json)"),
    "--eval_all_checkpoints": (dict(action="store_true", help="accepted: every epoch's checkpoint is scored "
                                    "during training"),
                               "every epoch's checkpoint is scored when it is saved (the 'epochs' of "
                               "eval_results.json)"),
    "--threads": (dict(type=int, default=None, help="accepted: the fast tokenizer uses its own threads"),
                  "tokenization runs in the fast tokenizer's own threads"),
    "--lang_id": (dict(type=int, default=None, help="accepted: XLM language ids are not used"),
                  "XLM language ids are not used (tfqa's models take no language input)"),
    "--local_rank": (dict(type=int, default=None, help="PyTorch-only: use --strategy (TF_CONFIG) for several "
                          "machines"),
                     "tfqa distributes with tf.distribute: all local GPUs by default, several machines with "
                     "--strategy multi_worker and TF_CONFIG"),
    "--no_cuda": (dict(action="store_true", help="train on the CPU even when GPUs are visible"), None),
    "--fp16_opt_level": (dict(default=None, help="PyTorch (apex) only: --fp16 is Keras mixed precision"),
                         "apex optimisation levels do not apply: --fp16 uses Keras mixed precision (float32 "
                         "weights, float16 compute, loss scaling)"),
    "--server_ip": (dict(default=None, help="PyTorch-only remote debugging: not used"),
                    "remote debugging (ptvsd) is not used; run tfqa under your debugger directly"),
    "--server_port": (dict(default=None, help="PyTorch-only remote debugging: not used"),
                      "remote debugging (ptvsd) is not used; run tfqa under your debugger directly"),
}


def add_run_squad_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags above to the `train_keras.py` parser."""
    group = parser.add_argument_group("run_squad.py flags that are not settings")
    for flag, (keywords, _) in FLAGS.items():
        group.add_argument(flag, **keywords)


def notes(args: argparse.Namespace) -> list[str]:
    """One line for each given flag whose PyTorch meaning tfqa replaces."""
    lines = []
    for flag, (keywords, note) in FLAGS.items():
        value = getattr(args, flag.lstrip("-"))
        if note and value is not None and value is not False:
            lines.append(f"{flag}: {note}")
    return lines
