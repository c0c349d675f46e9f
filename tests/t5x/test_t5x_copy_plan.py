"""The copy plan of the t5x route's constrained decoding as task features, without t5x
(rahf_jax.t5x.tasks, rahf_jax.data.feature_converter).

The reference is the native route's own plan: rahf_jax.inference.prompt_copy.copy_plan of the
prompt read back from the batch's encoder ids, which the native Predictor builds when it
evaluates a batch. tests/t5x/test_t5x_adapter.py (needs t5x) checks that RAHFModel decodes with
the plan and the bias it gets.
"""

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from rahf_jax import features as F
from rahf_jax.data.feature_converter import CONVERTERS, fit_copy_plan
from rahf_jax.inference import prompt_copy
from rahf_jax.inference.tokenizer import load_tokenizer
from rahf_jax.t5x import tasks as t5x_tasks

# Words of several demo-vocabulary pieces, so a plan's mark places are not every position.
PROMPTS = [
  "a xylophone, beside unicorns!",
  "photorealistic knights jousting at dusk",
  "cat",
]


@pytest.fixture(scope="module")
def tokenizer():
  return load_tokenizer("demo")


def _ids(tokenizer, text, length=64):
  row = np.full((length,), F.PAD_ID, np.int32)
  ids = tokenizer.encode(text)[: length - 1] + [F.EOS_ID]
  row[: len(ids)] = ids
  return row


@pytest.mark.parametrize("length", [3, 6, 9, 32])
def test_example_plan_fitted_to_a_length_is_the_native_plan(tokenizer, length):
  """example_copy_plan (the task feature) then fit_copy_plan (the converter) give, at every
  target length, truncated or not, copy_plan's arrays for the prompt the encoder reads."""
  augmented = F.augmented_prompt(F.WORDS_TYPE, PROMPTS[1])
  for text, prompt in [*((p, p) for p in PROMPTS), (augmented, PROMPTS[1])]:
    ids, can_mark = t5x_tasks.example_copy_plan(_ids(tokenizer, text), tokenizer)
    assert ids[-1] == F.EOS_ID and len(ids) == len(can_mark)
    got_ids, got_mark = (np.asarray(x) for x in fit_copy_plan(ids, can_mark, length))
    ref = prompt_copy.copy_plan([prompt], tokenizer, length)
    np.testing.assert_array_equal(got_ids, ref.copy_ids[0])
    np.testing.assert_array_equal(got_mark, ref.can_mark[0].astype(np.int32))
  # The words span several pieces: marks go after a word's last piece only.
  full = prompt_copy.copy_plan([PROMPTS[1]], tokenizer, 32)
  assert 0 < full.can_mark.sum() < np.sum(full.copy_ids > F.EOS_ID)


@pytest.mark.parametrize("variant", F.VARIANTS)
def test_t5x_task_batches_carry_the_native_copy_plan(t5x_data_dir, tokenizer, variant):
  """The t5x task + the adapter's converter (copy_plan=True): every example's copy_ids and
  can_mark equal copy_plan of its prompt_ids read back, at the full and a truncating length."""
  name = t5x_tasks.rahf_task(variant, "tiny", "demo", data_dir=t5x_data_dir)
  task = seqio.get_mixture_or_task(name)
  for lt in (32, 5):
    lengths = {"inputs": 32, "targets": lt}
    converter = CONVERTERS[variant](copy_plan=True)
    ds = converter(task.get_dataset(lengths, split="test", shuffle=False), lengths)
    examples = list(tfds.as_numpy(ds))
    assert len(examples) == 6 * (len(F.AUGMENTED_OUTPUT_TYPES) if variant != F.MULTI_HEAD else 1)
    prompt_ids = np.stack([ex["prompt_ids"] for ex in examples])
    ref = prompt_copy.copy_plan(prompt_copy.prompts_from_ids(prompt_ids, tokenizer), tokenizer, lt)
    np.testing.assert_array_equal(np.stack([ex["copy_ids"] for ex in examples]), ref.copy_ids)
    np.testing.assert_array_equal(np.stack([ex["can_mark"] for ex in examples]), ref.can_mark)
    # Its words are the target's words without their marks (the labels' own prompt).
    if lt == 32:
      for ex in examples:
        target = tokenizer.decode([int(i) for i in ex["decoder_target_ids"] if i > F.EOS_ID])
        copied = tokenizer.decode([int(i) for i in ex["copy_ids"] if i > F.EOS_ID])
        assert copied.split() == target.replace(F.MISALIGNED_SUFFIX, "").split()


def test_converter_without_the_plan_in_the_task_says_what_to_use(t5x_data_dir):
  name = t5x_tasks.rahf_task(F.MULTI_HEAD, "tiny", "demo", data_dir=t5x_data_dir, copy_plan=False)
  task = seqio.get_mixture_or_task(name)
  lengths = {"inputs": 32, "targets": 32}
  ds = task.get_dataset(lengths, split="test", shuffle=False)
  assert "copy_ids" not in ds.element_spec
  assert "copy_ids" not in CONVERTERS[F.MULTI_HEAD]()(ds, lengths).element_spec
  try:
    with pytest.raises(ValueError, match="lacks the copy plan"):
      CONVERTERS[F.MULTI_HEAD](copy_plan=True)(ds, lengths)
  finally:
    t5x_tasks.rahf_task(F.MULTI_HEAD, "tiny", "demo", data_dir=t5x_data_dir)  # as registered


def test_fit_copy_plan_is_a_graph_op():
  """The converter maps it inside tf.data (traced): same arrays as eagerly."""
  ids = tf.constant([5, 6, 7, 8, F.EOS_ID], tf.int32)
  can_mark = tf.constant([0, 1, 0, 1, 1], tf.int32)
  spec = tf.TensorSpec([None], tf.int32)
  traced = tf.function(lambda a, b: fit_copy_plan(a, b, 4), input_signature=[spec, spec])
  for got in (traced(ids, can_mark), fit_copy_plan(ids, can_mark, 4)):
    assert [x.numpy().tolist() for x in got] == [[5, 6, 7, F.EOS_ID], [0, 1, 0, 1]]
