"""T5 encoder and decoder stacks, token embedding, tied or untied output logits.

Layout (t5x names): `token_embedder/embedding [vocab, embed]` (owned by the caller and shared by
encoder inputs, decoder inputs and, when tied, the logits), `encoder/{relpos_bias, layers_i,
encoder_norm}`, `decoder/{relpos_bias, layers_i, decoder_norm, logits_dense}`. The relative position
bias is one table per stack shared by its layers (as in T5 and HF's layer-0 bias).
"""

import flax.linen as nn
import jax.numpy as jnp

from rahf_jax.models import t5_layers
from rahf_jax.models.dtypes import at_least_float32


def make_token_embedder(cfg, param_dtype, dtype, name="token_embedder"):
  """The shared T5 token embedding [vocab, embed] (T5 initialises it with stddev 1)."""
  return nn.Embed(
    num_embeddings=cfg.vocab_size,
    features=cfg.d_model,
    dtype=dtype,
    param_dtype=param_dtype,
    embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
    name=name,
  )


class T5Encoder(nn.Module):
  """T5 encoder over embedded inputs [B, L, D] with a key padding mask [B, L] (True = real)."""

  cfg: object  # the `t5` sub-config
  remat_policy: str = "none"
  attention_impl: str = "xla"  # t5_layers.dot_product_attention's impl
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask, deterministic=True):
    c, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    length = x.shape[1]
    positions = jnp.arange(length)
    bias = t5_layers.RelativePositionBias(
      c.num_heads,
      c.relative_attention_num_buckets,
      c.relative_attention_max_distance,
      True,
      name="relpos_bias",
      **kw,
    )(positions, positions)
    attn_mask = mask[:, None, None, :]  # [B, 1, 1, Lk]; padded keys are invisible.
    x = nn.Dropout(c.dropout_rate)(x.astype(self.dtype), deterministic=deterministic)
    layer_cls = t5_layers.maybe_remat(t5_layers.EncoderLayer, self.remat_policy, (4,))
    for i in range(c.num_encoder_layers):
      x = layer_cls(c, self.attention_impl, name=f"layers_{i}", **kw)(
        x, bias, attn_mask, deterministic
      )
    x = t5_layers.RMSNorm(name="encoder_norm", **kw)(x)
    return nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)


class T5Decoder(nn.Module):
  """T5 decoder: embedded targets + encoder memory -> float32 logits [B, Lt, vocab].

  `decode=True` runs one step against the `cache` collection (created by a first call with the full
  target length). `embedder` is the shared token embedding (used for the tied logits).
  """

  cfg: object
  embedder: nn.Module
  remat_policy: str = "none"
  attention_impl: str = "xla"  # t5_layers.dot_product_attention's impl
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, decoder_input_ids, encoded, encoder_mask, deterministic=True, decode=False):
    c, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    length = decoder_input_ids.shape[1]
    if decode:
      # Query positions come from a step counter; key positions span the whole cache.
      initialized = self.has_variable("cache", "position")
      pos = self.variable("cache", "position", lambda: jnp.array(0, jnp.int32))
      key_positions = self.variable("cache", "key_positions", lambda: jnp.arange(length)).value
      query_positions = pos.value + jnp.arange(length)
      if initialized:
        pos.value = pos.value + length
      else:
        query_positions = jnp.arange(length)
    else:
      query_positions = key_positions = jnp.arange(length)
    bias = t5_layers.RelativePositionBias(
      c.num_heads,
      c.relative_attention_num_buckets,
      c.relative_attention_max_distance,
      False,
      name="relpos_bias",
      **kw,
    )(query_positions, key_positions)
    self_mask = (key_positions[None, :] <= query_positions[:, None])[None, None]  # causal
    cross_mask = encoder_mask[:, None, None, :]

    x = self.embedder(decoder_input_ids)
    x = nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)
    layer_cls = t5_layers.maybe_remat(t5_layers.DecoderLayer, self.remat_policy, (6, 7))
    for i in range(c.num_decoder_layers):
      x = layer_cls(c, self.attention_impl, name=f"layers_{i}", **kw)(
        x, encoded, bias, self_mask, cross_mask, deterministic, decode
      )
    x = t5_layers.RMSNorm(name="decoder_norm", **kw)(x)
    x = nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)
    if c.tie_embeddings:
      # T5 rescales before the tied projection (HF: d_model**-0.5; t5x: / sqrt(embed)).
      logits = self.embedder.attend(x * (c.d_model**-0.5))
    else:
      logits = nn.DenseGeneral(
        c.vocab_size,
        use_bias=False,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=nn.with_logical_partitioning(
          nn.initializers.normal(c.d_model**-0.5), ("embed", "vocab")
        ),
        name="logits_dense",
      )(x)
    logits = logits.astype(at_least_float32(self.dtype))
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
