"""Heatmap/score heads: transposed conv vs a numpy scatter reference, upsampling shapes, norms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rahf_jax.models import heatmap_head
from rahf_jax.models.score_head import ScoreHead


def _numpy_conv_transpose(x, w_io, stride=2, padding=1, output_padding=1):
  """PyTorch ConvTranspose2d semantics by definition: out[s*i + a - p] += x[i] * w[a].

  x [h, w, cin], w_io [k, k, cin, cout] -> [(h-1)s - 2p + k + op, ...same, cout].
  """
  h, wd, _ = x.shape
  k, cout = w_io.shape[0], w_io.shape[3]
  oh = (h - 1) * stride - 2 * padding + k + output_padding
  ow = (wd - 1) * stride - 2 * padding + k + output_padding
  out = np.zeros((oh + 2 * k, ow + 2 * k, cout))
  for i in range(h):
    for j in range(wd):
      for a in range(k):
        for b in range(k):
          out[stride * i + a - padding + k, stride * j + b - padding + k] += x[i, j] @ w_io[a, b]
  return out[k : k + oh, k : k + ow]


# Module and numpy reference compare in float64, where a different summation order (XLA's
# convolution and reduction vectorisation differs between CPUs) moves a result by ~1e-16 of its
# scale. Each output below is one sum of <= 27 products or a norm over <= 6 channels, so 256
# float64 eps (5.7e-14) bounds the rounding by a wide margin; a misplaced tap is O(1).
_F64_TOL = 256 * float(np.finfo(np.float64).eps)


def test_deconv_matches_pytorch_definition_and_lax():
  with jax.enable_x64(True):
    _check_deconv()


def _check_deconv():
  rs = np.random.RandomState(0)
  x = rs.randn(1, 5, 4, 3)
  m = heatmap_head.deconv(2, "d", jnp.float64, jnp.float64)
  v = nn.unbox(m.init(jax.random.key(0), x))
  kernel = np.asarray(v["params"]["kernel"])  # [k, k, out, in] (transpose_kernel=True)
  assert kernel.shape == (3, 3, 2, 3)
  got = np.asarray(m.apply(v, x))[0]
  ref = _numpy_conv_transpose(x[0], kernel.transpose(0, 1, 3, 2))
  assert got.shape == (10, 8, 2) and got.dtype == np.float64
  np.testing.assert_allclose(got, ref, rtol=_F64_TOL, atol=_F64_TOL)
  # Same numbers from jax.lax.conv_transpose (kernel read as a forward conv's HWIO).
  lax_out = jax.lax.conv_transpose(
    x,
    kernel,
    (2, 2),
    ((1, 2), (1, 2)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    transpose_kernel=True,
  )
  np.testing.assert_allclose(lax_out[0], ref, rtol=_F64_TOL, atol=_F64_TOL)


def test_heatmap_head_upsamples_24_to_384_in_four_steps():
  head = heatmap_head.HeatmapHead(pre_convs=(4,), up_channels=(4, 4, 4, 4), final_convs=(4,))
  x = jnp.ones((1, 24, 24, 8))
  shapes = jax.eval_shape(head.init_with_output, jax.random.key(0), x)
  out, params = shapes
  assert out.shape == (1, 384, 384) and out.dtype == jnp.float32
  deconvs = sorted(k for k in params["params"] if k.endswith("_deconv"))
  assert deconvs == [f"up_{i}_deconv" for i in range(4)]
  # Each stride-2 step doubles the grid: follow the intermediate shapes (traced, not computed).
  _, state = jax.eval_shape(
    lambda v, x: head.apply(
      v,
      x,
      capture_intermediates=lambda m, _: m.name and m.name.endswith("_deconv"),
      mutable=["intermediates"],
    ),
    nn.unbox(params),
    x,
  )
  sizes = [state["intermediates"][f"up_{i}_deconv"]["__call__"][0].shape[1] for i in range(4)]
  assert sizes == [48, 96, 192, 384]


def test_channel_rms_norm_matches_numpy():
  with jax.enable_x64(True):
    x = np.random.RandomState(2).randn(2, 3, 3, 6)
    m = heatmap_head.ChannelRMSNorm(dtype=jnp.float64, param_dtype=jnp.float64)
    v = nn.unbox(m.init(jax.random.key(0), x))
    v = {"params": {"scale": np.arange(6, dtype=np.float64)}}
    ref = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-8) * np.arange(6)
    out = m.apply(v, x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=_F64_TOL, atol=_F64_TOL)


def test_score_head_layout_and_range():
  head = ScoreHead(convs=(8, 4), dense=(16,))
  x = jnp.asarray(np.random.RandomState(3).randn(2, 6, 6, 10), jnp.float32)
  v = nn.unbox(head.init(jax.random.key(0), x))
  out = head.apply(v, x)
  assert out.shape == (2,) and bool(jnp.all((out > 0) & (out < 1)))
  # Dense input = flattened grid x last conv width (as the reproduction's 12 x 576).
  assert v["params"]["dense_0"]["kernel"].shape == (6 * 6 * 4, 16)
  assert v["params"]["dense_1"]["kernel"].shape == (16, 1)


def test_score_head_mean_pool_ignores_where_features_are():
  """In float64: the mean pool sums the same 100 values in a different order once they move."""
  with jax.enable_x64(True):
    head = ScoreHead(convs=(8, 4), dense=(16,), pool="mean", dtype=jnp.float64,
                     param_dtype=jnp.float64)  # fmt: skip
    x = np.zeros((1, 10, 10, 10))
    x[0, 3, 3] = 3.0  # one bright feature, then the same feature elsewhere; the 5x5 footprint
    moved = np.roll(x, (3, 2), axis=(1, 2))  # of the two 3x3 convs stays inside the grid both times
    v = nn.unbox(head.init(jax.random.key(0), jnp.asarray(x)))
    assert v["params"]["dense_0"]["kernel"].shape == (4, 16)  # pooled: last conv width only
    out = head.apply(v, jnp.asarray(x))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, head.apply(v, jnp.asarray(moved)), rtol=_F64_TOL)


def test_score_head_attention_pool_against_numpy():
  """pool="attention" (no convs, no hidden dense): sigmoid(w . sum_n softmax(x_n . a + c) x_n + b);
  a cell whose attention logit is far above the rest carries the score alone."""
  with jax.enable_x64(True):
    head = ScoreHead(convs=(), dense=(), pool="attention", dtype=jnp.float64,
                     param_dtype=jnp.float64)  # fmt: skip
    rs = np.random.RandomState(0)
    x = rs.normal(size=(3, 4, 5, 6))
    v = nn.unbox(head.init(jax.random.key(0), jnp.asarray(x)))
    p = jax.tree.map(np.asarray, v["params"])
    a, c = p["attention"]["kernel"].reshape(6), p["attention"]["bias"][0]
    w, b = p["dense_0"]["kernel"][:, 0], p["dense_0"]["bias"][0]
    flat = x.reshape(3, 20, 6)
    logits = flat @ a + c
    weights = np.exp(logits - logits.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    want = 1 / (1 + np.exp(-((weights[..., None] * flat).sum(1) @ w + b)))
    np.testing.assert_allclose(head.apply(v, jnp.asarray(x)), want, rtol=_F64_TOL)

    spike = x.copy()
    spike[:, 2, 3] = 100.0 * a / np.linalg.norm(a)  # attention logit ~100 above the others
    alone = 1 / (1 + np.exp(-(spike[:, 2, 3] @ w + b)))
    np.testing.assert_allclose(head.apply(v, jnp.asarray(spike)), alone, rtol=1e-9)


def test_heatmap_head_init_value_sets_the_initial_map():
  """init_value v: out_conv's bias is logit(v), so a zero feature map (every conv's output is
  its zero bias until out_conv) gives exactly v everywhere; the default 0.5 is a zero bias."""
  x = jnp.zeros((2, 4, 4, 16))
  for value in (0.5, 0.01):
    head = heatmap_head.HeatmapHead(
      pre_convs=(8,), up_channels=(8,), final_convs=(8,), init_value=value
    )
    v = nn.unbox(head.init(jax.random.key(0), x))
    np.testing.assert_allclose(v["params"]["out_conv"]["bias"], [np.log(value / (1 - value))],
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(head.apply(v, x), np.full((2, 8, 8), value), rtol=1e-6)
  with pytest.raises(ValueError, match="init_value must be in"):
    head = heatmap_head.HeatmapHead(pre_convs=(8,), up_channels=(8,), final_convs=(8,),
                                    init_value=0.0)  # fmt: skip
    head.init(jax.random.key(0), x)
