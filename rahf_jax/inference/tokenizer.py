"""SentencePiece tokenisation without TensorFlow (the data layer's vocabularies, by name or path).

The training data is tokenised by seqio's SentencePieceVocabulary, which wraps the same model
file; encoding with sentencepiece directly gives identical ids.
"""

import os

import sentencepiece as spm

import rahf_jax

# Kept in step with rahf_jax.data.vocab (which imports TensorFlow, so is not imported here).
DEMO_VOCAB_PATH = os.path.join(
  os.path.dirname(rahf_jax.__file__), "data", "vocab", "demo_spm.model"
)
T5_VOCAB_PATH = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
_NAMED = {"demo": DEMO_VOCAB_PATH, "t5": T5_VOCAB_PATH}


def load_tokenizer(name_or_path: str) -> spm.SentencePieceProcessor:
  """A SentencePieceProcessor for "demo", "t5" or a .model path (gs:// read via tf.io.gfile)."""
  path = _NAMED.get(name_or_path, name_or_path)
  if path.startswith("gs://"):
    import tensorflow as tf  # noqa: PLC0415 (only for remote vocabularies)

    with tf.io.gfile.GFile(path, "rb") as f:
      return spm.SentencePieceProcessor(model_proto=f.read())
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"SentencePiece model {path!r} not found; set config.data.vocabulary to 'demo', 't5' or "
      "the path of a .model file."
    )
  return spm.SentencePieceProcessor(model_file=path)
