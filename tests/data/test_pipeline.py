"""Tests of rahf_jax/data/pipeline.py: fixed shapes, determinism, resume and sharding."""

import collections

import numpy as np
import pytest
import seqio
import seqio_fakes

from rahf_jax import features as F
from rahf_jax.data import pipeline, tasks, vocab

LENGTHS = {"inputs": 24, "targets": 16}


@pytest.fixture(scope="module")
def task_names():
  return tasks.register_tasks(
    data_dir=None,
    image_size=8,
    heatmap_size=4,
    vocabulary=vocab.demo_vocabulary(),
    suffix="_pipeline_test",
    source=seqio_fakes.fake_source(),
  )


def _batches(name, n, **kwargs):
  args = dict(
    task_name=name,
    split="train",
    batch_size=3,
    feature_lengths=LENGTHS,
    shuffle=True,
    seed=7,
  )
  args.update(kwargs)
  it = pipeline.as_numpy_batches(pipeline.make_dataset(**args))
  return [next(it) for _ in range(n)]


def _assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b, strict=True):
    assert set(a) == set(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("variant", F.VARIANTS)
def test_resume_at_start_batch_equals_fresh_run(task_names, variant):
  # 13 train examples: 8 batches of 3 cross several epochs (multi-head) and shuffle windows.
  fresh = _batches(task_names[variant], 8)
  for b in fresh:
    assert b["image"].shape == (3, 8, 8, 3) and b["prompt_ids"].shape == (3, 24)
  _assert_same(_batches(task_names[variant], 3, start_batch=5), fresh[5:])
  _assert_same(_batches(task_names[variant], 8), fresh)  # same seed, same batches


def test_seed_changes_order(task_names):
  a = _batches(task_names[F.MULTI_HEAD], 4, seed=1)
  b = _batches(task_names[F.MULTI_HEAD], 4, seed=2)
  assert any(
    not np.array_equal(x["prompt_ids"], y["prompt_ids"]) for x, y in zip(a, b, strict=True)
  )


def _example_keys(batches):
  """A multiset of per-example identities (prompt ids + scores)."""
  keys = collections.Counter()
  for b in batches:
    for i in range(len(b["prompt_ids"])):
      scores = tuple(float(b[f"score_{s}"][i]) for s in F.SCORE_TYPES)
      keys[(b["prompt_ids"][i].tobytes(), scores)] += 1
  return keys


def test_shards_partition_the_split(task_names):
  def one_pass(**kwargs):
    ds = pipeline.make_dataset(
      task_name=task_names[F.MULTI_HEAD],
      split="train",
      batch_size=1,
      feature_lengths=LENGTHS,
      shuffle=False,
      seed=None,
      num_epochs=1,
      drop_remainder=False,
      **kwargs,
    )
    return list(pipeline.as_numpy_batches(ds))

  everything = _example_keys(one_pass())
  assert sum(everything.values()) == seqio_fakes.SPLIT_SIZES["train"]
  shard_0 = _example_keys(one_pass(shard_index=0, num_shards=2))
  shard_1 = _example_keys(one_pass(shard_index=1, num_shards=2))
  assert sum(shard_0.values()) == 7 and sum(shard_1.values()) == 6
  assert shard_0 + shard_1 == everything


def test_one_epoch_without_drop_remainder_keeps_every_example(task_names):
  ds = pipeline.make_dataset(
    task_name=task_names[F.AUGMENTED_PROMPT],
    split="dev",
    batch_size=4,
    feature_lengths=LENGTHS,
    shuffle=False,
    seed=None,
    num_epochs=1,
    drop_remainder=False,
  )
  sizes = [len(b["output_type"]) for b in pipeline.as_numpy_batches(ds)]
  assert sum(sizes) == seqio_fakes.SPLIT_SIZES["dev"] * len(F.AUGMENTED_OUTPUT_TYPES)


def test_bad_arguments_raise(task_names):
  with pytest.raises(ValueError, match="needs a seed"):
    _batches(task_names[F.MULTI_HEAD], 1, seed=None)
  with pytest.raises(ValueError, match="shard_index"):
    _batches(task_names[F.MULTI_HEAD], 1, shard_index=2, num_shards=2)
  with pytest.raises(ValueError, match="register_tasks"):
    _batches("richhf18k_nonexistent", 1)


def test_resume_on_a_real_build(richhf18k_data_dir):
  names = tasks.register_tasks(
    data_dir=str(richhf18k_data_dir),
    image_size=8,
    heatmap_size=4,
    vocabulary=vocab.demo_vocabulary(),
    suffix="_pipeline_real",
  )
  # 24 train examples, batches of 5: batches 4..6 cross the first epoch boundary.
  fresh = _batches(names[F.MULTI_HEAD], 7, batch_size=5, seed=11)
  _assert_same(_batches(names[F.MULTI_HEAD], 3, batch_size=5, seed=11, start_batch=4), fresh[4:])
  other = _batches(names[F.MULTI_HEAD], 7, batch_size=5, seed=12)
  assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(fresh, other, strict=True))


def test_metric_and_postprocess_hooks_reach_the_tasks():
  def predict_metric(targets, predictions):
    return {"exact": float(np.mean([t == p for t, p in zip(targets, predictions, strict=True)]))}

  def postprocess(output, example=None, is_target=False):
    del example
    return ("target:" if is_target else "pred:") + output

  names = tasks.register_tasks(
    data_dir=None,
    image_size=8,
    heatmap_size=4,
    vocabulary=vocab.demo_vocabulary(),
    suffix="_hooks_test",
    source=seqio_fakes.fake_source(),
    metric_fns=[predict_metric],
    postprocess_fn=postprocess,
  )
  for name in names.values():
    task = seqio.get_mixture_or_task(name)
    assert list(task.predict_metric_fns) == [predict_metric]
    assert task.postprocess_fn("a_0", is_target=True) == "target:a_0"
    assert task.predict_metric_fns[0](["x", "y"], ["x", "z"]) == {"exact": 0.5}
