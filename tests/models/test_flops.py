"""Analytic FLOP counter vs XLA's cost analysis (tiny, L16 lowered; both upsample_impl values) and
the reference's published figures."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from rahf_jax import features
from rahf_jax.models import build_model, flops, get_model_config, heatmap_head
from rahf_jax.models.heatmap_head import HeatmapHead


def _xla_flops(fn, *args):
  return jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]


def test_heatmap_head_flops_match_xla():
  # XLA also counts the elementwise work (norms, relu, sigmoid), about 1% at these widths.
  head = HeatmapHead(pre_convs=(8,), up_channels=(8, 8), final_convs=(8,))
  x = jnp.zeros((1, 8, 8, 16))
  v = jax.eval_shape(lambda k: nn.unbox(head.init(k, x)), jax.random.key(0))  # shapes suffice
  got = _xla_flops(head.apply, v, x)
  want = flops.heatmap_head_flops(8, 16, head)
  assert 1.0 <= got / want < 1.03


def _forward_flops_vs_xla(c) -> tuple[float, int]:
  """(XLA's count, ours) of one forward pass of config `c` (8 prompt, 6 target tokens)."""
  c.dtype = "float32"
  model = build_model(c)
  image = jnp.zeros((1, c.image_size, c.image_size, 3))
  args = (image, jnp.ones((1, 8), jnp.int32), jnp.ones((1, 6), jnp.int32))
  # The compiled program's count needs the parameters' shapes, not their values (no init compile).
  v = jax.eval_shape(lambda k: model.init({"params": k}, *args), jax.random.key(0))
  return _xla_flops(model.apply, v, *args), sum(flops.forward_flops_breakdown(c, 8, 6).values())


def test_tiny_forward_flops_match_xla():
  c = get_model_config("test", features.AUGMENTED_PROMPT)
  got, want = _forward_flops_vs_xla(c)
  # Matmuls/convs dominate; XLA adds elementwise work and simplifies some ops, within 10% here.
  assert abs(got - want) / want < 0.10
  assert flops.train_flops_per_example(c, 8, 6) == 3 * want


def test_conv_stem_and_attention_pool_flops_match_xla():
  """A conv stem (widths 32, 64, 64, 64) at 128x128 with 16x16 patches and attention-pooled
  score heads."""
  c = get_model_config("test", features.MULTI_HEAD)
  c.image_size, c.vit.patch_size, c.vit.stem = 128, 16, "conv"
  c.vit.stem_channels = (32, 64, 64, 64)
  c.score_head.pool = "attention"
  got, want = _forward_flops_vs_xla(c)
  assert abs(got - want) / want < 0.10
  # 3x3 stride-2 convs 3->32 at 64x64, 32->64 at 32x32, 64->64 at 16x16 and 8x8, then 1x1.
  wide = 2 * 9 * (64**2 * 3 * 32 + 32**2 * 32 * 64 + 16**2 * 64 * 64 + 8**2 * 64 * 64)
  assert flops.vit_stem_flops(128, 16, 64, "conv", c.vit.stem_channels) == wide + 2 * 8**2 * 64**2
  # The default widths double up to the ViT's: 3->8, 8->16, 16->32, 32->64.
  default = 2 * 9 * (64**2 * 3 * 8 + 32**2 * 8 * 16 + 16**2 * 16 * 32 + 8**2 * 32 * 64)
  assert flops.vit_stem_flops(128, 16, 64, "conv") == default + 2 * 8**2 * 64**2


def test_reference_figures():
  c = get_model_config("L16_t5base_384", features.MULTI_HEAD)
  # The reproduction's modules, counted: about 0.69 TFLOP forward per heatmap head at 384x384
  # output, and about 5.8 TFLOP per multi-head training example with 64-token prompts and targets.
  head = flops.heatmap_head_flops(24, 768, c.heatmap_head)
  assert 0.68e12 < head < 0.70e12
  train = flops.train_flops_per_example(c, 64, 64)
  assert abs(train - 5.8e12) / 5.8e12 < 0.02


def _xla_lowered_flops(fn, *args):
  return jax.jit(fn).lower(*args).cost_analysis()["flops"]


@pytest.mark.parametrize("impl", heatmap_head.UPSAMPLE_IMPLS)
def test_upsample_flops_are_xlas_count_up_to_padding_taps_and_bias(impl):
  # XLA counts a convolution's taps that land inside the input (not on its zero padding) plus
  # one add per output for the bias; the analytic count is PyTorch's (every tap). Both exact:
  #   transpose: per axis 3n - 1 of the 3n taps of the n inputs land inside the 2n outputs;
  #   subpixel:  a 2x2 conv padded (0, 1) to 4 * cout channels: 2n - 1 valid taps per axis.
  n, cin, cout = 6, 16, 8
  x = jnp.zeros((1, n, n, cin))
  if impl == "transpose":
    m = heatmap_head.deconv(cout, "up", jnp.float32, jnp.float32)
    valid = 2 * cin * cout * (3 * n - 1) ** 2
  else:
    m = heatmap_head.SubpixelDeconv(cout)
    valid = 2 * cin * 4 * cout * (2 * n - 1) ** 2
  bias = (2 * n) ** 2 * cout
  assert _xla_lowered_flops(m.apply, m.init(jax.random.key(0), x), x) == valid + bias
  taps = 9 * n * n if impl == "transpose" else 16 * n * n
  assert flops.upsample_flops(n, cin, cout, impl) == 2 * cin * cout * taps


@pytest.mark.parametrize("impl", heatmap_head.UPSAMPLE_IMPLS)
@pytest.mark.parametrize(
  "size, prompt_len, target_len, rtol",
  # Padding taps (fewer in XLA's count) against elementwise work (more): 3.9% / 4.3% apart on
  # the test model's 4 x 4 to 32 x 32 maps, 0.3% / 0.4% for L16 (jax 0.10.2, CPU lowering).
  [("test", 8, 6, 0.06), ("L16_t5base_384", 64, 64, 0.01)],
)
def test_forward_flops_match_xla_for_both_upsample_impls(size, prompt_len, target_len, rtol, impl):
  c = get_model_config(size, features.MULTI_HEAD)
  c.dtype, c.upsample_impl = "float32", impl
  model = build_model(c)
  n = c.image_size
  args = (
    jax.ShapeDtypeStruct((1, n, n, 3), jnp.float32),
    jax.ShapeDtypeStruct((1, prompt_len), jnp.int32),
    jax.ShapeDtypeStruct((1, target_len), jnp.int32),
  )
  # Shapes only: L16's 642M parameters are never materialised, the program is only lowered.
  variables = jax.eval_shape(lambda k, *a: model.init({"params": k}, *a), jax.random.key(0), *args)
  got = _xla_lowered_flops(model.apply, variables, *args)
  want = sum(flops.forward_flops_breakdown(c, prompt_len, target_len).values())
  assert abs(got - want) / want < rtol
  # The model-FLOPs count (transposed conv's work whatever runs) is the same for both impls.
  base = flops.forward_flops_breakdown(c, prompt_len, target_len, upsample_impl="transpose")
  ref = get_model_config(size, features.MULTI_HEAD)
  assert base == flops.forward_flops_breakdown(ref, prompt_len, target_len)
  if impl == "subpixel":
    # 16 instead of 9 multiply-adds per input position in each upsampling block's conv.
    extra = want - sum(base.values())
    head = c.heatmap_head
    s, cin, expect = n // c.vit.patch_size, head.pre_convs[-1], 0
    for cout in head.up_channels:
      expect += 2 * s * s * 7 * cin * cout
      s, cin = 2 * s, cout
    assert extra == len(features.HEATMAP_TYPES) * expect
