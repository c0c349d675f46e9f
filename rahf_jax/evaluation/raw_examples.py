"""The TFDS examples behind an evaluation's batches, row for row (the reproduction protocol).

The reproduction protocol (rahf_jax.evaluation.protocols) needs what the task's batches no
longer hold: the uint8 512x512 heatmaps, the prompt's words and labels as stored, and the
encoded image. `raw_rows` reads them from the task's data source as stored, with the same split,
shuffling (none), seed and shard as rahf_jax.train.input_batches.eval_batches, so its k-th
row belongs to the k-th row of those batches (the augmented-prompt task repeats each example
once per output type, in features.AUGMENTED_OUTPUT_TYPES order). The evaluator checks that
pairing on the scores of every row.

TensorFlow and SeqIO are imported inside `raw_rows` only, so this module imports without them.
"""

import io
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from PIL import Image

from rahf_jax import features as F
from rahf_jax.evaluation import protocols
from rahf_jax.inference.predictor import preprocess_image


def _decoded_uint8(value: Any) -> np.ndarray:
  """An encoded image (bytes) or its pixels -> uint8 array as PIL (or TFDS) decodes it."""
  if isinstance(value, bytes | np.bytes_):
    return np.asarray(Image.open(io.BytesIO(bytes(value))))
  return np.asarray(value, np.uint8)


def row_from_example(example: dict, image_size: int) -> dict[str, Any]:
  """The reproduction's inputs and references from one TFDS `richhf18k` example (numpy).

  Returns:
    {"image": float32 [S, S, 3] in [-1, 1] (PIL bilinear resize of the uint8 image, as the
       reproduction's ViT image processor does), "clean_prompt": the words joined by spaces,
     "reference": the labelled prompt (protocols.labelled_prompt of words and word_labels),
     "heatmaps": {h: uint8 [512, 512]}, "scores": {s: float32}}.
  """
  pixels = _decoded_uint8(example["image"])
  heatmaps = {}
  for h in F.HEATMAP_TYPES:
    m = _decoded_uint8(example[f"heatmap_{h}"])
    heatmaps[h] = m[..., 0] if m.ndim == 3 else m
  words = list(example["words"])
  return {
    "image": preprocess_image(pixels, image_size),
    "clean_prompt": protocols.clean_prompt(words),
    "reference": protocols.labelled_prompt(words, list(example["word_labels"])),
    "heatmaps": heatmaps,
    "scores": {s: np.float32(example[s]) for s in F.SCORE_TYPES},
  }


def raw_rows(config, model_config: Any, split: str) -> Iterator[dict[str, Any]]:
  """One `row_from_example` dict per row of the evaluation batches of `split`, in order.

  Augmented prompt: each example's dict is yielded once per output type with "output_type"
  (its index) and "prompt" = features.augmented_prompt(type, clean prompt); multi-head:
  once, with "prompt" = the clean prompt.
  """
  import seqio  # noqa: PLC0415 (TensorFlow only here)

  from rahf_jax.data import tasks  # noqa: PLC0415
  from rahf_jax.train import input_batches  # noqa: PLC0415

  name = input_batches.task_for(config, model_config)
  variant = tasks.variant_of(name)
  source = tasks.stored_source(name)  # the task's own source may hold decoded maps
  shard = seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())
  seed = int(config.seed)
  # The same choice as seqio.Task.get_dataset: shard at the source when it can.
  if source.supports_arbitrary_sharding or len(source.list_shards(split=split)) >= shard.num_shards:
    ds = source.get_dataset(split=split, shuffle=False, seed=seed, shard_info=shard)
  else:
    ds = source.get_dataset(split=split, shuffle=False, seed=seed)
    ds = ds.shard(shard.num_shards, shard.index)
  image_size = int(model_config.image_size)
  for example in ds.as_numpy_iterator():
    row = row_from_example(example, image_size)
    if variant == F.MULTI_HEAD:
      yield {**row, "prompt": row["clean_prompt"], "output_type": None}
      continue
    for index, t in enumerate(F.AUGMENTED_OUTPUT_TYPES):
      yield {**row, "prompt": F.augmented_prompt(t, row["clean_prompt"]), "output_type": index}
