"""SentencePiece vocabularies for prompts and `_0`-marked decoder targets.

Two vocabularies, both with T5's conventions (pad=0, eos=1, unk=2, no bos):

- `t5_vocabulary()`: the standard T5 SentencePiece model (32K pieces), the default for
  real runs and for loading public T5 weights. It lives on GCS and is read lazily, the
  first time a piece is looked up. It splits a marked word such as `yellow_0` into
  pieces of `yellow`, `_` and `0` and decodes them back to `yellow_0`.
- `demo_vocabulary()`: a small model (512 pieces, byte fallback) shipped in
  rahf_jax/data/vocab/, trained by data_prep/train_demo_vocab.py on the synthetic
  generator's captions, their `_0`-marked targets and the augmented-prompt prefixes.
  `_0` is one user-defined piece, so marked words round-trip exactly. Used by the
  demo and the tests (which never touch the network).
"""

import os

import seqio

# The T5 vocabulary used by t5x's T5 and T5.1.1 checkpoints.
T5_VOCAB_PATH = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"

# The demo/test vocabulary shipped with the package.
DEMO_VOCAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocab")
DEMO_VOCAB_PATH = os.path.join(DEMO_VOCAB_DIR, "demo_spm.model")
DEMO_VOCAB_SIZE = 512

VOCABULARY_NAMES = ("t5", "demo")
# Pieces of the named vocabularies (known without reading the T5 model from GCS).
VOCAB_SIZES = {"t5": 32000, "demo": DEMO_VOCAB_SIZE}


def t5_vocabulary() -> seqio.SentencePieceVocabulary:
  """The standard T5 SentencePiece vocabulary (read from GCS on first use)."""
  return seqio.SentencePieceVocabulary(T5_VOCAB_PATH)


def demo_vocabulary() -> seqio.SentencePieceVocabulary:
  """The small shipped vocabulary for the demo and the tests."""
  if not os.path.exists(DEMO_VOCAB_PATH):
    raise FileNotFoundError(
      f"Demo vocabulary {DEMO_VOCAB_PATH} is missing; recreate it with "
      "`python data_prep/train_demo_vocab.py`."
    )
  return seqio.SentencePieceVocabulary(DEMO_VOCAB_PATH)


def get_vocabulary(name: str) -> seqio.SentencePieceVocabulary:
  """A vocabulary by name: "t5" (real runs), "demo" (demo and tests) or a .model path."""
  if name == "t5":
    return t5_vocabulary()
  if name == "demo":
    return demo_vocabulary()
  if name.endswith(".model"):
    if not name.startswith("gs://") and not os.path.exists(name):
      raise FileNotFoundError(f"SentencePiece model {name!r} not found; check the path.")
    return seqio.SentencePieceVocabulary(name)
  raise ValueError(
    f"Unknown vocabulary {name!r}; use one of {VOCABULARY_NAMES} or a SentencePiece .model path."
  )
