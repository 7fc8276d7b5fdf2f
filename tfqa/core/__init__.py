"""The TF-free core: SQuAD loading, features, decoding, metrics, settings and the run folder.

Nothing here imports TensorFlow; tokenizers come from Hugging Face `tokenizers`/`transformers`.
"""
