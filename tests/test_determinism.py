"""--seed repeats a run on the same machine: the smoke vocab, the losses, the predictions, the tuned threshold."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT

VOCAB_SCRIPT = """
import sys
from tfqa.core.synthetic import synthetic_squad
from tfqa.core.vocab import train_word_vocab
data = synthetic_squad(40, seed=3)
texts = [p["context"] for a in data["data"] for p in a["paragraphs"]]
texts += [q["question"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
tokenizer = train_word_vocab(texts, vocab_size=int(sys.argv[1]), token_type_ids=False)
print("\\n".join(sorted(tokenizer.vocab, key=tokenizer.vocab.get)))
"""


def _vocab_in_a_new_process(size: int, hash_seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run([sys.executable, "-c", VOCAB_SCRIPT, str(size)], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True).stdout.splitlines()


def test_the_smoke_vocab_is_the_same_token_for_token_in_every_process():
    # Hugging Face's WordPiece trainer gave 3 different vocab sets in 8 processes from the same texts.
    first, second = _vocab_in_a_new_process(2000, "1"), _vocab_in_a_new_process(2000, "2")
    assert first == second and first[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "##a" in first and len(first) == len(set(first)) > 100
    small = _vocab_in_a_new_process(80, "3")
    assert len(small) == 80 and small == first[:80]  # a smaller vocab keeps the characters, then the commonest words
