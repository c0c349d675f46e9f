"""Tests of rahf_jax/data/vocab.py and the shipped demo vocabulary (no network)."""

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

from rahf_jax import features as F
from rahf_jax.data import synthetic_scenes, vocab, words

_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "data_prep", "train_demo_vocab.py")


def _scene_texts(n: int, seed: int = 123):
  """(prompt, `_0`-marked target) of n scenes from the generator's grammar."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    scene = synthetic_scenes.make_scene(rng, size=16)
    out.append((scene.prompt, words.mark_words(scene.words, scene.labels)))
  return out


@pytest.fixture(scope="module")
def demo():
  return vocab.demo_vocabulary()


def test_demo_vocabulary_uses_t5_ids(demo):
  sp = demo.tokenizer
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (F.PAD_ID, F.EOS_ID, 2, -1)
  assert demo.pad_id == F.PAD_ID and demo.eos_id == F.EOS_ID
  assert 256 < demo.vocab_size <= vocab.DEMO_VOCAB_SIZE
  assert os.path.getsize(vocab.DEMO_VOCAB_PATH) < 64 * 1024
  assert sp.piece_to_id(F.MISALIGNED_SUFFIX) not in (sp.unk_id(), -1)


def test_marked_targets_round_trip(demo):
  texts = _scene_texts(40)
  assert any(F.MISALIGNED_SUFFIX in t for _, t in texts)
  for prompt, target in texts:
    for text in (prompt, target, F.augmented_prompt(F.WORDS_TYPE, prompt)):
      ids = demo.encode(text)
      assert demo.decode(ids) == text
  ids = demo.encode("a yellow_0 cat")
  assert demo.tokenizer.piece_to_id(F.MISALIGNED_SUFFIX) in ids
  assert demo.decode(ids) == "a yellow_0 cat"


def test_grammar_needs_no_byte_fallback(demo):
  sp = demo.tokenizer
  for prompt, target in _scene_texts(40, seed=7):
    for text in (prompt, target):
      pieces = sp.encode(text, out_type=str)
      bytes_used = [p for p in pieces if p.startswith("<0x")]
      assert not bytes_used, (
        f"{text!r} needs byte pieces {bytes_used}: the caption grammar changed; rerun "
        "python data_prep/train_demo_vocab.py"
      )


def test_unseen_text_round_trips_through_bytes(demo):
  text = 'a "dreamy" café-style picture — naïve: 日本の猫_0'
  assert demo.decode(demo.encode(text)) == text


def test_tf_and_python_tokenisation_agree(demo):
  texts = [t for pair in _scene_texts(5, seed=9) for t in pair]
  for text in texts:
    tf_ids = demo.encode_tf(tf.constant(text)).numpy().tolist()
    assert tf_ids == demo.encode(text)
    assert demo.decode_tf(tf.constant(tf_ids)).numpy().decode() == text


def test_vocabulary_names():
  assert vocab.get_vocabulary("demo").vocab_size == vocab.demo_vocabulary().vocab_size
  t5 = vocab.get_vocabulary("t5")  # lazily loaded: constructing it touches no file
  assert t5.sentencepiece_model_file == vocab.T5_VOCAB_PATH
  with pytest.raises(ValueError, match="Unknown vocabulary"):
    vocab.get_vocabulary("gpt")


def test_training_script_makes_a_working_vocabulary(tmp_path):
  spec = importlib.util.spec_from_file_location("train_demo_vocab", _SCRIPT)
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  path = script.train(str(tmp_path / "spm"), vocab_size=400, num_scenes=60, seed=1)
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top

  sp = spm.SentencePieceProcessor(model_file=path)
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2)
  for _, target in _scene_texts(10, seed=5):
    assert sp.decode(sp.encode(target)) == target
