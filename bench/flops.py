"""How many FLOPs a Transformer encoder does, and how close a measured speed is to this CPU's matmul peak.

The one place the benchmarks count FLOPs (`bench.precision_speed`,
`bench.training_throughput`, `bench.serving_latency`, `bench.serving_load`).
Only the encoder's matrix multiplies are counted; they are nearly all the work:

- per token, 2 FLOPs (a multiply and an add) per weight of each layer's
  matmuls: Q, K, V and output projections (4·h²) and the two feed-forward
  ones (2·h·f) — "2 · params per token";
- per sequence of s tokens, attention: Q·Kᵀ and weights·V, s²·h multiply-adds
  each, 4·s²·h FLOPs per layer;
- a training step: 3 × the forward (the backward pass multiplies twice per
  forward matmul: gradients of the inputs and of the weights).

Embedding lookups, biases, layer norms, softmax and the QA head (2·h per
token) are left out. Padding positions are counted: the model computes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderShape:
    layers: int
    hidden: int
    ffn: int  # feed-forward inner width

    @classmethod
    def of(cls, config) -> "EncoderShape":
        """From a transformers config: BERT-style names (hidden_size, …) or DistilBERT's (dim, …)."""
        if hasattr(config, "n_layers"):
            return cls(config.n_layers, config.dim, config.hidden_dim)
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size)

    @property
    def matmul_params(self) -> int:
        """Weights of the matmuls of all layers (no biases, no embeddings)."""
        return self.layers * (4 * self.hidden * self.hidden + 2 * self.hidden * self.ffn)


def forward_flops(config, sequences: int, seq_len: int) -> float:
    """Matmul FLOPs of one forward pass over `sequences` sequences of `seq_len` positions."""
    shape = config if isinstance(config, EncoderShape) else EncoderShape.of(config)
    per_sequence = 2 * seq_len * shape.matmul_params + shape.layers * 4 * seq_len * seq_len * shape.hidden
    return float(sequences * per_sequence)


def train_step_flops(config, sequences: int, seq_len: int) -> float:
    """Forward + backward: 3 × `forward_flops`."""
    return 3 * forward_flops(config, sequences, seq_len)


def fp32_peak_timer(config, tokens: int):
    """A timer of this CPU's float32 matmul GFLOP/s at the model's own shape: [tokens, h] × [h, ffn],
    its feed-forward layer (see `bench.matmul_peak`); call it between the contenders and keep the best."""
    from bench.matmul_peak import matmul_timers

    shape = config if isinstance(config, EncoderShape) else EncoderShape.of(config)
    return matmul_timers(("float32",), m=max(int(tokens), 1), k=shape.hidden, n=shape.ffn, calls=3)["float32"]


def of_peak(flops: float, seconds: float, peak_gflops: float) -> str:
    """'123.4 GFLOP/s = 56% of peak': the achieved rate and its share of the measured peak."""
    achieved = flops / seconds / 1e9
    return f"{achieved:7.1f} GFLOP/s = {100 * achieved / peak_gflops:3.0f}% of peak"
