"""The `keras_hub` backend: a keras-hub backbone + QA head on Keras 3.

The model is `tfqa.modeling.keras_hub_qa`, loaded by
`tfqa.modeling.keras_hub_checkpoints`; this is its face at the seam
(`tfqa.modeling.backend`). Features still come from the Hugging Face fast
tokenizer of the checkpoint (its `tokenizer.json` or `vocab.txt`), so windows,
offsets and labels are the same on both backends. A trained run holds
`model.keras` (`tfqa.core.run_dir.KERAS_MODEL_FILE`) beside the tokenizer files:
`keras.saving.load_model` reads it in any Keras 3 process that imported keras_hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfqa.core.run_dir import KERAS_MODEL_FILE


class KerasHubBackend:
    """`tfqa.modeling.backend.Backend` for keras-hub QA models (Keras 3)."""

    name = "keras_hub"

    def use(self) -> None:
        # Keras 3 is `import keras` whatever tf.keras is: nothing to choose, only to find.
        from importlib.util import find_spec

        from tfqa.modeling.checkpoints import ModelLoadError

        missing = [package for package, module in (("keras", "keras"), ("keras-hub", "keras_hub"))
                   if find_spec(module) is None]
        if missing:
            raise ModelLoadError(f"the keras_hub backend needs {' and '.join(missing)}: "
                                 "pip install keras-hub (it brings Keras 3), or pass --backend transformers")

    def keras(self):
        import keras

        return keras

    def load(self, name_or_path: str, flag: str = "--model_name_or_path", config_name: str = "",
             tokenizer_name: str = ""):
        from tfqa.modeling.checkpoints import ModelLoadError, load_fast_tokenizer
        from tfqa.modeling.keras_hub_checkpoints import load_qa_model
        from tfqa.modeling.keras_hub_qa import load_saved_qa_model

        if config_name:
            raise ModelLoadError(f"--config_name {config_name}: the keras_hub backend takes the model's config from "
                                 f"{flag} {name_or_path} itself")
        saved = os.path.join(name_or_path, KERAS_MODEL_FILE)
        model = load_saved_qa_model(saved) if os.path.isfile(saved) else load_qa_model(name_or_path, flag=flag)
        return model, load_fast_tokenizer(tokenizer_name or name_or_path, flag)

    def tiny(self, vocab_size: int, max_positions: int, seed: int = 0):
        from tfqa.modeling.keras_hub_qa import tiny_distilbert

        return tiny_distilbert(vocab_size, max_positions, seed=seed)

    def input_names(self, model) -> frozenset:
        from tfqa.modeling.keras_hub_qa import input_names

        return frozenset(input_names(model))

    def max_positions(self, model) -> int | None:
        from tfqa.modeling.keras_hub_qa import max_positions

        return max_positions(model)

    def logits(self, model, inputs: dict, training: bool = False):
        import tensorflow as tf

        out = model(inputs, training=training)
        return tf.cast(out["start_logits"], tf.float32), tf.cast(out["end_logits"], tf.float32)

    def save(self, model, tokenizer, out) -> list:
        from tfqa.modeling.keras_hub_qa import save_qa_model

        import keras

        # A functional twin on the same layers, never compiled: the file holds the model alone, no optimizer
        # (whose schedule is tfqa's class), so plain Keras 3 with keras_hub imported loads it.
        plain = keras.Model(model.input, model.output, name=model.name)  # dicts: tfqa's input and output names
        written = [save_qa_model(plain, Path(out) / KERAS_MODEL_FILE)]
        return written + [Path(p) for p in tokenizer.save_pretrained(str(out))]


KERAS_HUB = KerasHubBackend()
