"""The export's contract by name: its signatures, their inputs and outputs (no TensorFlow).

`tfqa.export.savedmodel` writes these names and everything that reads an
export (the serving layer, the REST client, the apps) imports them from here,
so a renamed output is one edit. See `tfqa.export.savedmodel` for what each
output holds.
"""

from __future__ import annotations

# Signatures.
SERVING_DEFAULT = "serving_default"  # TF Serving's default signature; raw text when the tokenizer runs in the graph
TOKEN_IDS = "token_ids"

# Raw-text inputs.
QUESTION, CONTEXT = "question", "context"
TEXT_INPUTS = (QUESTION, CONTEXT)

# Raw-text outputs: the answer...
ANSWER, SCORE, ANSWER_START, ANSWER_END = "answer", "score", "answer_start", "answer_end"
NULL_SCORE_DIFF = "null_score_diff"  # SQuAD 2.0 exports only
# ... and the best spans, best first ([batch, num_candidates]; unused slots "", 0, -1, -1).
CANDIDATE_ANSWERS, CANDIDATE_SCORES = "candidate_answers", "candidate_scores"
CANDIDATE_STARTS, CANDIDATE_ENDS = "candidate_starts", "candidate_ends"

# Token-id signature: inputs and outputs.
INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS = "input_ids", "attention_mask", "token_type_ids"
START_LOGITS, END_LOGITS = "start_logits", "end_logits"
