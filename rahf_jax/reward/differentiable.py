"""`reward_fn`: RAHF's score heads as a pure, differentiable JAX reward.

  reward = reward_fn(model, {"overall": 1.0})                  # or scorer.reward_fn(...)
  r = reward(params, images, prompt_ids)                       # float [B]
  g = jax.grad(lambda x: reward(params, x, prompt_ids).sum())(images)

`images` are float [B, H, W, 3] in [0, 1] of any H, W: they are resized inside with
`jax.image.resize` (linear, antialiased) to the model's image_size and mapped to [-1, 1], the
model's input range. `prompt_ids` are the plain prompt's ids (`Scorer.encode_prompts`), int
[B, L], EOS-ended and PAD-padded. The reward is the weighted mean of the score heads
(rahf_jax.reward.ranking: sum(w_s * score_s) / sum(|w_s|)); only the heads run (the model's
`predict_heads`), never the decoder.

The function has no Python state and no host calls, so it jits, vmaps, shards (pass sharded
arrays or jit it with in_shardings) and differentiates w.r.t. the pixels (and the params).
The augmented-prompt variant runs one encoder pass per weighted score type, its prompt written
behind that type's prefix ids (`augmented_prefix_ids`), as the data layer writes it.
Under a mesh, pass `logical_rules` (e.g. rahf_jax.train.partitioning.LOGICAL_AXIS_RULES["dp"])
so that the model's logical sharding annotations resolve to mesh axes.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rahf_jax import features as F
from rahf_jax.reward import ranking


def augmented_prefix_ids(tokenizer: Any) -> dict[str, list[int]]:
  """{score type: ids of "<type prefix> |"}: followed by the prompt's own ids, they equal the
  ids of features.augmented_prompt(type, prompt) (SentencePiece splits at spaces first)."""
  return {s: list(tokenizer.encode(f"{F.AUGMENTED_PROMPT_PREFIXES[s]} |")) for s in F.SCORE_TYPES}


def prefixed_prompt_ids(prompt_ids: jax.Array, prefix: Sequence[int]) -> jax.Array:
  """[B, L] plain ids -> [B, L] ids of prefix + prompt, cut to L with EOS last when cut.

  The same ids as encoding the joined text and truncating it (Predictor.encode_prompts).
  """
  length = prompt_ids.shape[-1]
  head = jnp.broadcast_to(
    jnp.asarray(prefix, prompt_ids.dtype), (*prompt_ids.shape[:-1], len(prefix))
  )
  ids = jnp.concatenate([head, prompt_ids], axis=-1)[..., :length]
  last = ids[..., -1]
  return ids.at[..., -1].set(jnp.where(last != F.PAD_ID, F.EOS_ID, F.PAD_ID).astype(ids.dtype))


def model_input(images: jax.Array, image_size: int) -> jax.Array:
  """float [B, H, W, 3] in [0, 1] -> [B, S, S, 3] in [-1, 1] (jax.image.resize, linear)."""
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be float [B, H, W, 3] in [0, 1], got shape {images.shape}.")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    images = images.astype(jnp.float32)
  b, h, w, c = images.shape
  if (h, w) != (image_size, image_size):
    images = jax.image.resize(images, (b, image_size, image_size, c), "linear", antialias=True)
  return images * 2.0 - 1.0


def reward_fn(
  model: nn.Module,
  weights: Mapping[str, float] | None = None,
  *,
  tokenizer: Any = None,
  logical_rules: Any = None,
) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
  """A pure function (params, images, prompt_ids) -> reward float [B] (module docstring).

  Args:
    model: the RAHF module (`scorer.predictor.setup.model`, or rahf_jax.models.build_model).
    weights: {score type: weight}; default ranking.DEFAULT_WEIGHTS (the overall score).
    tokenizer: the run's SentencePiece tokenizer; needed for the augmented-prompt variant.
    logical_rules: logical-axis rules to trace the model under (needed under a mesh).
  """
  weights = ranking.check_weights(weights)
  total = sum(abs(w) for w in weights.values())
  config = model.config
  image_size = int(config.image_size)
  types = tuple(weights)
  prefixes = None
  if config.variant == F.AUGMENTED_PROMPT:
    if tokenizer is None:
      raise ValueError(
        "the augmented-prompt variant needs tokenizer= (scorer.predictor.tokenizer)."
      )
    prefixes = augmented_prefix_ids(tokenizer)
  elif config.variant != F.MULTI_HEAD:
    raise ValueError(f"model variant {config.variant!r} unknown; use one of {F.VARIANTS}.")

  def heads(params, x, ids):
    return model.apply({"params": params}, x, ids, method=model.predict_heads)

  def reward(params, images, prompt_ids):
    x = model_input(images, image_size)
    if prefixes is None:
      scores = heads(params, x, prompt_ids)["scores"]
      per_type = [scores[s] for s in types]
    else:  # one encoder pass per weighted type, batched along the leading axis
      b = x.shape[0]
      ids = jnp.concatenate([prefixed_prompt_ids(prompt_ids, prefixes[s]) for s in types])
      score = heads(params, jnp.concatenate([x] * len(types)), ids)["score"]
      per_type = [score[i * b : (i + 1) * b] for i in range(len(types))]
    return sum(weights[s] * v for s, v in zip(types, per_type, strict=True)) / total

  if logical_rules is None:
    return reward

  def reward_under_rules(params, images, prompt_ids):
    with nn.logical_axis_rules(logical_rules):
      return reward(params, images, prompt_ids)

  return reward_under_rules
