"""RAHF network: output shapes/dtypes and parameter counts for every registered config."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rahf_jax import features
from rahf_jax.models import MODEL_SIZES, build_model, get_model_config

LP, LT = 16, 12
RNGS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}

# Reference counts, measured with the PyTorch reproduction's modules
# (github.com/youweiliang/RichHF). They include HF ViTModel's pooler (dense width x width + bias,
# then tanh), which the reproduction never uses and which we do not build; the check adds it back.
# Everything else is the same layout: ViT with class token and a (N + 1)-position table, linear
# projection, t5-base with tied embeddings (counted once), and the reproduction's heads. Sizes
# without a published count are checked against their analytic count below, so every registered
# (size, variant) has a count check.
REFERENCE_COUNTS = {
  ("L16_t5base_384", features.MULTI_HEAD): 642.6e6,
  ("B16_t5base_384", features.MULTI_HEAD): 424.4e6,
  ("L16_t5base_384", features.AUGMENTED_PROMPT): 573.1e6,
}


def _inputs(c, batch=2):
  return (
    jnp.zeros((batch, c.image_size, c.image_size, 3), jnp.float32),
    jnp.ones((batch, LP), jnp.int32),
    jnp.ones((batch, LT), jnp.int32),
  )


def _abstract(size, variant):
  c = get_model_config(size, variant)
  out, variables = jax.eval_shape(build_model(c).init_with_output, RNGS, *_inputs(c))
  return c, out, variables


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _analytic_count(c):
  """Parameter count written out by hand from the layout (independent of the module code)."""
  v, t = c.vit, c.t5
  g = c.image_size // v.patch_size
  d = v.width
  if v.stem == "conv":  # 3x3 stride-2 convs, then a 1x1 embedding from the last width
    widths = [3, *v.stem_channels]
    stem = (
      sum(9 * i * o + o for i, o in zip(widths[:-1], widths[1:], strict=True)) + widths[-1] * d + d
    )
  else:  # one p x p patch embedding
    stem = v.patch_size**2 * 3 * d + d
  vit = stem + d + (g * g + 1) * d + 2 * d
  vit += v.depth * (4 * (d * d + d) + (d * v.mlp_dim + v.mlp_dim + v.mlp_dim * d + d) + 4 * d)
  m = t.d_model
  attn = 4 * m * t.num_heads * t.head_dim
  mlp = (2 if t.mlp_activation == "gated-gelu" else 1) * m * t.d_ff + t.d_ff * m
  t5 = t.vocab_size * m + 2 * t.num_heads * 32 + 2 * m
  t5 += t.num_encoder_layers * (attn + mlp + 2 * m) + t.num_decoder_layers * (
    2 * attn + mlp + 3 * m
  )
  t5 += 0 if t.tie_embeddings else m * t.vocab_size
  conv = lambda i, o: 9 * i * o + o
  h, cin = 0, m
  for w in c.heatmap_head.pre_convs:
    h, cin = h + conv(cin, w) + w, w
  for w in c.heatmap_head.up_channels:
    h, cin = h + conv(cin, w) + w + 2 * (conv(w, w) + w), w
  for w in c.heatmap_head.final_convs:
    h, cin = h + conv(cin, w), w
  h += conv(cin, 1)
  s, cin = 0, m
  for w in c.score_head.convs:
    s, cin = s + conv(cin, w) + w, w
  fin = g * g * cin if c.score_head.pool == "flatten" else cin
  s += cin + 1 if c.score_head.pool == "attention" else 0  # the 1x1 attention conv
  for w in list(c.score_head.dense) + [1]:
    s, fin = s + fin * w + w, w
  n_heads = (2, 4) if c.variant == features.MULTI_HEAD else (1, 1)
  return vit + (d * m + m) + t5 + n_heads[0] * h + n_heads[1] * s


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
@pytest.mark.parametrize("variant", features.VARIANTS)
def test_output_shapes_dtypes_and_counts(size, variant):
  c, out, variables = _abstract(size, variant)
  ho = c.heatmap_size
  assert ho == (c.image_size // c.vit.patch_size) * 2 ** len(c.heatmap_head.up_channels)
  logits = jax.ShapeDtypeStruct((2, LT, c.vocab_size), jnp.float32)
  hm, sc = jax.ShapeDtypeStruct((2, ho, ho), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.float32)
  if variant == features.MULTI_HEAD:
    want = {
      "heatmaps": {h: hm for h in features.HEATMAP_TYPES},
      "scores": {s: sc for s in features.SCORE_TYPES},
      "decoder_logits": logits,
    }
  else:
    want = {"heatmap": hm, "score": sc, "decoder_logits": logits}
  got = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), out)
  assert got == want
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(c.param_dtype)}
  n = _count(variables["params"])
  assert n == _analytic_count(c)
  key = (size, variant)
  if key in REFERENCE_COUNTS:
    pooler = c.vit.width * c.vit.width + c.vit.width
    assert abs(n + pooler - REFERENCE_COUNTS[key]) / REFERENCE_COUNTS[key] < 0.005
    assert abs(n - REFERENCE_COUNTS[key]) / REFERENCE_COUNTS[key] < 0.005


def test_every_registered_size_is_count_checked():
  # The parametrised test above covers MODEL_SIZES x VARIANTS with the analytic count; the
  # published reference counts must all name registered configs.
  for size, variant in REFERENCE_COUNTS:
    assert size in MODEL_SIZES and variant in features.VARIANTS
  assert {"test", "tiny", "B16_t5base_384", "L16_t5base_384"} <= set(MODEL_SIZES)


# float64: the padded and unpadded inputs have different shapes, so XLA sums the attention
# (and everything after it) in different orders; in float32 that noise depends on the CPU's
# vectorisation. The tiny model is ~6 layers (ViT 2, encoder 2, decoder 2) of sums over <= 192
# terms, so its float64 rounding is about depth * sqrt(terms) * eps ~ 30 * 14 * eps ~ 1e-13 of
# an output's scale (<= ~5; seen: 2e-15 absolute). Padding keys that got softmax weight would
# move the outputs by orders of magnitude more.
_F64_TOL = 1024 * float(np.finfo(np.float64).eps)


@pytest.mark.slow
def test_prompt_padding_changes_nothing():
  """Extra PAD tokens after the prompt leave every head and the decoder logits unchanged."""
  with jax.enable_x64(True):
    _check_prompt_padding()


def _check_prompt_padding():
  c = get_model_config("test", features.AUGMENTED_PROMPT)
  c.dtype = c.param_dtype = "float64"
  model = build_model(c)
  rs = np.random.RandomState(0)
  image = jnp.asarray(rs.uniform(-1, 1, (2, c.image_size, c.image_size, 3)), jnp.float64)
  prompt = np.array([[5, 9, 7, features.EOS_ID, 0, 0], [8, 3, features.EOS_ID, 0, 0, 0]])
  longer = np.concatenate([prompt, np.zeros((2, 5), prompt.dtype)], axis=1)
  dec = jnp.asarray(rs.randint(2, c.vocab_size, (2, 5)), jnp.int32)
  variables = jax.jit(model.init)(RNGS, image, jnp.asarray(prompt, jnp.int32), dec)  # not op by op
  apply = jax.jit(model.apply)
  a = apply(variables, image, jnp.asarray(prompt, jnp.int32), dec)
  b = apply(variables, image, jnp.asarray(longer, jnp.int32), dec)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert x.dtype == np.float64
    np.testing.assert_allclose(x, y, rtol=_F64_TOL, atol=_F64_TOL)
  # predict_heads (no decoder) returns the same heads.
  heads = jax.jit(functools.partial(model.apply, method=model.predict_heads))(
    variables, image, jnp.asarray(prompt, jnp.int32)
  )
  assert set(heads) == {"heatmap", "score"}
  for key in heads:
    np.testing.assert_allclose(heads[key], a[key], rtol=_F64_TOL, atol=_F64_TOL)
  # And the prompt does matter: a different real token changes the outputs.
  other = prompt.copy()
  other[0, 0] = 11
  c_out = apply(variables, image, jnp.asarray(other, jnp.int32), dec)
  assert not np.allclose(c_out["heatmap"][0], a["heatmap"][0])


def test_derived_fields_follow_overrides():
  c = get_model_config("test", features.MULTI_HEAD)
  assert (c.image_size, c.heatmap_size, c.num_image_tokens) == (64, 32, 65)
  c.image_size = 96  # 12x12 grid, two upsampling blocks
  assert (c.heatmap_size, c.num_image_tokens) == (48, 145)
  with pytest.raises(ValueError, match="unknown"):
    get_model_config("huge", features.MULTI_HEAD)
