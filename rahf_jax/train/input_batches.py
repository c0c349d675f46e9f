"""Host-local numpy batch iterators for training and dev evaluation, from either source.

- "synthetic": rahf_jax.train.synthetic_batches, no TensorFlow; train batch t is batch
  (t mod data.num_synthetic_batches) of a fixed set, a pure function of (seed, t, host).
- "tfds": the SeqIO pipeline (rahf_jax.data.pipeline, imported lazily so rahf_jax.train
  imports without TensorFlow), this host's shard, deterministic, started at `start_batch`.

Each host gets `global_batch_size / process_count` rows per batch.
"""

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from rahf_jax import features
from rahf_jax.train.synthetic_batches import make_synthetic_batch

_EVAL_SEED_OFFSET = 1_000_003


def per_host_batch_size(global_batch_size: int) -> int:
  """This host's share of a global batch (must divide evenly)."""
  n = jax.process_count()
  if global_batch_size % n:
    raise ValueError(
      f"batch size {global_batch_size} is not divisible by the {n} hosts; change batch_size."
    )
  return global_batch_size // n


def _synthetic_seed(seed: int, index: int, offset: int = 0) -> int:
  return int(
    np.random.SeedSequence([seed, offset, index, jax.process_index()]).generate_state(1)[0]
  )


def task_for(config, model_config: Any) -> str:
  """The SeqIO task the run reads: config.data.task_name, or the variant's task registered
  for this model's image/heatmap sizes, the config's vocabulary and data dir."""
  if config.data.get("task_name"):
    return config.data.task_name
  from rahf_jax.data import tasks  # noqa: PLC0415 (TensorFlow only here)

  return tasks.register_model_task(
    config.model.variant,
    image_size=int(model_config.image_size),
    heatmap_size=int(model_config.heatmap_size),
    model_vocab_size=int(model_config.vocab_size),
    vocabulary=config.data.vocabulary,
    data_dir=config.data.get("data_dir") or None,
  )


def _tfds_dataset(
  config, model_config: Any, split: str, batch_size: int, train: bool, start_batch: int = 0
):
  from rahf_jax.data import pipeline  # noqa: PLC0415 (TensorFlow only here)

  ds = pipeline.make_dataset(
    task_name=task_for(config, model_config),
    split=split,
    batch_size=batch_size,
    feature_lengths={"inputs": config.data.prompt_len, "targets": config.data.target_len},
    shuffle=bool(config.data.shuffle) if train else False,
    seed=int(config.seed),
    shard_index=jax.process_index(),
    num_shards=jax.process_count(),
    num_epochs=None if train else 1,
    start_batch=start_batch,
    drop_remainder=train,
  )
  return pipeline.as_numpy_batches(ds)


def train_batches(config, model_config: Any, start_batch: int = 0) -> Iterator[dict]:
  """Host-local train batches start_batch, start_batch + 1, ... (forever)."""
  bsz = per_host_batch_size(int(config.batch_size))
  source = config.data.source
  if source == "synthetic":
    n = max(1, int(config.data.num_synthetic_batches))
    cache: dict[int, dict] = {}

    def gen():
      t = start_batch
      while True:
        i = t % n
        if i not in cache:
          cache[i] = make_synthetic_batch(
            model_config,
            bsz,
            config.data.prompt_len,
            config.data.target_len,
            _synthetic_seed(int(config.seed), i),
          )
        yield cache[i]
        t += 1

    return gen()
  if source == "tfds":
    return iter(
      _tfds_dataset(config, model_config, config.data.train_split, bsz, True, start_batch)
    )
  raise ValueError(f"config.data.source must be 'tfds' or 'synthetic', got {source!r}.")


def eval_batches(config, model_config: Any) -> Iterator[tuple[dict, np.ndarray]]:
  """Host-local (batch, example_weights) pairs over the dev split once; the last batch is padded
  to full size with zero-weight rows (weights 1 for real rows)."""
  bsz = per_host_batch_size(int(config.eval_batch_size))
  limit = int(config.get("num_eval_batches", -1))
  source = config.data.source
  if source == "synthetic":
    n = limit if limit > 0 else max(1, int(config.data.num_synthetic_batches))
    for i in range(n):
      batch = make_synthetic_batch(
        model_config,
        bsz,
        config.data.prompt_len,
        config.data.target_len,
        _synthetic_seed(int(config.seed), i, _EVAL_SEED_OFFSET),
      )
      yield batch, np.ones((bsz,), np.float32)
    return
  if source != "tfds":
    raise ValueError(f"config.data.source must be 'tfds' or 'synthetic', got {source!r}.")
  for i, batch in enumerate(
    _tfds_dataset(config, model_config, config.data.eval_split, bsz, False)
  ):
    if 0 < limit <= i:
      break
    yield pad_batch(batch, bsz)


def pad_batch(batch: dict, batch_size: int) -> tuple[dict, np.ndarray]:
  """Pads every feature with zero rows up to batch_size; returns (batch, example_weights)."""
  n = len(next(iter(batch.values())))
  weights = np.zeros((batch_size,), np.float32)
  weights[:n] = 1.0
  if n == batch_size:
    return batch, weights
  padded = {}
  for k, v in batch.items():
    v = np.asarray(v)
    pad = np.zeros((batch_size - n,) + v.shape[1:], v.dtype)
    if k == "output_type":
      pad[:] = features.AUGMENTED_OUTPUT_TYPES.index(features.WORDS_TYPE)
    padded[k] = np.concatenate([v, pad], axis=0)
  return padded, weights
