"""Tests of rahf_jax/data/feature_converter.py on hand-made task features."""

import numpy as np
import pytest
import tensorflow as tf

from rahf_jax import features as F
from rahf_jax.data import feature_converter as fc

LENGTHS = {"inputs": 8, "targets": 6}
TOKENS = [  # (inputs, targets, decoder_weight); every sequence ends with EOS_ID = 1.
  ([5, 6, 7, 1], [9, 8, 1], 1.0),
  ([5, 1], [1], 1.0),
  ([4, 4, 4, 4, 4, 4, 4, 1], [3, 3, 3, 3, 3, 1], 0.0),
]


def _task_dataset(variant: str, image_size=4, heatmap_size=3) -> tf.data.Dataset:
  rows = []
  for i, (inputs, targets, weight) in enumerate(TOKENS):
    ex = {
      "inputs": np.asarray(inputs, np.int32),
      "targets": np.asarray(targets, np.int32),
      "decoder_weight": np.float32(weight),
      "image": np.full((image_size, image_size, 3), i / 10, np.float32),
      "uid": f"u{i}",
      "inputs_pretokenized": "x",
    }
    if variant == F.MULTI_HEAD:
      for h in F.HEATMAP_TYPES:
        ex[f"heatmap_{h}"] = np.full((heatmap_size, heatmap_size), i / 7, np.float32)
      for j, s in enumerate(F.SCORE_TYPES):
        ex[f"score_{s}"] = np.float32((i + j) / 10)
    else:
      ex["output_type"] = np.int32(i)
      ex["heatmap"] = np.full((heatmap_size, heatmap_size), i / 7, np.float32)
      ex["score"] = np.float32(i / 9)
    rows.append(ex)

  def gen():
    yield from rows

  spec = {
    k: tf.TensorSpec(
      (None,) if k in ("inputs", "targets") else np.shape(v),
      tf.string if isinstance(v, str) else tf.as_dtype(np.asarray(v).dtype),
    )
    for k, v in rows[0].items()
  }
  return tf.data.Dataset.from_generator(gen, output_signature=spec)


@pytest.mark.parametrize("variant", F.VARIANTS)
def test_converter_pads_shifts_and_weights(variant):
  ds = fc.converter_for(variant)(_task_dataset(variant), LENGTHS)
  out = list(ds.as_numpy_iterator())
  assert len(out) == len(TOKENS)
  converter_cls = fc.CONVERTERS[variant]
  assert set(out[0]) == set(converter_cls.MODEL_FEATURES)
  for i, (ex, (inputs, targets, weight)) in enumerate(zip(out, TOKENS, strict=True)):
    lp, lt = LENGTHS["inputs"], LENGTHS["targets"]
    np.testing.assert_array_equal(ex["prompt_ids"], inputs + [F.PAD_ID] * (lp - len(inputs)))
    target_ref = targets + [F.PAD_ID] * (lt - len(targets))
    np.testing.assert_array_equal(ex["decoder_target_ids"], target_ref)
    np.testing.assert_array_equal(ex["decoder_input_ids"], [F.PAD_ID] + target_ref[:-1])
    np.testing.assert_array_equal(
      ex["decoder_loss_weights"], [weight * (t != F.PAD_ID) for t in target_ref]
    )
    assert ex["decoder_loss_weights"].dtype == np.float32
    assert ex["prompt_ids"].dtype == np.int32 and ex["decoder_target_ids"].dtype == np.int32
    assert F.EOS_ID in ex["decoder_target_ids"]
    np.testing.assert_allclose(ex["image"], np.full((4, 4, 3), i / 10, np.float32))
    if variant == F.MULTI_HEAD:
      for h in F.HEATMAP_TYPES:
        np.testing.assert_allclose(ex[f"heatmap_{h}"], np.full((3, 3), i / 7, np.float32))
      for j, s in enumerate(F.SCORE_TYPES):
        assert ex[f"score_{s}"] == np.float32((i + j) / 10)
    else:
      assert ex["output_type"] == i and ex["score"] == np.float32(i / 9)
      np.testing.assert_allclose(ex["heatmap"], np.full((3, 3), i / 7, np.float32))


def test_model_feature_names_match_the_shared_contract():
  multi = set(fc.MultiHeadFeatureConverter.MODEL_FEATURES)
  common = {
    "image",
    "prompt_ids",
    "decoder_input_ids",
    "decoder_target_ids",
    "decoder_loss_weights",
  }
  assert multi == common | {f"heatmap_{h}" for h in F.HEATMAP_TYPES} | {
    f"score_{s}" for s in F.SCORE_TYPES
  }
  assert set(fc.AugmentedFeatureConverter.MODEL_FEATURES) == common | {
    "output_type",
    "heatmap",
    "score",
  }


def test_model_feature_lengths():
  converter = fc.MultiHeadFeatureConverter(image_size=4, heatmap_size=3)
  lengths = converter.get_model_feature_lengths(LENGTHS)
  assert lengths["prompt_ids"] == 8 and lengths["decoder_input_ids"] == 6
  assert lengths["image"] == 4 and lengths["heatmap_implausibility"] == 3
  # Without sizes, they come from the converted dataset.
  converter = fc.AugmentedFeatureConverter()
  with pytest.raises(ValueError, match="sizes are unknown"):
    converter.get_model_feature_lengths(LENGTHS)
  converter(_task_dataset(F.AUGMENTED_PROMPT, image_size=5, heatmap_size=2), LENGTHS)
  assert converter.get_model_feature_lengths(LENGTHS)["heatmap"] == 2


def test_converter_errors_are_clear():
  with pytest.raises(ValueError, match="packing"):
    fc.MultiHeadFeatureConverter(pack=True)
  with pytest.raises(ValueError, match="lacks"):
    fc.AugmentedFeatureConverter()(_task_dataset(F.MULTI_HEAD), LENGTHS)
  with pytest.raises(ValueError, match="image_size=9"):
    fc.MultiHeadFeatureConverter(image_size=9)(_task_dataset(F.MULTI_HEAD), LENGTHS)
  with pytest.raises(ValueError, match="Unknown variant"):
    fc.converter_for("bogus")


def test_too_long_tokens_fail_seqio_length_check():
  long = {"inputs": 3, "targets": 6}
  ds = fc.converter_for(F.MULTI_HEAD)(_task_dataset(F.MULTI_HEAD), long)
  with pytest.raises(tf.errors.InvalidArgumentError, match="inputs"):
    list(ds.as_numpy_iterator())
