"""The optax optimizer: AdamW, linear warmup + cosine decay, ViT lr multiplier, clipping.

Chain (in order): global-norm clipping -> AdamW (decoupled weight decay under a mask) ->
scaling of the ViT params' updates by `vit_lr_multiplier` (equivalent to a smaller learning
rate for them, decay included) -> optionally wrapped in optax.MultiSteps for gradient
accumulation (one real update every `grad_accum_steps` calls; the schedule counts real
updates).

Weight-decay mask: a parameter is decayed iff it has at least 2 dimensions, its leaf name is
not "bias"/"scale" and no path component names a norm ("norm", "ln", "layernorm", "rms").
So no decay on biases, norm scales, other 1-d params; kernels and embeddings are decayed.
"""

import re
from typing import Any

import jax
import optax

_NORM_RE = re.compile(r"(^|_)(norm|ln|layernorm|layer_norm|rms|rmsnorm)(_|\d|$)", re.IGNORECASE)


def path_str(path) -> str:
  """'/'-joined names of a jax tree path (dict keys, attributes, indices)."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def decay_mask(params: Any) -> Any:
  """Tree of bools: True where weight decay applies (see the module docstring)."""

  def keep(path, leaf) -> bool:
    names = path_str(path).split("/")
    if leaf.ndim < 2 or names[-1] in ("bias", "scale"):
      return False
    return not any(_NORM_RE.search(n) for n in names)

  return jax.tree_util.tree_map_with_path(keep, params)


def vit_mask(params: Any, regex: str) -> Any:
  """Tree of bools: True for params whose path matches `regex` (the ViT image encoder)."""
  pattern = re.compile(regex)
  return jax.tree_util.tree_map_with_path(lambda p, _: bool(pattern.search(path_str(p))), params)


def make_schedule(config) -> optax.Schedule:
  """Linear warmup 0 -> learning_rate, then cosine decay to end_lr at the last update."""
  accum = max(1, int(config.get("grad_accum_steps", 1)))
  num_updates = max(1, int(config.num_train_steps) // accum)
  warmup = min(int(config.warmup_steps), num_updates - 1) if num_updates > 1 else 0
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=float(config.learning_rate),
    warmup_steps=warmup,
    decay_steps=num_updates,
    end_value=float(config.end_lr),
  )


def make_optimizer(config) -> optax.GradientTransformation:
  """Builds the optimizer from a training config (rahf_jax/train/default_train_config.py)."""
  schedule = make_schedule(config)
  parts = []
  clip = float(config.get("grad_clip_norm", 0.0) or 0.0)
  if clip > 0:
    parts.append(optax.clip_by_global_norm(clip))
  parts.append(
    optax.adamw(
      schedule,
      b1=float(config.get("adam_b1", 0.9)),
      b2=float(config.get("adam_b2", 0.999)),
      eps=float(config.get("adam_eps", 1e-8)),
      weight_decay=float(config.weight_decay),
      mask=decay_mask,
    )
  )
  mult = float(config.get("vit_lr_multiplier", 1.0))
  if mult != 1.0:
    regex = config.get("vit_param_regex", r"(^|/)vit(/|$)")
    parts.append(optax.masked(optax.scale(mult), lambda p: vit_mask(p, regex)))
  tx = optax.chain(*parts)
  accum = int(config.get("grad_accum_steps", 1))
  if accum > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=accum).gradient_transformation()
  return tx
