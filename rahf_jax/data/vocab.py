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

Both are `SentencePieceVocabulary` objects (seqio's, read lazily): a model file that cannot be
read (a gs:// path without network, a missing local file) raises VocabularyUnavailableError,
one line naming the file and the offline choices (OFFLINE_CHOICES).
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

OFFLINE_CHOICES = (
  "offline, set config.data.vocabulary to 'demo' (the shipped demo vocabulary, for the tiny "
  "model size) or to the path of a local copy of the T5 SentencePiece model (a spiece.model "
  f"file, the same as {T5_VOCAB_PATH})"
)


class VocabularyUnavailableError(FileNotFoundError):
  """A SentencePiece model file cannot be read; the message is one line."""


def _unavailable(path: str, reason: object) -> VocabularyUnavailableError:
  reason = " ".join(str(reason).split()) or type(reason).__name__
  return VocabularyUnavailableError(
    f"SentencePiece model {path} cannot be read ({reason}); {OFFLINE_CHOICES}."
  )


class SentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePieceVocabulary (read on first use); an unreadable model file raises
  VocabularyUnavailableError instead of TensorFlow's multi-line I/O error."""

  def _model_context(self):
    try:
      return super()._model_context()
    except VocabularyUnavailableError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # tf.errors.OpError, OSError, ...
      raise _unavailable(self.sentencepiece_model_file, e) from None


def t5_vocabulary() -> SentencePieceVocabulary:
  """The standard T5 SentencePiece vocabulary (read from GCS on first use)."""
  return SentencePieceVocabulary(T5_VOCAB_PATH)


def demo_vocabulary() -> SentencePieceVocabulary:
  """The small shipped vocabulary for the demo and the tests."""
  if not os.path.exists(DEMO_VOCAB_PATH):
    raise FileNotFoundError(
      f"Demo vocabulary {DEMO_VOCAB_PATH} is missing; recreate it with "
      "`python data_prep/train_demo_vocab.py`."
    )
  return SentencePieceVocabulary(DEMO_VOCAB_PATH)


def get_vocabulary(name: str) -> SentencePieceVocabulary:
  """A vocabulary by name: "t5" (real runs), "demo" (demo and tests) or a .model path."""
  if name == "t5":
    return t5_vocabulary()
  if name == "demo":
    return demo_vocabulary()
  if name.endswith(".model"):
    if "://" not in name and not os.path.exists(name):
      raise _unavailable(name, "no such file")
    return SentencePieceVocabulary(name)
  raise ValueError(
    f"Unknown vocabulary {name!r}; use one of {VOCABULARY_NAMES} or a SentencePiece .model path."
  )
