"""T5 building blocks: RMS norm, relative position bias, attention, MLPs, encoder/decoder layers.

Parameter names follow t5x's `examples/t5/network.py` layout
(`pre_attention_layer_norm/scale`, `attention/{query,key,value,out}/kernel`,
`mlp/{wi,wi_0,wi_1,wo}/kernel`, `relpos_bias/rel_embedding`)
so a T5X checkpoint maps onto them with reshapes only (see weights.py). Attention kernels are kept
3-D (`[embed, heads, kv]`, `out: [heads, kv, embed]`); T5X stores them 2-D (`[embed, heads*kv]`).

Every parameter carries logical axis names (t5x's: embed, mlp, heads, kv, vocab, plus
`relpos_buckets`). Attention runs through `dot_product_attention`: XLA's by default, cuDNN's fused
flash attention on GPUs with `attention_impl="cudnn"`.
"""

import functools
import logging
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rahf_jax.models.dtypes import at_least_float32

Dtype = jnp.dtype


def relative_position_bucket(
  relative_position, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
):
  """T5's bucketing of `relative_position = key_position - query_position` (mesh-tensorflow).

  Half of the buckets (per direction when bidirectional) hold exact small offsets; the rest grow
  logarithmically up to `max_distance`, beyond which everything shares the last bucket.
  """
  ret = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(np.int32) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  val_if_large = max_exact + (
    jnp.log(n.astype(jnp.float32) / max_exact + np.finfo(np.float32).eps)
    / math.log(max_distance / max_exact)
    * (num_buckets - max_exact)
  ).astype(jnp.int32)
  val_if_large = jnp.minimum(val_if_large, num_buckets - 1)
  return ret + jnp.where(is_small, n, val_if_large)


def _kernel_init(std, axes):
  return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _param(module, name, init, shape, axes, dtype):
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


class RMSNorm(nn.Module):
  """T5 layer norm: x / rms(x) * scale (no mean subtraction, no bias), in at least float32."""

  epsilon: float = 1e-6
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = _param(
      self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",), self.param_dtype
    )
    wide = at_least_float32(x.dtype)
    x32 = x.astype(wide)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    return (y * scale.astype(wide)).astype(self.dtype)


class RelativePositionBias(nn.Module):
  """Learned per-head scalar bias for each relative-position bucket; returns [1, H, Lq, Lk]."""

  num_heads: int
  num_buckets: int = 32
  max_distance: int = 128
  bidirectional: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, query_positions, key_positions):
    table = _param(
      self,
      "rel_embedding",
      nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
      (self.num_heads, self.num_buckets),
      ("heads", "relpos_buckets"),
      self.param_dtype,
    )
    rel = key_positions[None, :] - query_positions[:, None]
    buckets = relative_position_bucket(rel, self.bidirectional, self.num_buckets, self.max_distance)
    bias = jnp.take(table, buckets, axis=1)  # [H, Lq, Lk]
    return bias[None].astype(self.dtype)


class Projection(nn.Module):
  """`einsum(equation, x, kernel) (+ bias)` with an explicit N-D, logically named kernel.

  (flax's DenseGeneral initialises a flattened kernel, which clashes with N-D logical constraints
  under a mesh; the attention projections therefore use this.)
  """

  kernel_shape: tuple
  kernel_axes: tuple
  bias_axes: tuple
  equation: str
  stddev: float
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param(
      "kernel", _kernel_init(self.stddev, self.kernel_axes), self.kernel_shape, self.param_dtype
    )
    y = jnp.einsum(self.equation, x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param(
        "bias",
        nn.with_logical_partitioning(nn.initializers.zeros, self.bias_axes),
        self.kernel_shape[-len(self.bias_axes) :],
        self.param_dtype,
      )
      y = y + bias.astype(self.dtype)
    return y


ATTENTION_IMPLS = ("xla", "cudnn")


def _xla_attention(query, key, value, bias=None, mask=None, scale=None):
  """softmax(q k^T * scale + bias, masked) v through XLA (any backend).

  `jax.nn.dot_product_attention` always takes its softmax in float32; for a float64 model the
  same formula runs here in float64, so that a float64 run is exact to float64 rounding (the
  equivalence tests rely on that).
  """
  if jnp.dtype(query.dtype).itemsize <= 4:
    return jax.nn.dot_product_attention(
      query, key, value, bias=bias, mask=mask, scale=scale, implementation="xla"
    )
  scale = query.shape[-1] ** -0.5 if scale is None else scale
  logits = jnp.einsum("bqhd,bkhd->bhqk", query, key) * scale
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), value)


# The fused kernel behind attention_impl="cudnn" (a module attribute so that tests can swap in
# the XLA path and check the padding below on a CPU).
_cudnn_kernel = functools.partial(jax.nn.dot_product_attention, implementation="cudnn")


def _pad_axis(x, axis, fill, broadcast=False):
  """`x` with one `fill` entry appended along `axis`; with `broadcast`, a size-1 axis (one that
  broadcasts against the padded length) is left alone."""
  if x is None or (broadcast and x.shape[axis] == 1):
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, 1)
  return jnp.pad(x, widths, constant_values=fill)


def pad_to_even_lengths(query, key, value, bias, mask):
  """Query and key lengths padded to even numbers, for cuDNN's biased training kernel.

  cuDNN's flash attention with a bias trains only on even lengths (the T5 encoder runs on
  577 image + 64 prompt = 641 tokens). An appended key is masked out and an appended query row
  is dropped by the caller, so the result on the real rows is unchanged. Returns
  (query, key, value, bias, mask, query_length).
  """
  q_len, k_len = query.shape[1], key.shape[1]
  if k_len % 2:
    key, value = _pad_axis(key, 1, 0), _pad_axis(value, 1, 0)
    bias = _pad_axis(bias, 3, 0, broadcast=True)
    if mask is None:
      mask = jnp.ones((1, 1, 1, k_len), bool)
    mask = jnp.pad(
      jnp.broadcast_to(mask, mask.shape[:3] + (k_len,)),
      ((0, 0), (0, 0), (0, 0), (0, 1)),
      constant_values=False,
    )
  if q_len % 2:
    query = _pad_axis(query, 1, 0)
    bias = _pad_axis(bias, 2, 0, broadcast=True)
    mask = _pad_axis(mask, 2, True, broadcast=True)
  return query, key, value, bias, mask, q_len


def _cudnn_attention(query, key, value, bias=None, mask=None, scale=None):
  if bias is not None or mask is not None:
    query, key, value, bias, mask, q_len = pad_to_even_lengths(query, key, value, bias, mask)
  else:
    q_len = query.shape[1]
  out = _cudnn_kernel(query, key, value, bias=bias, mask=mask, scale=scale)
  return out[:, :q_len]


def cudnn_unavailable_reason(dtype) -> str | None:
  """Why attention_impl="cudnn" cannot run here (None when it can): backend or dtype."""
  if jax.default_backend() != "gpu":
    return f"the backend is {jax.default_backend()!r}, not 'gpu'"
  if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    return f"cuDNN flash attention needs bfloat16/float16 inputs, got {jnp.dtype(dtype).name}"
  return None


@functools.cache
def _warn_fallback(reason: str) -> None:
  logging.warning('attention_impl="cudnn" falls back to "xla": %s.', reason)


def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, impl="xla"):
  """softmax(q k^T * scale + bias, masked) v over [B, L, heads, head_dim] inputs.

  `impl="xla"` is XLA's attention (`jax.nn.dot_product_attention`, float64 as an explicit
  einsum). `impl="cudnn"` is cuDNN's fused flash attention (the T5 relative-position bias and
  the masks passed to it as its bias); where it cannot run (a CPU/TPU backend, or compute in
  float32/float64) it falls back to "xla" and logs a warning once per reason, so a GPU config
  still runs in CPU tests.
  """
  if impl not in ATTENTION_IMPLS:
    raise ValueError(f"attention_impl {impl!r} unknown; use one of {ATTENTION_IMPLS}.")
  if impl == "cudnn":
    reason = cudnn_unavailable_reason(query.dtype)
    if reason is None:
      return _cudnn_attention(query, key, value, bias=bias, mask=mask, scale=scale)
    _warn_fallback(reason)
  return _xla_attention(query, key, value, bias=bias, mask=mask, scale=scale)


class MultiHeadAttention(nn.Module):
  """Multi-head attention with optional bias (T5: no biases, no 1/sqrt(d) scaling) and a cache.

  With `decode=True` the keys/values of each call are written into a `cache` collection
  (`cached_key`, `cached_value`, `cache_index`); the first call (with the full target length)
  only creates the cache, as in flax's decoding examples.
  """

  num_heads: int
  head_dim: int
  use_bias: bool = False
  scale: float | None = 1.0  # None -> 1/sqrt(head_dim) (ViT); T5 folds it into the init.
  dropout_rate: float = 0.0
  attention_impl: str = "xla"  # "xla" | "cudnn" (see dot_product_attention)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, bias=None, mask=None, deterministic=True, decode=False):
    d_model = inputs_q.shape[-1]
    q_std = (d_model * self.head_dim) ** -0.5 if self.scale == 1.0 else d_model**-0.5

    def proj(name, std, kernel_shape, kernel_axes, bias_axes, equation, x):
      return Projection(
        kernel_shape,
        kernel_axes,
        bias_axes,
        equation,
        std,
        self.use_bias,
        self.dtype,
        self.param_dtype,
        name=name,
      )(x)

    in_shape, in_axes = (d_model, self.num_heads, self.head_dim), ("embed", "heads", "kv")
    head_bias = ("heads", "kv")
    query = proj("query", q_std, in_shape, in_axes, head_bias, "bld,dhk->blhk", inputs_q)
    key = proj("key", d_model**-0.5, in_shape, in_axes, head_bias, "bld,dhk->blhk", inputs_kv)
    value = proj("value", d_model**-0.5, in_shape, in_axes, head_bias, "bld,dhk->blhk", inputs_kv)

    if decode:
      is_initialized = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if is_initialized:
        idx = cache_index.value
        zero = jnp.array(0, jnp.int32)
        key = jax.lax.dynamic_update_slice(cached_key.value, key, (zero, idx, zero, zero))
        value = jax.lax.dynamic_update_slice(cached_value.value, value, (zero, idx, zero, zero))
        cached_key.value, cached_value.value = key, value
        cache_index.value = idx + inputs_q.shape[1]

    x = dot_product_attention(
      query.astype(self.dtype),
      key.astype(self.dtype),
      value.astype(self.dtype),
      bias=None if bias is None else bias.astype(self.dtype),
      mask=mask,
      scale=self.scale,
      impl=self.attention_impl,
    )
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    out_std = (self.num_heads * self.head_dim) ** -0.5
    return proj(
      "out",
      out_std,
      (self.num_heads, self.head_dim, d_model),
      ("heads", "kv", "embed"),
      ("embed",),
      "blhk,hkd->bld",
      x,
    )


class MlpBlock(nn.Module):
  """T5 MLP: `relu` (original T5: wi, wo) or `gated-gelu` (T5.1.1: wi_0, wi_1, wo)."""

  d_ff: int
  activation: str = "relu"
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic=True):
    d_model = x.shape[-1]

    def dense(name, features, axes, fan_in):
      return nn.Dense(
        features,
        use_bias=False,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(fan_in**-0.5), axes),
        name=name,
      )

    if self.activation == "relu":
      h = nn.relu(dense("wi", self.d_ff, ("embed", "mlp"), d_model)(x))
    elif self.activation == "gated-gelu":
      gate = nn.gelu(dense("wi_0", self.d_ff, ("embed", "mlp"), d_model)(x), approximate=True)
      h = gate * dense("wi_1", self.d_ff, ("embed", "mlp"), d_model)(x)
    else:
      raise ValueError(
        f"t5 mlp activation {self.activation!r} unknown; use 'relu' or 'gated-gelu'."
      )
    h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return dense("wo", d_model, ("mlp", "embed"), self.d_ff)(h)


def activation_constraint(x, names=("batch", "length", "embed")):
  """Logical sharding constraint at a block boundary (a no-op without rules and a mesh)."""
  return nn.with_logical_constraint(x, names)


class EncoderLayer(nn.Module):
  """Pre-norm T5 encoder block: self-attention then MLP, each with a residual."""

  cfg: object  # the `t5` sub-config (see variants.py)
  attention_impl: str = "xla"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, bias, mask, deterministic=True):
    c, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    drop = nn.Dropout(c.dropout_rate)
    h = RMSNorm(name="pre_attention_layer_norm", **kw)(x)
    h = MultiHeadAttention(
      c.num_heads,
      c.head_dim,
      dropout_rate=c.dropout_rate,
      attention_impl=self.attention_impl,
      name="attention",
      **kw,
    )(h, h, bias, mask, deterministic)
    x = x + drop(h, deterministic=deterministic)
    h = RMSNorm(name="pre_mlp_layer_norm", **kw)(x)
    h = MlpBlock(c.d_ff, c.mlp_activation, c.dropout_rate, name="mlp", **kw)(h, deterministic)
    return activation_constraint(x + drop(h, deterministic=deterministic))


class DecoderLayer(nn.Module):
  """Pre-norm T5 decoder block: causal self-attention (cached when decoding), cross-attn, MLP."""

  cfg: object
  attention_impl: str = "xla"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x, encoded, self_bias, self_mask, cross_mask, deterministic=True, decode=False
  ):
    c, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    drop = nn.Dropout(c.dropout_rate)
    attn = lambda name: MultiHeadAttention(
      c.num_heads,
      c.head_dim,
      dropout_rate=c.dropout_rate,
      attention_impl=self.attention_impl,
      name=name,
      **kw,
    )
    h = RMSNorm(name="pre_self_attention_layer_norm", **kw)(x)
    h = attn("self_attention")(h, h, self_bias, self_mask, deterministic, decode)
    x = x + drop(h, deterministic=deterministic)
    h = RMSNorm(name="pre_cross_attention_layer_norm", **kw)(x)
    h = attn("encoder_decoder_attention")(h, encoded, None, cross_mask, deterministic)
    x = x + drop(h, deterministic=deterministic)
    h = RMSNorm(name="pre_mlp_layer_norm", **kw)(x)
    h = MlpBlock(c.d_ff, c.mlp_activation, c.dropout_rate, name="mlp", **kw)(h, deterministic)
    return activation_constraint(x + drop(h, deterministic=deterministic))


REMAT_POLICIES: dict[str, Callable | None] = {
  "full": None,  # save nothing; recompute the whole block
  "dots": jax.checkpoint_policies.checkpoint_dots,
  "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def maybe_remat(block_cls, policy: str, static_argnums, field: str = "remat_policy"):
  """`block_cls` wrapped in `nn.remat` under a named policy ('none' returns it unchanged);
  `field` names the config field in the error for an unknown policy."""
  if policy in ("none", "", None):
    return block_cls
  if policy not in REMAT_POLICIES:
    raise ValueError(f"{field} {policy!r} unknown; use 'none' or one of {list(REMAT_POLICIES)}.")
  return nn.remat(block_cls, policy=REMAT_POLICIES[policy], static_argnums=static_argnums)
