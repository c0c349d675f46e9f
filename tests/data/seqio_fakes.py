"""Hand-made RichHF-18K examples with exactly the TFDS builder's features (for SeqIO tests).

Each example's content is known in closed form, so tests can compute independent references:
the image is a constant color (or a horizontal ramp), each heatmap is one axis-aligned
rectangle of value `level`, and the target is built with words.mark_words.
"""

import numpy as np
import seqio
import tensorflow as tf

from rahf_jax import features as F
from rahf_jax.data import words as words_lib

PROMPTS = (
  'a red cube and a blue "sphere", on grass',
  "two green triangles",
  "a yellow cat: black dog!",
  "",
  "three purple circles near a big orange square",
  "a small white star",
)


def make_example(i: int) -> dict:
  """The i-th fake example (deterministic)."""
  rng = np.random.default_rng(i)
  prompt = PROMPTS[i % len(PROMPTS)]
  words = words_lib.split_prompt_words(prompt)
  labels = [int(x) for x in rng.integers(0, 2, size=len(words))]
  valid = i % 4 != 3  # every fourth example has an invalid label count
  if not valid:
    labels = labels + [1]
  target = words_lib.mark_words(words, labels) if valid else " ".join(words)
  h, w = 32 + 8 * (i % 3), 48 - 8 * (i % 2)  # non-square, varying sizes
  image = np.full((h, w, 3), [(37 * i) % 256, (91 * i) % 256, (13 * i + 50) % 256], np.uint8)
  ex = {
    "image": image,
    "prompt": prompt,
    "filename": f"images/uid{i:04d}.png",
    "uid": f"uid{i:04d}",
    "words": words,
    "word_labels": np.asarray(labels, np.int32),
    "word_labels_valid": valid,
    "target": target,
  }
  for j, s in enumerate(F.SCORE_TYPES):
    ex[s] = np.float32(((i + 1) * (j + 3) % 11) / 10.0)
  for j, h_type in enumerate(F.HEATMAP_TYPES):
    ex[f"heatmap_{h_type}"] = heatmap_of(i, j)
  return ex


def heatmap_of(i: int, j: int) -> np.ndarray:
  """A 512x512x1 uint8 map: zeros with one 64-aligned rectangle (none for some examples)."""
  m = np.zeros((512, 512, 1), np.uint8)
  if (i + j) % 3 != 2:
    r0, c0 = 64 * ((i + j) % 5), 64 * ((2 * i + j) % 6)
    m[r0 : r0 + 128, c0 : c0 + 64] = 40 + 50 * ((i + j) % 4)
  return m


def element_signature() -> dict:
  """The tf.TensorSpec of each TFDS feature, as tfds decodes richhf18k."""
  sig = {
    "image": tf.TensorSpec((None, None, 3), tf.uint8),
    "prompt": tf.TensorSpec((), tf.string),
    "filename": tf.TensorSpec((), tf.string),
    "uid": tf.TensorSpec((), tf.string),
    "words": tf.TensorSpec((None,), tf.string),
    "word_labels": tf.TensorSpec((None,), tf.int32),
    "word_labels_valid": tf.TensorSpec((), tf.bool),
    "target": tf.TensorSpec((), tf.string),
  }
  for s in F.SCORE_TYPES:
    sig[s] = tf.TensorSpec((), tf.float32)
  for h in F.HEATMAP_TYPES:
    sig[f"heatmap_{h}"] = tf.TensorSpec((512, 512, 1), tf.uint8)
  return sig


def make_dataset(num_examples: int, offset: int = 0) -> tf.data.Dataset:
  """A dataset of fake examples offset .. offset + num_examples - 1."""

  def gen():
    for i in range(offset, offset + num_examples):
      ex = make_example(i)
      ex["words"] = (
        np.asarray(ex["words"], dtype=object).astype(bytes)
        if ex["words"]
        else (np.zeros((0,), dtype=bytes))
      )
      yield ex

  return tf.data.Dataset.from_generator(gen, output_signature=element_signature())


SPLIT_SIZES = {"train": 13, "dev": 5, "test": 5}
SPLIT_OFFSETS = {"train": 0, "dev": 100, "test": 200}


def fake_source() -> seqio.FunctionDataSource:
  """A seqio source over the fake splits (13 train, 5 dev, 5 test examples)."""

  def dataset_fn(split, shuffle_files, seed=None):
    del shuffle_files, seed
    return make_dataset(SPLIT_SIZES[split], SPLIT_OFFSETS[split])

  return seqio.FunctionDataSource(dataset_fn, splits=tuple(SPLIT_SIZES))
