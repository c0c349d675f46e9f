"""The trainer's input pipeline: a registered RAHF task -> fixed-shape batches of model features.

`make_dataset(task_name=..., split=..., batch_size=..., feature_lengths={"inputs": Lp,
"targets": Lt}, shuffle=..., seed=...)` reads the task (on this host's shard), converts it
with the variant's feature converter, and batches it. Batches are a deterministic function of
(task, split, seed, shard, batch_size, feature_lengths): file order, shuffling and every map
are seeded or order-preserving, so `start_batch=k` yields exactly batches k, k+1, ... of the
run that started at 0. The skipped batches are read, decoded and dropped: that costs their
input time, not their training time (measured on 2 shared CPU cores: ~85 examples/s at
384x384, ~240/s at 64x64; a 16-core host resuming the reference run, 30 epochs of 15.8K
examples, would spend a few minutes). Training batches drop the remainder so every batch has
the same shape.

Memory: the task shuffles after resizing, so its buffer (tasks.DEFAULT_SHUFFLE_BUFFER_SIZE
examples) holds float32 images and heatmaps: ~0.75 GB per host for multi-head at 384x384.
"""

from collections.abc import Iterator, Mapping

import numpy as np
import seqio
import tensorflow as tf

from rahf_jax.data import feature_converter, tasks


def make_dataset(
  *,
  task_name: str,
  split: str,
  batch_size: int,
  feature_lengths: Mapping[str, int],
  shuffle: bool,
  seed: int | None,
  shard_index: int = 0,
  num_shards: int = 1,
  num_epochs: int | None = None,
  start_batch: int = 0,
  drop_remainder: bool = True,
) -> tf.data.Dataset:
  """Batches of model features for `task_name` (see the module docstring).

  Args:
    task_name: a task registered by rahf_jax.data.tasks.register_tasks.
    split: "train", "dev" or "test".
    batch_size: examples per batch on this host.
    feature_lengths: {"inputs": prompt length, "targets": target length} in tokens.
    shuffle: shuffle files and examples (training).
    seed: seed of all shuffling; required when shuffling so that runs can resume.
    shard_index, num_shards: this host's part of the split (each host reads only its part).
    num_epochs: passes over the data; None repeats forever.
    start_batch: number of leading batches to skip (resume).
    drop_remainder: drop a final smaller batch (keep True for training).
  """
  if shuffle and seed is None:
    raise ValueError("make_dataset: shuffle=True needs a seed, or resuming would not be exact.")
  if not 0 <= shard_index < num_shards:
    raise ValueError(
      f"make_dataset: shard_index={shard_index} not in [0, num_shards={num_shards})."
    )
  if batch_size <= 0 or start_batch < 0:
    raise ValueError(f"make_dataset: bad batch_size={batch_size} or start_batch={start_batch}.")
  variant = tasks.variant_of(task_name)
  task = seqio.get_mixture_or_task(task_name)
  lengths = {"inputs": int(feature_lengths["inputs"]), "targets": int(feature_lengths["targets"])}
  ds = task.get_dataset(
    sequence_length=lengths,
    split=split,
    shuffle=shuffle,
    seed=seed,
    shard_info=seqio.ShardInfo(index=shard_index, num_shards=num_shards),
    num_epochs=num_epochs,
    use_cached=False,
  )
  ds = feature_converter.converter_for(variant)(ds, lengths)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  if start_batch:
    ds = ds.skip(start_batch)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def as_numpy_batches(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  """Iterates a batched dataset as dicts of numpy arrays."""
  for batch in ds.as_numpy_iterator():
    yield dict(batch)
