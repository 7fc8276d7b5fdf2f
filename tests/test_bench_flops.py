"""bench.flops: the encoder FLOPs every benchmark's GFLOP/s and share of peak are computed from."""

from __future__ import annotations

import pytest

from bench.flops import EncoderShape, forward_flops, of_peak, train_step_flops


def tiny_configs():
    from transformers import BertConfig, DistilBertConfig

    return (BertConfig(vocab_size=30, num_hidden_layers=2, hidden_size=4, intermediate_size=8, num_attention_heads=1),
            DistilBertConfig(vocab_size=30, n_layers=2, dim=4, hidden_dim=8, n_heads=1))


@pytest.mark.parametrize("config", tiny_configs(), ids=["bert", "distilbert"])
def test_flops_of_a_tiny_encoder_counted_by_hand(config):
    # Per layer and token: 2 × (4·4·4 + 2·4·8) = 256 dense FLOPs; 5 tokens → 1280. Attention: 4 · 5² · 4 = 400.
    # 2 layers × 3 sequences × (1280 + 400) = 10080; a training step is three times that.
    assert EncoderShape.of(config) == EncoderShape(layers=2, hidden=4, ffn=8)
    assert forward_flops(config, sequences=3, seq_len=5) == 10080
    assert train_step_flops(config, sequences=3, seq_len=5) == 30240


def test_dense_flops_are_two_per_weight_of_the_models_encoder_matmuls():
    import tensorflow as tf
    from transformers import TFBertModel

    config = tiny_configs()[0]
    model = TFBertModel(config)
    model(model.dummy_inputs)
    kernels = [w for w in model.weights if "encoder" in w.name and "kernel" in w.name]
    params = sum(int(tf.size(w)) for w in kernels)
    assert params == EncoderShape.of(config).matmul_params == 2 * (4 * 16 + 2 * 32)
    # One token, no attention term worth counting: 2 FLOPs per weight (plus the 4·1·4 per layer of attention).
    assert forward_flops(config, 1, 1) == 2 * params + 2 * 4 * 1 * 1 * 4


def test_of_peak_gives_the_rate_and_its_share():
    assert of_peak(50e9, 2.0, 100.0) == "   25.0 GFLOP/s =  25% of peak"
