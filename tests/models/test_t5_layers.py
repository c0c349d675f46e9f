"""T5 layers against independent references: bucket tables, RMS norm, attention masking."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from host_params import init_shapes, random_like

from rahf_jax.models import t5_layers


def _hf_style_bucket(relative_position, bidirectional, num_buckets, max_distance):
  """Numpy rewrite of the HF transformers formulation (sign test on the relative position)."""
  rp = np.asarray(relative_position, np.int64)
  buckets = np.zeros_like(rp)
  if bidirectional:
    num_buckets //= 2
    buckets += (rp > 0).astype(np.int64) * num_buckets
    rp = np.abs(rp)
  else:
    rp = -np.minimum(rp, 0)
  max_exact = num_buckets // 2
  large = np.empty_like(rp)
  for idx, r in np.ndenumerate(rp):
    if r < max_exact:
      large[idx] = r
    else:
      v = max_exact + int(
        math.log(r / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
      )
      large[idx] = min(v, num_buckets - 1)
  return buckets + large


def test_relative_position_buckets_match_hf_formulation():
  rel = np.arange(-300, 301)
  for bidirectional in (True, False):
    got = np.asarray(t5_layers.relative_position_bucket(jnp.asarray(rel), bidirectional, 32, 128))
    np.testing.assert_array_equal(got, _hf_style_bucket(rel, bidirectional, 32, 128))


def test_relative_position_buckets_known_values():
  # relative_position = key - query. Bidirectional, 32 buckets, max_distance 128:
  # past offsets 1..7 are exact (buckets 1..7), future offsets use the upper half (17..23),
  # offset 8 starts the log range (bucket 8) and everything from 128 on shares bucket 15 / 31.
  rel = jnp.array([0, -1, -7, 1, 7, -8, 8, -128, -1000, 128, 1000])
  got = t5_layers.relative_position_bucket(rel, True, 32, 128)
  np.testing.assert_array_equal(got, [0, 1, 7, 17, 23, 8, 24, 15, 15, 31, 31])
  # Causal (decoder): future keys all fall in bucket 0; 16 exact past buckets.
  got = t5_layers.relative_position_bucket(jnp.array([3, 0, -1, -15, -16, -1000]), False, 32, 128)
  np.testing.assert_array_equal(got, [0, 0, 1, 15, 16, 31])


# The numpy references below and the modules compare in float64, where a different summation
# order (XLA's vectorisation differs between CPUs) moves a result by ~1e-16 of its scale. The
# layers are a few sums of <= 8 terms deep, so 256 float64 eps (5.7e-14) bounds the rounding by
# a wide margin, while a wrong mask, scale or contraction is O(1).
_F64_TOL = 256 * float(np.finfo(np.float64).eps)


def test_rms_norm_matches_numpy():
  with jax.enable_x64(True):
    x = np.random.RandomState(0).randn(3, 5, 8)
    m = t5_layers.RMSNorm(dtype=jnp.float64, param_dtype=jnp.float64)
    v = m.init(jax.random.key(0), x)
    v = jax.tree.map(lambda s: s * 2.0, v)
    ref = x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6) * 2.0
    out = m.apply(v, x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=_F64_TOL, atol=_F64_TOL)


def test_attention_matches_numpy_and_ignores_masked_keys():
  with jax.enable_x64(True):
    _check_attention()


def _check_attention():
  rs = np.random.RandomState(1)
  b, lq, lk, d, h, hd = 2, 3, 5, 8, 2, 4
  xq, xkv = rs.randn(b, lq, d), rs.randn(b, lk, d)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  m = t5_layers.MultiHeadAttention(h, hd, dtype=jnp.float64, param_dtype=jnp.float64)
  v = m.init(jax.random.key(0), xq, xkv)
  out = m.apply(v, xq, xkv, None, mask[:, None, None, :])
  p = jax.tree.map(np.asarray, nn.unbox(v)["params"])
  q = np.einsum("bld,dhk->blhk", xq, p["query"]["kernel"])
  k = np.einsum("bld,dhk->blhk", xkv, p["key"]["kernel"])
  val = np.einsum("bld,dhk->blhk", xkv, p["value"]["kernel"])
  logits = np.einsum("bqhk,bshk->bhqs", q, k) + np.where(mask, 0.0, -1e9)[:, None, None, :]
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  ctx = np.einsum("bhqs,bshk->bqhk", w, val)
  ref = np.einsum("bqhk,hkd->bqd", ctx, p["out"]["kernel"])
  assert out.dtype == np.float64
  np.testing.assert_allclose(out, ref, rtol=_F64_TOL, atol=_F64_TOL)
  # Changing the masked (padding) keys changes nothing: their softmax weights are exactly 0 and
  # the same computation runs on the same shapes.
  xkv2 = xkv.copy()
  xkv2[0, 3:] = rs.randn(2, d)
  out2 = m.apply(v, xq, xkv2, None, mask[:, None, None, :])
  np.testing.assert_allclose(out2, out, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_remat_policies_give_identical_gradients_with_dropout():
  """Rematerialised blocks (static deterministic/decode flags) recompute exactly, with dropout.

  Compared in float64: rematerialisation changes what XLA fuses, hence summation orders.
  """
  with jax.enable_x64(True):
    _check_remat_policies()


def _check_remat_policies():
  import ml_collections

  from rahf_jax.models import t5_stack

  cfg = ml_collections.FrozenConfigDict(
    dict(
      d_model=16,
      num_heads=2,
      head_dim=8,
      d_ff=32,
      num_encoder_layers=2,
      num_decoder_layers=1,
      mlp_activation="gated-gelu",
      tie_embeddings=False,
      vocab_size=40,
      dropout_rate=0.2,
      relative_attention_num_buckets=8,
      relative_attention_max_distance=16,
    )
  )
  x = jnp.asarray(np.random.RandomState(0).randn(2, 5, 16), jnp.float64)
  mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  ids = jnp.array([[0, 3, 4], [0, 5, 6]], jnp.int32)

  class Net(nn.Module):
    policy: str

    @nn.compact
    def __call__(self, x, mask, ids):
      kw = dict(dtype=jnp.float64, param_dtype=jnp.float64)
      emb = t5_stack.make_token_embedder(cfg, jnp.float64, jnp.float64)
      enc = t5_stack.T5Encoder(cfg, self.policy, **kw)(x, mask, False)
      return t5_stack.T5Decoder(cfg, emb, self.policy, **kw)(ids, enc, mask, False)

  # One set of parameters for every policy (remat names no parameter): random values of the
  # init's shapes, made on the host (no init program to compile).
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  v = {"params": random_like(init_shapes(Net("none").init, x, mask, ids, rngs=rngs), scale=0.25)}
  grads = {}
  for policy in ("none", "full", "dots"):
    net = Net(policy)
    loss = lambda p, net=net: jnp.sum(
      net.apply(p, x, mask, ids, rngs={"dropout": jax.random.key(2)}) ** 2
    )
    grads[policy] = jax.jit(jax.grad(loss))(v)
  for policy in ("full", "dots"):
    for a, b in zip(jax.tree.leaves(grads[policy]), jax.tree.leaves(grads["none"]), strict=True):
      assert a.dtype == np.float64
      # Relative to the leaf's scale: an element that is a near-cancelling sum keeps only the
      # absolute rounding error of its terms (seen: bitwise equal on an AMD EPYC).
      scale = max(float(np.max(np.abs(b))), 1.0)
      np.testing.assert_allclose(a, b, rtol=0, atol=_F64_TOL * scale)
