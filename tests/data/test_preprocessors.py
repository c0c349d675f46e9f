"""Tests of rahf_jax/data/preprocessors.py against numpy references."""

import numpy as np
import pytest
import seqio_fakes
import tensorflow as tf

from rahf_jax import features as F
from rahf_jax.data import preprocessors


def _block_mean(m: np.ndarray, size: int) -> np.ndarray:
  """Area resize by an integer factor = mean over square blocks."""
  f = m.shape[0] // size
  return m.reshape(size, f, size, f).mean(axis=(1, 3))


@pytest.mark.parametrize("shape", [(30, 50), (64, 40), (8, 8)])
def test_constant_image_keeps_its_value_at_any_size(shape):
  color = np.array([0, 127, 255], np.uint8)
  image = np.broadcast_to(color, shape + (3,)).copy()
  out = preprocessors.image_to_model(tf.constant(image), 24).numpy()
  assert out.shape == (24, 24, 3) and out.dtype == np.float32
  expected = color.astype(np.float32) / 127.5 - 1.0
  np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-5)


def test_image_at_model_size_is_only_rescaled():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
  out = preprocessors.image_to_model(tf.constant(image), 16).numpy()
  np.testing.assert_allclose(out, image / 127.5 - 1.0, atol=1e-5)
  assert out.min() >= -1.0 and out.max() <= 1.0


def test_random_image_downscaled_stays_in_range():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, size=(37, 91, 3), dtype=np.uint8)
  out = preprocessors.image_to_model(tf.constant(image), 20).numpy()
  assert out.shape == (20, 20, 3)
  assert out.min() >= -1.0 and out.max() <= 1.0
  # Antialiased downscaling preserves the mean brightness closely.
  np.testing.assert_allclose(out.mean(), (image / 127.5 - 1.0).mean(), atol=0.02)


@pytest.mark.parametrize("size", [512, 64, 16])
def test_heatmap_area_resize_equals_block_mean(size):
  m = seqio_fakes.heatmap_of(1, 0)
  rng = np.random.default_rng(2)
  m = np.clip(m.astype(np.int32) + rng.integers(0, 30, size=m.shape), 0, 255).astype(np.uint8)
  out = preprocessors.heatmap_to_model(tf.constant(m), size).numpy()
  assert out.shape == (size, size) and out.dtype == np.float32
  np.testing.assert_allclose(out, _block_mean(m[..., 0] / 255.0, size), atol=1e-5)
  assert out.min() >= 0.0 and out.max() <= 1.0


def _prepared(n: int, image_size=12, heatmap_size=16):
  ds = preprocessors.prepare_multihead(
    seqio_fakes.make_dataset(n), image_size=image_size, heatmap_size=heatmap_size
  )
  return list(ds.as_numpy_iterator())


def test_prepare_multihead_features():
  for i, ex in enumerate(_prepared(4)):
    ref = seqio_fakes.make_example(i)
    assert ex["image"].shape == (12, 12, 3)
    assert ex["inputs"].decode() == ref["prompt"]
    assert ex["targets"].decode() == ref["target"]
    assert ex["decoder_weight"] == (1.0 if ref["word_labels_valid"] else 0.0)
    for s in F.SCORE_TYPES:
      assert ex[f"score_{s}"] == ref[s]
    for j, h in enumerate(F.HEATMAP_TYPES):
      expected = _block_mean(seqio_fakes.heatmap_of(i, j)[..., 0] / 255.0, 16)
      np.testing.assert_allclose(ex[f"heatmap_{h}"], expected, atol=1e-6)


def test_expand_augmented_one_example_per_output_type():
  n = 4
  prepared = _prepared(n)
  ds = preprocessors.prepare_multihead(seqio_fakes.make_dataset(n), image_size=12, heatmap_size=16)
  expanded = list(preprocessors.expand_augmented(ds).as_numpy_iterator())
  types = F.AUGMENTED_OUTPUT_TYPES
  assert len(expanded) == n * len(types)
  for i in range(n):
    ref = seqio_fakes.make_example(i)
    base = prepared[i]
    for k, t in enumerate(types):
      ex = expanded[i * len(types) + k]
      assert ex["output_type"] == k
      assert ex["inputs"].decode() == F.augmented_prompt(t, ref["prompt"])
      assert ex["inputs"].decode().startswith(F.AUGMENTED_PROMPT_PREFIXES[t] + " | ")
      assert ex["targets"].decode() == ref["target"]
      np.testing.assert_array_equal(ex["image"], base["image"])
      if t in F.HEATMAP_TYPES:
        np.testing.assert_array_equal(ex["heatmap"], base[f"heatmap_{t}"])
      else:
        assert not ex["heatmap"].any()
      assert ex["score"] == (ref[t] if t in F.SCORE_TYPES else 0.0)
      words_active = t == F.WORDS_TYPE and ref["word_labels_valid"]
      assert ex["decoder_weight"] == (1.0 if words_active else 0.0)


def test_encoded_media_decode_to_the_same_features():
  ex = seqio_fakes.make_example(2)
  png = tf.io.encode_png(tf.constant(ex["image"]))
  np.testing.assert_array_equal(
    preprocessors.image_to_model(png, 16).numpy(),
    preprocessors.image_to_model(tf.constant(ex["image"]), 16).numpy(),
  )
  heatmap = ex["heatmap_misalignment"]
  np.testing.assert_allclose(
    preprocessors.heatmap_to_model(tf.io.encode_png(tf.constant(heatmap)), 32).numpy(),
    _block_mean(heatmap[..., 0] / 255.0, 32),
    atol=1e-6,
  )


def test_a_heatmap_in_model_form_is_passed_on_and_its_size_checked():
  m = np.random.default_rng(5).random((8, 8), dtype=np.float32)
  out = preprocessors.heatmap_to_model(tf.constant(m), 8).numpy()
  np.testing.assert_array_equal(out, m)
  with pytest.raises(tf.errors.InvalidArgumentError):
    preprocessors.heatmap_to_model(tf.constant(m), 16)
