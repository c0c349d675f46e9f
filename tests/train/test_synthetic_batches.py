"""Synthetic batches: exactly the model features, valid ranges, deterministic; eval padding."""

import numpy as np
import pytest
import train_testlib

from rahf_jax import features
from rahf_jax.train import input_batches
from rahf_jax.train.synthetic_batches import make_synthetic_batch

COMMON = {"image", "prompt_ids", "decoder_input_ids", "decoder_target_ids", "decoder_loss_weights"}


@pytest.mark.parametrize("variant", features.VARIANTS)
def test_features_shapes_and_ranges(variant):
  mc = train_testlib.model_config(variant)
  b = make_synthetic_batch(mc, 6, 9, 7, seed=5)
  if variant == features.MULTI_HEAD:
    extra = {f"heatmap_{h}" for h in features.HEATMAP_TYPES}
    extra |= {f"score_{s}" for s in features.SCORE_TYPES}
  else:
    extra = {"output_type", "heatmap", "score"}
  assert set(b) == COMMON | extra
  hw = (mc.heatmap_size, mc.heatmap_size)
  assert b["image"].shape == (6, mc.image_size, mc.image_size, 3)
  assert b["image"].dtype == np.float32 and b["image"].min() >= -1 and b["image"].max() <= 1
  assert b["prompt_ids"].shape == (6, 9) and b["decoder_target_ids"].shape == (6, 7)
  for k in ("prompt_ids", "decoder_input_ids", "decoder_target_ids"):
    assert b[k].dtype == np.int32 and b[k].min() >= 0 and b[k].max() < mc.vocab_size
  # Targets: EOS-ended, PAD after; inputs: targets shifted right behind PAD_ID.
  t, w = b["decoder_target_ids"], b["decoder_loss_weights"]
  np.testing.assert_array_equal(b["decoder_input_ids"][:, 1:], t[:, :-1])
  assert np.all(b["decoder_input_ids"][:, 0] == features.PAD_ID)
  full = make_synthetic_batch(train_testlib.model_config(), 6, 9, 7, seed=5)
  lens = (full["decoder_target_ids"] != features.PAD_ID).sum(axis=1)
  assert np.all(full["decoder_target_ids"][np.arange(6), lens - 1] == features.EOS_ID)
  np.testing.assert_array_equal(full["decoder_loss_weights"].sum(axis=1), lens)
  for k in extra - {"output_type"}:
    assert b[k].dtype == np.float32 and b[k].min() >= 0 and b[k].max() <= 1
    if "heatmap" in k:
      assert b[k].shape == (6,) + hw
  if variant == features.AUGMENTED_PROMPT:
    ot = b["output_type"]
    assert (
      ot.dtype == np.int32 and ot.min() >= 0 and ot.max() < len(features.AUGMENTED_OUTPUT_TYPES)
    )
    words = ot == features.AUGMENTED_OUTPUT_TYPES.index(features.WORDS_TYPE)
    assert np.all(w[~words] == 0)
    heat = np.isin(ot, [features.AUGMENTED_OUTPUT_TYPES.index(h) for h in features.HEATMAP_TYPES])
    assert np.all(b["heatmap"][~heat] == 0)
  again = make_synthetic_batch(mc, 6, 9, 7, seed=5)
  for k in b:
    np.testing.assert_array_equal(b[k], again[k])
  other = make_synthetic_batch(mc, 6, 9, 7, seed=6)
  assert not np.array_equal(b["image"], other["image"])


def test_pad_batch_marks_padding_with_zero_weight():
  batch = {"image": np.ones((3, 2, 2, 3), np.float32), "output_type": np.array([0, 1, 2], np.int32)}
  padded, weights = input_batches.pad_batch(batch, 5)
  np.testing.assert_array_equal(weights, [1, 1, 1, 0, 0])
  assert padded["image"].shape == (5, 2, 2, 3) and np.all(padded["image"][3:] == 0)
  words = features.AUGMENTED_OUTPUT_TYPES.index(features.WORDS_TYPE)
  np.testing.assert_array_equal(padded["output_type"], [0, 1, 2, words, words])
  same, w = input_batches.pad_batch(batch, 3)
  assert same is batch and np.all(w == 1)
