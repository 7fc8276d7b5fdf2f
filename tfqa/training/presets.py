"""Presets: a named set of flag defaults, the data they train on and how they build their model.

`--preset smoke` is the offline run a fresh clone can do first:
a synthetic SQuAD 2.0-style corpus (`tfqa.core.synthetic`) written into the
output folder, a WordPiece vocab trained on it, and a tiny DistilBERT built
from scratch (the backend's `tiny`: a DistilBERT on either backend). Everything that
differs for a preset is here; the rest of tfqa asks `preset_of(config)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tfqa.core.config import TrainConfig
from tfqa.core.files import json_text, write_text_atomic
from tfqa.core.progress import SILENT, Reporter
from tfqa.core.run_dir import DATA_DIR, RunDirError
from tfqa.core.run_record import recorded
from tfqa.core.squad import is_tfds_name
from tfqa.core.vocab import SPECIAL_TOKENS

SMOKE_VOCAB = "smoke_vocab.txt"


@dataclass(frozen=True)
class Preset:
    """What `--preset NAME` changes."""

    name: str
    defaults: dict  # flag defaults (the command line still overrides them)
    datasets: Callable[[], tuple[dict, dict]]  # (train, dev) SQuAD JSON objects, used unless files are given
    build: Callable[[TrainConfig, list], tuple]  # (config, training texts) → (model, tokenizer)
    model_description: str  # what `inspect` says the model is
    shared_files: tuple[str, ...] = field(default=())  # made once by the chief; other workers copy them
    scratch_files: tuple[str, ...] = field(default=())  # needed while training only: removed at the end if tfqa's
    max_seq_length: int = 512  # the longest window its model is built for (BERT's), so memory stays bounded

    def problems(self, config: TrainConfig) -> list[str]:
        """What the preset's model cannot do with these settings (the checkpoint check of a plain run)."""
        if config.max_seq_length > self.max_seq_length:
            return [f"--max_seq_length {config.max_seq_length} is more than the --preset {self.name} model "
                    f"takes ({self.max_seq_length} positions)"]
        return []

    def prepare_data(self, config: TrainConfig, reporter: Reporter = SILENT) -> TrainConfig:
        """Writes the preset's train/dev data into OUTPUT_DIR/data/ and points the config at it.

        Only where the config still names the default TFDS data: a --train_file
        or --predict_file given on the command line is used as given. A file
        tfqa did not write never is replaced: a RunDirError says how to use it.
        A shared file of the preset (its vocab) that stands there already is the
        user's choice: it is used, and `reporter` says so.
        """
        out = Path(config.output_dir)
        changes = self.data_files(config)
        for flag, data in zip(("train_file", "predict_file"), self.datasets()):
            if flag in changes:
                _write_own(out, Path(changes[flag]).relative_to(out).as_posix(), json_text(data), f"--{flag}")
        for name in self.shared_files:
            if (out / name).exists() and not recorded(out, name):
                reporter.note(f"--preset {self.name}: using the {out / name} that was there already "
                              "(remove it to make a new one)")
        return config.replace(**changes)

    def data_files(self, config: TrainConfig) -> dict:
        """The --train_file/--predict_file that `prepare_data` points the config at (nothing written)."""
        data_dir = Path(config.output_dir) / DATA_DIR
        return {flag: str(data_dir / name) for flag, name in (("train_file", "train.json"), ("predict_file", "dev.json"))
                if is_tfds_name(getattr(config, flag))}


def _write_own(out: Path, rel: str, text: str, flag: str) -> Path:
    """Writes OUTPUT_DIR/rel unless a file tfqa did not write stands there (the same text is fine: nothing is lost)."""
    path = out / rel
    if os.path.lexists(path) and not recorded(out, rel):
        try:
            same = path.read_bytes() == text.encode("utf-8")
        except OSError:
            same = False
        if same:
            return path
        raise RunDirError(f"{path}: holds a file tfqa did not write, where the preset writes its data; pass "
                          f"{flag} {path} to use it, or choose another --output_dir")
    return write_text_atomic(path, text)


def check_vocab(path: Path) -> None:
    """A WordPiece vocab file the smoke model can use (one token per line, BERT's special tokens, no repeats)."""
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: unreadable vocab ({type(e).__name__}: {e})") from None
    problems = [f"no {t} token" for t in SPECIAL_TOKENS if t not in tokens]
    if len(set(tokens)) != len(tokens):
        problems.append("repeated tokens")
    if "" in tokens:
        problems.append("empty lines")
    if problems:
        raise RunDirError(f"{path}: not a WordPiece vocab ({', '.join(problems)}); remove it to make a new one")


def _smoke_datasets():
    from tfqa.core.synthetic import smoke_datasets

    return smoke_datasets()


def _smoke_model(config: TrainConfig, texts: list):
    from tfqa.core.vocab import tokenizer_from_vocab, train_word_vocab, write_vocab
    from tfqa.modeling.backend import backend_named

    # The vocab is reproducible (`train_word_vocab`: --seed repeats a run); a resumed run still reads
    # the one its first attempt wrote, so it rebuilds exactly the model its backup holds.
    vocab = Path(config.output_dir) / SMOKE_VOCAB
    if vocab.exists():
        check_vocab(vocab)
        tokenizer = tokenizer_from_vocab(vocab, token_type_ids=False)
    else:
        tokenizer = train_word_vocab(texts, vocab_size=2000, token_type_ids=False)
        write_vocab(sorted(tokenizer.vocab, key=tokenizer.vocab.get), vocab)
    return backend_named(config.backend).tiny(len(tokenizer), config.max_seq_length, seed=config.seed), tokenizer


SMOKE = Preset(
    name="smoke",
    defaults=dict(output_dir="runs/smoke", version_2_with_negative=True, max_seq_length=64, doc_stride=24,
                  max_query_length=16, per_replica_batch_size=32, learning_rate=1e-3, num_train_epochs=4.0,
                  warmup_ratio=0.1, eval_batch_size=128, logging_steps=10),
    datasets=_smoke_datasets,
    build=_smoke_model,
    model_description="built from scratch (--preset smoke)",
    shared_files=(SMOKE_VOCAB,),
    scratch_files=(SMOKE_VOCAB,),  # the run's saved tokenizer holds the same tokens (tokenizer.json; 4.x: vocab.txt too)
)
PRESETS = {SMOKE.name: SMOKE}


def preset_of(config: TrainConfig | dict) -> Preset | None:
    """The preset a config (or a saved settings dict) uses, None for a plain run."""
    name = config.get("preset") if isinstance(config, dict) else config.preset
    return PRESETS.get(name or "")
