"""`reward_fn`: RAHF's score heads (and heatmaps) as a pure, differentiable JAX reward.

  reward = reward_fn(model, {"overall": 1.0})                  # or scorer.reward_fn(...)
  r = reward(params, images, prompt_ids)                       # float [B]
  g = jax.grad(lambda x: reward(params, x, prompt_ids).sum())(images)
  dense = reward_fn(model, dense=True)(params, images, prompt_ids)   # float [B, H, W]

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
Under a mesh, pass `logical_rules` (e.g. rahf_jax.sharding.partitioning.LOGICAL_AXIS_RULES["dp"])
so that the model's logical sharding annotations resolve to mesh axes.

Dense reward (`dense=True`): a per-pixel reward map float [B, H, W] instead of [B],

  R_dense[b, y, x] = R[b] * (1 - sum_k a_k * Up(H_k[b])[y, x])

where R[b] is the scalar reward above (the weighted mean of the score heads), H_k the predicted
heatmap of type k (implausibility, misalignment; each in [0, 1], the model's heatmap_size), a_k
>= 0 its weight with sum_k a_k <= 1 (`heatmap_weights`, default {"implausibility": 1.0}, so
R_dense = R * (1 - H_implausibility) as dense-reward GRPO variants define it), and Up the
bilinear resize (`jax.image.resize`, "linear", half-pixel centres; antialiased when it shrinks)
to `dense_size`: "image"
(default: the input images' own H, W, so one reward per generated pixel), "heatmap" (the
model's heatmap_size, no resize) or (H, W). R_dense lies between 0 and R: a pixel nobody would
mark keeps the image's reward, a surely implausible one gets none. Its mean over the pixels is
R * (1 - sum_k a_k * mean(H_k)). The map jits and vmaps like the scalar reward, and is
differentiable w.r.t. the pixels (`dense_reward_map` is the formula alone):

  d R_dense[y, x] / d pixels = (1 - sum_k a_k Up(H_k)[y, x]) dR/d pixels            (score part)
                               - R sum_k a_k d Up(H_k)[y, x] / d pixels            (heatmap part)

`score_gradient=False` treats R as a constant (jax.lax.stop_gradient) and keeps the heatmap part
alone: the gradient then points at the regions the heatmaps mark (where lowering the heat raises
the reward) instead of being dominated by the image-wide score part (on the tests' tiny model
the score part of d sum(R_dense) is ~45 times the heatmap part in L1 norm). The values are the
same either way.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rahf_jax import features as F
from rahf_jax.reward import ranking

DEFAULT_HEATMAP_WEIGHTS = {"implausibility": 1.0}
DENSE_SIZES = ("image", "heatmap")


def augmented_prefix_ids(tokenizer: Any) -> dict[str, list[int]]:
  """{score or heatmap type: ids of "<type prefix> |"}: followed by the prompt's own ids, they
  equal the ids of features.augmented_prompt(type, prompt) (SentencePiece splits at spaces
  first)."""
  types = F.SCORE_TYPES + F.HEATMAP_TYPES
  return {t: list(tokenizer.encode(f"{F.AUGMENTED_PROMPT_PREFIXES[t]} |")) for t in types}


def check_heatmap_weights(heatmap_weights: Mapping[str, float] | None) -> dict[str, float]:
  """{heatmap type: a_k} with a_k >= 0, sum <= 1, some a_k > 0; zero weights are dropped."""
  given = dict(DEFAULT_HEATMAP_WEIGHTS if heatmap_weights is None else heatmap_weights)
  unknown = sorted(set(given) - set(F.HEATMAP_TYPES))
  if unknown:
    raise ValueError(
      f"heatmap_weights has unknown heatmap types {unknown}; use {list(F.HEATMAP_TYPES)}."
    )
  out = {}
  for k, a in given.items():
    a = float(a)
    if not a >= 0.0 or a == float("inf"):
      raise ValueError(f"heatmap_weights[{k!r}] is {a}; pass a finite weight >= 0.")
    if a > 0.0:
      out[k] = a
  if not out or sum(out.values()) > 1.0 + 1e-9:
    raise ValueError(
      f"heatmap_weights {given} must have weights >= 0 summing to more than 0 and at most 1 "
      "(so that the dense reward stays between 0 and R), e.g. {'implausibility': 1.0}."
    )
  return out


def dense_reward_map(
  reward: jax.Array,
  heatmaps: Mapping[str, jax.Array],
  heatmap_weights: Mapping[str, float] | None = None,
  size: tuple[int, int] | None = None,
) -> jax.Array:
  """R [B] and heatmaps {type: [B, h, w]} -> R_dense [B, H, W] (module docstring's formula).

  `size` (H, W): the bilinear resize of each heatmap (jax.image.resize, "linear"); None: the
  heatmaps' own size.
  """
  a = check_heatmap_weights(heatmap_weights)
  missing = sorted(set(a) - set(heatmaps))
  if missing:
    raise ValueError(f"dense_reward_map needs heatmaps {missing}; got {sorted(heatmaps)}.")
  penalty = 0.0
  for k, weight in a.items():
    heat = heatmaps[k]
    if size is not None and tuple(heat.shape[-2:]) != tuple(size):
      heat = jax.image.resize(heat, (*heat.shape[:-2], *size), "linear", antialias=True)
    penalty = penalty + weight * heat
  return reward[..., None, None] * (1.0 - penalty)


def _dense_size(dense_size: Any, heatmap_size: int) -> tuple[int, int] | None:
  """The (H, W) to resize to; None for "image" (decided by each call's images)."""
  if isinstance(dense_size, str):
    if dense_size not in DENSE_SIZES:
      raise ValueError(f"dense_size {dense_size!r} unknown; use 'image', 'heatmap' or (H, W).")
    return None if dense_size == "image" else (heatmap_size, heatmap_size)
  try:
    h, w = (int(v) for v in dense_size)
  except (TypeError, ValueError):
    h = w = 0
  if h < 1 or w < 1:
    raise ValueError(f"dense_size {dense_size!r} unknown; use 'image', 'heatmap' or (H, W).")
  return h, w


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
  dense: bool = False,
  heatmap_weights: Mapping[str, float] | None = None,
  dense_size: str | tuple[int, int] = "image",
  score_gradient: bool = True,
) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
  """A pure function (params, images, prompt_ids) -> reward float [B] (module docstring).

  Args:
    model: the RAHF module (`scorer.predictor.setup.model`, or rahf_jax.models.build_model).
    weights: {score type: weight}; default ranking.DEFAULT_WEIGHTS (the overall score).
    tokenizer: the run's SentencePiece tokenizer; needed for the augmented-prompt variant.
    logical_rules: logical-axis rules to trace the model under (needed under a mesh).
    dense: return the per-pixel map R_dense float [B, H, W] instead (module docstring).
    heatmap_weights: dense only: {heatmap type: a_k}, a_k >= 0, sum <= 1; default
      {"implausibility": 1.0}.
    dense_size: dense only: "image" (the images' H, W), "heatmap" (the model's heatmap_size)
      or (H, W).
    score_gradient: dense only: False stops the gradient through R (module docstring).
  """
  weights = ranking.check_weights(weights)
  total = sum(abs(w) for w in weights.values())
  config = model.config
  image_size = int(config.image_size)
  types = tuple(weights)
  maps: tuple[str, ...] = ()
  a, fixed_size = {}, None
  if dense:
    a = check_heatmap_weights(heatmap_weights)
    maps = tuple(a)
    fixed_size = _dense_size(dense_size, int(config.heatmap_size))
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
      out = heads(params, x, prompt_ids)
      per_type = [out["scores"][s] for s in types]
      heat = {k: out["heatmaps"][k] for k in maps}
    else:  # one encoder pass per weighted score type and heatmap, along the leading axis
      b, passes = x.shape[0], types + maps
      ids = jnp.concatenate([prefixed_prompt_ids(prompt_ids, prefixes[t]) for t in passes])
      out = heads(params, jnp.concatenate([x] * len(passes)), ids)
      per_type = [out["score"][i * b : (i + 1) * b] for i in range(len(types))]
      heat = {k: out["heatmap"][(len(types) + i) * b :][:b] for i, k in enumerate(maps)}
    r = sum(weights[s] * v for s, v in zip(types, per_type, strict=True)) / total
    if not dense:
      return r
    size = fixed_size or tuple(images.shape[1:3])
    return dense_reward_map(r if score_gradient else jax.lax.stop_gradient(r), heat, a, size)

  if logical_rules is None:
    return reward

  def reward_under_rules(params, images, prompt_ids):
    with nn.logical_axis_rules(logical_rules):
      return reward(params, images, prompt_ids)

  return reward_under_rules
