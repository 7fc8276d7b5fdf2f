"""The `transformers` backend: Hugging Face's TF QA classes on tf-keras (Keras 2).

The loading and building code is `tfqa.modeling.checkpoints`; this is its face
at the seam (`tfqa.modeling.backend`). A run saves with `save_pretrained`
(`config.json`, `tf_model.h5`, the tokenizer files), which is what
`TFAutoModelForQuestionAnswering.from_pretrained(run_dir)` reads back.
"""

from __future__ import annotations

from pathlib import Path


class TransformersBackend:
    """`tfqa.modeling.backend.Backend` for `TFAutoModelForQuestionAnswering` models."""

    name = "transformers"

    def use(self) -> None:
        from tfqa.core.keras_choice import use_tf_keras
        from tfqa.modeling.checkpoints import require_tf_classes

        require_tf_classes()
        use_tf_keras("the transformers backend")

    def keras(self):
        import tensorflow as tf

        return tf.keras  # tf-keras: `use` asked TensorFlow for it before anything imported it

    def load(self, name_or_path: str, flag: str = "--model_name_or_path", config_name: str = "",
             tokenizer_name: str = ""):
        from tfqa.modeling.checkpoints import load_qa_model

        return load_qa_model(name_or_path, flag=flag, config_name=config_name, tokenizer_name=tokenizer_name)

    def tiny(self, vocab_size: int, max_positions: int, seed: int = 0):
        from tfqa.modeling.checkpoints import tiny_distilbert

        return tiny_distilbert(vocab_size, max_positions, seed=seed)

    def input_names(self, model) -> frozenset:
        # The serving signature of a transformers TF model names what its call takes; tfqa's distillation
        # wrapper (tfqa.training.distill) offers the same property.
        return frozenset(model.input_signature)

    def max_positions(self, model) -> int | None:
        from tfqa.modeling.checkpoints import max_positions

        return max_positions(getattr(model, "config", None))

    def logits(self, model, inputs: dict, training: bool = False):
        import tensorflow as tf

        out = model(inputs, training=training)
        return tf.cast(out.start_logits, tf.float32), tf.cast(out.end_logits, tf.float32)

    def save(self, model, tokenizer, out) -> list:
        model.save_pretrained(str(out))
        written = [Path(p) for p in tokenizer.save_pretrained(str(out))]
        return written


TRANSFORMERS = TransformersBackend()
