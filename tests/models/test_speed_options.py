"""Speed options of the model config (attention_impl, heatmap_head_remat, upsample_impl).

Each option must compute the default path's function with the default path's parameters.
Equivalence is checked in float64 (`jax.enable_x64`, model dtype/param_dtype "float64"), where
the options differ from the default only in summation order (a remat or a different convolution
changes what XLA fuses and how it vectorises sums). Each compared value is a chain of sums of at
most a few hundred products through a few dozen layers; float64 rounding of such a chain is about
depth * sqrt(terms) * eps, i.e. ~1e-13 of the value's scale, so 1024 float64 eps (2.3e-13)
relative to each leaf's largest magnitude bounds it, while a wrong tap, a missing bias or a
dropped mask moves a value by O(1) of that scale.
"""

import functools
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rahf_jax import features
from rahf_jax.models import build_model, get_model_config, heatmap_head, t5_layers

F64_TOL = 1024 * float(np.finfo(np.float64).eps)
# float32 "xla" attention (jax.nn.dot_product_attention, float32 softmax) against a float64
# reference: logits are sums of 8 products of O(1) values, softmax and the weighted sum of O(1)
# values add a few float32 roundings each, so 64 float32 eps (7.6e-6) bounds the difference.
F32_TOL = 64 * float(np.finfo(np.float32).eps)


def _assert_trees_close(got, want, tol=F64_TOL):
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    assert a.dtype == b.dtype
    scale = max(float(np.max(np.abs(b))), 1.0)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def _max_rel_diff(got, want):
  diffs = [
    float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / max(float(np.max(np.abs(b))), 1.0)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
  ]
  return max(diffs)


def test_defaults_are_the_reference_path():
  c = get_model_config("L16_t5base_384")
  assert (c.attention_impl, c.heatmap_head_remat, c.upsample_impl) == ("xla", "none", "transpose")


# ---------------------------------------------------------------------------------------------
# attention_impl


def _einsum_attention(q, k, v, bias, mask, scale):
  """numpy float64 reference: softmax(q k^T * scale + bias, masked) v."""
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = np.where(mask, logits, -np.inf)
  logits = logits - logits.max(-1, keepdims=True)
  p = np.exp(logits)
  p /= p.sum(-1, keepdims=True)
  return np.einsum("bhqk,bkhd->bqhd", p, v)


def _attention_inputs(t=5, s=7, b=2, h=3, d=8, seed=0):
  rs = np.random.RandomState(seed)
  q, k, v = rs.randn(b, t, h, d), rs.randn(b, s, h, d), rs.randn(b, s, h, d)
  bias = rs.randn(1, h, t, s)
  mask = np.ones((b, 1, 1, s), bool)
  mask[0, ..., s - 3 :] = False  # padded keys of the first example
  return q, k, v, bias, mask


@pytest.mark.parametrize("with_bias,with_mask", [(False, False), (True, False), (True, True)])
def test_xla_attention_matches_einsum_reference(with_bias, with_mask):
  q, k, v, bias, mask = _attention_inputs()
  bias = bias if with_bias else None
  mask = mask if with_mask else None
  ref = _einsum_attention(q, k, v, bias, mask, 0.5)
  f32 = lambda x: None if x is None else jnp.asarray(x, jnp.float32)
  got = t5_layers.dot_product_attention(
    f32(q), f32(k), f32(v), f32(bias), None if mask is None else jnp.asarray(mask), 0.5, "xla"
  )
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=F32_TOL * np.abs(ref).max())
  with jax.enable_x64(True):  # the float64 path: exact to float64 rounding
    got64 = t5_layers.dot_product_attention(q, k, v, bias, mask, 0.5, "xla")
    np.testing.assert_allclose(np.asarray(got64), ref, rtol=0, atol=F64_TOL)


def test_unknown_attention_impl_is_an_error():
  q, k, v, _, _ = _attention_inputs()
  with pytest.raises(ValueError, match="attention_impl 'flash' unknown"):
    t5_layers.dot_product_attention(q, k, v, impl="flash")


@pytest.mark.parametrize("t,s", [(5, 7), (6, 7), (5, 8), (6, 8), (1, 7)])
def test_cudnn_even_length_padding_changes_nothing(monkeypatch, t, s):
  """The padding that the cuDNN path adds (odd lengths -> even) is exact; checked in float64
  with the XLA formula standing in for the cuDNN kernel (no GPU here)."""
  with jax.enable_x64(True):
    q, k, v, bias, mask = _attention_inputs(t, s)
    causal = np.tril(np.ones((t, s), bool), k=s - t)[None, None]
    monkeypatch.setattr(t5_layers, "cudnn_unavailable_reason", lambda dtype: None)
    seen = []

    def kernel(q, k, v, bias=None, mask=None, scale=None):
      seen.append((q.shape[1], k.shape[1]))
      return t5_layers._xla_attention(q, k, v, bias=bias, mask=mask, scale=scale)

    monkeypatch.setattr(t5_layers, "_cudnn_kernel", kernel)
    for b_, m_ in [(bias, mask), (bias, None), (None, mask), (bias, causal), (None, None)]:
      got = t5_layers.dot_product_attention(q, k, v, b_, m_, 0.5, "cudnn")
      ref = _einsum_attention(q, k, v, b_, m_, 0.5)
      assert got.shape == ref.shape
      np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=F64_TOL)
    padded = [(qt % 2, ks % 2) for qt, ks in seen[:-1]]  # biased/masked calls: even lengths
    assert padded == [(0, 0)] * 4
    assert seen[-1] == (t, s)  # no bias, no mask: no padding


def _tiny(dtype="float32", **overrides):
  c = get_model_config("test", features.MULTI_HEAD)
  c.dtype = c.param_dtype = dtype
  c.update(overrides)
  return c


def _tiny_inputs(c, lp=7, lt=5, seed=0):
  rs = np.random.RandomState(seed)
  dt = jnp.dtype(c.dtype)
  image = jnp.asarray(rs.uniform(-1, 1, (2, c.image_size, c.image_size, 3)), dt)
  prompt = rs.randint(2, c.vocab_size, (2, lp)).astype(np.int32)
  prompt[0, lp - 2 :] = features.PAD_ID
  dec = rs.randint(2, c.vocab_size, (2, lt)).astype(np.int32)
  return image, jnp.asarray(prompt), jnp.asarray(dec)


def test_attention_impl_reaches_every_attention_call(monkeypatch):
  """ViT blocks (2), T5 encoder layers (2) and decoder self + cross attention (2 x 2): 8 calls,
  each with the configured impl."""
  calls = []
  original = t5_layers.dot_product_attention

  def spy(*args, **kwargs):
    calls.append(kwargs["impl"])
    return original(*args, **kwargs)

  monkeypatch.setattr(t5_layers, "dot_product_attention", spy)
  for impl in ("xla", "cudnn"):
    c = _tiny(attention_impl=impl)
    calls.clear()
    jax.eval_shape(build_model(c).init, jax.random.key(0), *_tiny_inputs(c))
    expected = c.vit.depth + c.t5.num_encoder_layers + 2 * c.t5.num_decoder_layers
    assert calls == [impl] * expected


def test_cudnn_off_gpu_falls_back_to_xla_with_a_warning(caplog):
  c_xla, c_cudnn = _tiny(), _tiny(attention_impl="cudnn")
  inputs = _tiny_inputs(c_xla)
  # Any values do for the same program twice: random ones in the parameters' shapes (an init
  # compile would cost more than the two forward passes).
  shapes = jax.eval_shape(build_model(c_xla).init, jax.random.key(0), *inputs)
  rs = np.random.RandomState(0)
  variables = jax.tree.map(lambda s: jnp.asarray(0.1 * rs.randn(*s.shape), s.dtype), shapes)
  t5_layers._warn_fallback.cache_clear()
  with caplog.at_level(logging.WARNING):
    got = jax.jit(build_model(c_cudnn).apply)(variables, *inputs)
  assert any('attention_impl="cudnn" falls back to "xla"' in r.message for r in caplog.records)
  want = jax.jit(build_model(c_xla).apply)(variables, *inputs)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_array_equal(a, b)  # the same XLA program


# ---------------------------------------------------------------------------------------------
# whole-model equivalence helper


def _loss_fn(model, inputs):
  """A scalar of every output (both heatmaps, all scores, the decoder) and the outputs."""

  def loss(params):
    out = model.apply({"params": params}, *inputs)
    hm = sum(jnp.sum(m**2) for m in out["heatmaps"].values())
    sc = sum(jnp.sum(s) for s in out["scores"].values())
    return hm + sc + jnp.sum(jax.nn.log_softmax(out["decoder_logits"])[..., 3]), out

  return loss


@functools.cache
def _reference(lp):
  """(params, outputs, gradients) of the default float64 tiny model (computed once)."""
  c = _tiny("float64")
  inputs = _tiny_inputs(c, lp=lp)
  model = build_model(c)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), *inputs))["params"]
  grads, out = jax.jit(jax.grad(_loss_fn(model, inputs), has_aux=True))(params)
  return params, out, grads


def _check_same_function(c_opt, lp=7):
  """c_opt's outputs and parameter gradients equal the default path's (same parameters, float64;
  call under jax.enable_x64); returns the largest leaf-relative differences (outputs, grads)."""
  params, out_ref, g_ref = _reference(lp)
  inputs = _tiny_inputs(c_opt, lp=lp)
  model = build_model(c_opt)
  params_opt = nn.unbox(jax.jit(model.init)(jax.random.key(0), *inputs))["params"]
  _assert_trees_close(params_opt, params, tol=0.0)  # same names, shapes and initial values
  g_opt, out_opt = jax.jit(jax.grad(_loss_fn(model, inputs), has_aux=True))(params)
  _assert_trees_close(out_opt, out_ref)
  _assert_trees_close(g_opt, g_ref)
  for leaf in jax.tree.leaves(out_opt) + jax.tree.leaves(g_opt):
    assert leaf.dtype == np.float64
  diffs = _max_rel_diff(out_opt, out_ref), _max_rel_diff(g_opt, g_ref)
  print(f"max leaf-relative difference: outputs {diffs[0]:.3g}, gradients {diffs[1]:.3g}")
  return diffs


# ---------------------------------------------------------------------------------------------
# upsample_impl


def test_subpixel_deconv_equals_transposed_conv():
  with jax.enable_x64(True):
    rs = np.random.RandomState(0)
    x = jnp.asarray(rs.randn(2, 5, 4, 3))
    ref = heatmap_head.deconv(6, "d", jnp.float64, jnp.float64)
    sub = heatmap_head.SubpixelDeconv(6, dtype=jnp.float64, param_dtype=jnp.float64)
    v_ref = nn.unbox(ref.init(jax.random.key(0), x))
    v_sub = nn.unbox(sub.init(jax.random.key(0), x))
    _assert_trees_close(v_sub, v_ref, tol=0.0)  # same parameters, same initial values
    v_ref["params"]["bias"] = jnp.asarray(rs.randn(6))
    want = ref.apply(v_ref, x)
    got = sub.apply(v_ref, x)
    assert got.shape == want.shape == (2, 10, 8, 6) and got.dtype == np.float64
    # Each output is the same sum of <= 4 products (+ bias): equal to float64 rounding.
    np.testing.assert_allclose(got, want, rtol=0, atol=F64_TOL * float(np.abs(want).max()))


_HEAD = dict(pre_convs=(8,), up_channels=(8, 6), final_convs=(4,), dtype="float64")


def _head_grads(m, params, x):
  loss = lambda p, x: jnp.sum(m.apply(p, x) ** 2)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)


@functools.cache
def _head_reference():
  """(input, initial variables, test parameters, (loss, grads)) of the default small float64
  head (computed once)."""
  x = jnp.asarray(np.random.RandomState(0).randn(2, 4, 4, 16))
  ref = heatmap_head.HeatmapHead(**_HEAD, param_dtype=jnp.float64)
  init = nn.unbox(jax.jit(ref.init)(jax.random.key(0), x))
  rs = np.random.RandomState(1)  # non-zero biases, so that a misplaced bias shows
  params = jax.tree.map(lambda p: p + 0.1 * rs.randn(*p.shape), init)
  return x, init, params, _head_grads(ref, params, x)


def _head_check(**options):
  """A small HeatmapHead with `options` against the default one (same parameters), float64:
  outputs and the gradients of params and input. Returns the largest relative differences."""
  with jax.enable_x64(True):
    x, init_ref, params, want = _head_reference()
    opt = heatmap_head.HeatmapHead(**_HEAD, **options, param_dtype=jnp.float64)
    init = nn.unbox(jax.jit(opt.init)(jax.random.key(0), x))
    _assert_trees_close(init, init_ref, tol=0.0)
    got = _head_grads(opt, params, x)
    _assert_trees_close(got, want)
    diff = _max_rel_diff(got, want)
    print(f"{options}: max leaf-relative difference (loss, grads) {diff:.3g}")
    return diff


@pytest.mark.slow
def test_subpixel_heatmap_head_same_outputs_and_gradients():
  _head_check(upsample_impl="subpixel")


@pytest.mark.parametrize(
  "field,value",
  [("upsample_impl", "nearest"), ("heatmap_head_remat", "some"), ("attention_impl", "flash")],
)
def test_unknown_option_values_are_errors(field, value):
  c = _tiny(**{field: value})
  with pytest.raises(ValueError, match=f"{field} '{value}' unknown"):
    jax.eval_shape(build_model(c).init, jax.random.key(0), *_tiny_inputs(c))


# ---------------------------------------------------------------------------------------------
# heatmap_head_remat (alone and with the backbones' remat_policy)


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_heatmap_head_remat_same_outputs_and_gradients(policy):
  _head_check(remat=policy)
  _head_check(remat=policy, upsample_impl="subpixel")


@pytest.mark.slow
def test_all_options_together_in_the_whole_model(monkeypatch):
  """Every option at once (the cuDNN branch with XLA's formula standing in for the kernel, its
  odd-length padding included: encoder 65 + 8 = 73 and decoder 5 positions; backbone and head
  remat; sub-pixel upsampling): the tiny model's outputs and gradients equal the default's."""
  monkeypatch.setattr(t5_layers, "cudnn_unavailable_reason", lambda dtype: None)
  monkeypatch.setattr(t5_layers, "_cudnn_kernel", t5_layers._xla_attention)
  options = dict(
    attention_impl="cudnn",
    remat_policy="full",
    heatmap_head_remat="full",
    upsample_impl="subpixel",
  )
  with jax.enable_x64(True):
    _check_same_function(_tiny("float64", **options), lp=8)


def test_heatmap_head_remat_rematerialises_each_upsampling_block():
  """The backward program recomputes: one checkpoint per up block and one for the tail, per
  heatmap head (and none without the option)."""
  for policy, per_head in (("none", 0), ("full", 3)):
    c = _tiny(heatmap_head_remat=policy)
    inputs = _tiny_inputs(c)
    model = build_model(c)
    params = jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]
    grad = jax.grad(_loss_fn(model, inputs), has_aux=True)
    jaxpr = str(jax.make_jaxpr(grad)(nn.unbox(params)))
    assert jaxpr.count("remat2[") == per_head * len(features.HEATMAP_TYPES), policy
    assert len(c.heatmap_head.up_channels) + 1 == 3
