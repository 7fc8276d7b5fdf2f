"""The SavedModel for TensorFlow Serving: in-graph tokenizer, windows and decoding; the version folder layout."""
