"""Random in-memory batches in exactly the model-feature format (no TensorFlow).

Used by tests, benchmarks and `config.data.source = "synthetic"`. Values are in their valid
ranges: images in [-1, 1], ids in [2, vocab) with PAD_ID padding and an EOS_ID end,
heatmaps and scores in [0, 1]. The targets are a fixed function of the image (smoothed,
pooled pixel values) so that a model can learn them, not just their mean.
"""

from typing import Any

import numpy as np

from rahf_jax import features


def _cfg(model_config: Any, name: str, default: Any = None) -> Any:
  if isinstance(model_config, dict):
    value = model_config.get(name, default)
  else:
    value = getattr(model_config, name, default)
  if value is None:
    raise ValueError(f"model_config has no {name!r}; synthetic batches need it.")
  return value


def _hw(value: Any) -> tuple[int, int]:
  if isinstance(value, int | np.integer):
    return int(value), int(value)
  return int(value[0]), int(value[1])


def model_dims(model_config: Any) -> dict[str, Any]:
  """Image size, heatmap size, vocab size and variant read from a model config."""
  image_hw = _hw(_cfg(model_config, "image_size"))
  heatmap_hw = _hw(_cfg(model_config, "heatmap_size", image_hw))
  return {
    "image_hw": image_hw,
    "heatmap_hw": heatmap_hw,
    "vocab_size": int(_cfg(model_config, "vocab_size")),
    "variant": str(_cfg(model_config, "variant", features.MULTI_HEAD)),
  }


def _pool(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  """[B, H, W] -> [B, Ho, Wo] by nearest-index sampling (any sizes)."""
  rows = (np.arange(out_hw[0]) * x.shape[1]) // out_hw[0]
  cols = (np.arange(out_hw[1]) * x.shape[2]) // out_hw[1]
  return x[:, rows][:, :, cols]


def _token_ids(rng, batch_size: int, length: int, vocab: int, min_len: int = 1):
  """Random ids in [2, vocab), a random real length, EOS at its end, PAD after."""
  ids = rng.integers(2, max(vocab, 3), size=(batch_size, length)).astype(np.int32)
  lens = rng.integers(min(min_len, length), length + 1, size=batch_size)
  pos = np.arange(length)[None, :]
  ids = np.where(pos < lens[:, None] - 1, ids, features.PAD_ID).astype(np.int32)
  ids[np.arange(batch_size), lens - 1] = features.EOS_ID
  return ids, (pos < lens[:, None]).astype(np.float32)


def make_synthetic_batch(
  model_config: Any,
  batch_size: int,
  prompt_len: int,
  target_len: int,
  seed: int,
) -> dict[str, np.ndarray]:
  """One batch of model features (rahf_jax/features.py) for the model config's variant.

  Args:
    model_config: the model config (reads image_size, heatmap_size, vocab_size, variant).
    batch_size: examples in the batch.
    prompt_len: Lp, length of prompt_ids.
    target_len: Lt, length of the decoder features.
    seed: numpy seed; the same arguments give the same batch.
  """
  dims = model_dims(model_config)
  rng = np.random.default_rng(seed)
  h, w = dims["image_hw"]
  image = rng.uniform(-1.0, 1.0, size=(batch_size, h, w, 3)).astype(np.float32)
  # Learnable targets: functions of the image channels.
  chan = (image + 1.0) / 2.0  # [0, 1]
  maps = [_pool(chan[..., c], dims["heatmap_hw"]).astype(np.float32) for c in range(2)]
  means = chan.mean(axis=(1, 2))  # [B, 3]
  scores = [means[:, 0], means[:, 1], means[:, 2], means.mean(axis=1)]

  prompt_ids, _ = _token_ids(rng, batch_size, prompt_len, dims["vocab_size"])
  targets, weights = _token_ids(rng, batch_size, target_len, dims["vocab_size"])
  dec_in = np.zeros_like(targets)
  dec_in[:, 1:] = targets[:, :-1]
  dec_in[:, 0] = features.PAD_ID
  batch = {
    "image": image,
    "prompt_ids": prompt_ids,
    "decoder_input_ids": dec_in.astype(np.int32),
    "decoder_target_ids": targets,
    "decoder_loss_weights": weights,
  }
  if dims["variant"] == features.MULTI_HEAD:
    for i, name in enumerate(features.HEATMAP_TYPES):
      batch[f"heatmap_{name}"] = maps[i]
    for i, name in enumerate(features.SCORE_TYPES):
      batch[f"score_{name}"] = scores[i].astype(np.float32)
  elif dims["variant"] == features.AUGMENTED_PROMPT:
    types = features.AUGMENTED_OUTPUT_TYPES
    otype = rng.integers(0, len(types), size=batch_size).astype(np.int32)
    heat = np.zeros((batch_size,) + tuple(dims["heatmap_hw"]), np.float32)
    score = np.zeros((batch_size,), np.float32)
    for b, t in enumerate(otype):
      name = types[t]
      if name in features.HEATMAP_TYPES:
        heat[b] = maps[features.HEATMAP_TYPES.index(name)][b]
      elif name in features.SCORE_TYPES:
        score[b] = scores[features.SCORE_TYPES.index(name)][b]
    words = np.array([types[t] == features.WORDS_TYPE for t in otype], np.float32)
    batch["decoder_loss_weights"] = weights * words[:, None]
    batch.update(output_type=otype, heatmap=heat, score=score)
  else:
    raise ValueError(f"Unknown model variant {dims['variant']!r}; use one of {features.VARIANTS}.")
  return batch
