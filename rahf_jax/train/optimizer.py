"""The optax optimizer: AdamW, linear warmup + cosine decay, ViT lr multiplier, clipping.

Chain (in order): global-norm clipping -> AdamW (decoupled weight decay under a mask) ->
scaling of the ViT params' updates by `vit_lr_multiplier` (equivalent to a smaller learning
rate for them, decay included) -> optionally wrapped in optax.MultiSteps for gradient
accumulation (one real update every `grad_accum_steps` calls; the schedule counts real
updates) -> with `param_dtype="bfloat16"`, all of it wrapped in `with_fp32_master_weights`.

bf16 parameters (`param_dtype="bfloat16"`): the train state's params, the ones the model computes
with, are bf16; the optimizer state keeps an fp32 copy (the master weights) and the inner chain
runs on it with fp32 gradients, so its moments are fp32 too. Each update adds the fp32 update to
the master weights and the new params are the master weights cast down (`model_params`):
updates smaller than half a bf16 step (about 2**-8 relative) still accumulate, where bf16
params alone would round every one of them away. State per parameter: 2 (bf16) + 4 (master)
+ 8 (moments) bytes, against 4 + 8 with fp32 params. The gradients the model returns are bf16;
FSDP collectives are not smaller, since with fp32 params XLA already casts each shard to bf16
before gathering it.

Weight-decay mask: a parameter is decayed iff it has at least 2 dimensions, its leaf name is
not "bias"/"scale" and no path component names a norm ("norm", "ln", "layernorm", "rms").
So no decay on biases, norm scales, other 1-d params; kernels and embeddings are decayed.
"""

import re
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

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


PARAM_DTYPES = ("float32", "bfloat16")


class MasterWeightsState(struct.PyTreeNode):
  """State of `with_fp32_master_weights`: the fp32 master weights and the inner state.

  Attributes:
    master: an fp32 copy of the params (same tree, shapes and shardings).
    inner: the wrapped transformation's state (built on `master`, so its moments are fp32).
    param_dtype: the dtype the model computes with (static: part of the tree's structure).
  """

  master: Any
  inner: Any
  param_dtype: str = struct.field(pytree_node=False, default="bfloat16")


def with_fp32_master_weights(
  inner: optax.GradientTransformation, param_dtype: str = "bfloat16"
) -> optax.GradientTransformation:
  """`inner` run on fp32 master weights held in the optimizer state.

  init(params): master = params as fp32 (exact for fp32 or bf16 params); inner.init(master).
  update(grads, state, params): the gradients are cast to fp32, `inner` computes the update on
  the master weights, the master weights take it in fp32, and the returned update is the fp32
  step from `params` to the new master weights (so `optax.apply_updates` lands on or next to
  them); `model_params(params, new_state)` gives exactly the new master weights cast to
  `param_dtype`, which is what the train step stores.

  Params changed outside the optimizer are picked up: wherever `params` differs from the master
  weights cast to its dtype (a pretrained load after init, a hand edit), that entry of the
  master restarts from the params' value. In a train step the two always agree, so this costs
  one compare per entry and changes nothing there.
  """
  f32 = jnp.float32

  def init_fn(params):
    master = jax.tree.map(lambda p: jnp.asarray(p, f32), params)
    return MasterWeightsState(master=master, inner=inner.init(master), param_dtype=param_dtype)

  def update_fn(grads, state, params=None):
    master = state.master
    if params is not None:
      master = jax.tree.map(
        lambda m, p: jnp.where(m.astype(p.dtype) == p, m, p.astype(f32)), master, params
      )
    grads32 = jax.tree.map(lambda g: jnp.asarray(g, f32), grads)
    updates, inner_state = inner.update(grads32, state.inner, master)
    new_master = optax.apply_updates(master, updates)
    if params is None:
      step = updates
    else:
      step = jax.tree.map(lambda m, p: m - p.astype(f32), new_master, params)
    return step, state.replace(master=new_master, inner=inner_state)

  return optax.GradientTransformation(init_fn, update_fn)


def model_params(params: Any, opt_state: Any) -> Any:
  """The params the model computes with after an update.

  `params` itself, unless `opt_state` is a MasterWeightsState (param_dtype="bfloat16"): then its
  master weights cast to its param_dtype, exactly.
  """
  if isinstance(opt_state, MasterWeightsState):
    dtype = jnp.dtype(opt_state.param_dtype)
    return jax.tree.map(lambda m: m.astype(dtype), opt_state.master)
  return params


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
  param_dtype = str(config.get("param_dtype", "float32"))
  if param_dtype not in PARAM_DTYPES:
    raise ValueError(f"config.param_dtype {param_dtype!r} unknown; use one of {PARAM_DTYPES}.")
  if param_dtype != "float32":
    # Outermost, so gradient accumulation (MultiSteps) also sums in fp32.
    tx = with_fp32_master_weights(tx, param_dtype)
  return tx
