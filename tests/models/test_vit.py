"""ViT: variant table, patch order and position handling against a numpy reference."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rahf_jax.models import vit


def test_decode_variant_matches_published_sizes():
  # ViT paper, Table 1: B = 768 wide, 12 deep, MLP 3072, 12 heads; L = 1024, 24, 4096, 16.
  assert vit.decode_variant("B/16") == dict(
    width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16
  )
  assert vit.decode_variant("L/16") == dict(
    width=1024, depth=24, mlp_dim=4096, num_heads=16, patch_size=16
  )
  with pytest.raises(ValueError, match="unknown"):
    vit.decode_variant("Q/16")


def _zero_depth_vit(image_size=32, patch=8, cls=True, dtype=jnp.float32):
  return vit.ViT(
    width=6, depth=0, mlp_dim=8, num_heads=2, patch_size=patch, image_size=image_size,
    cls_token=cls, dtype=dtype, param_dtype=dtype,
  )  # fmt: skip


# float64: each token is one sum of 192 products, then a LayerNorm over 6 channels; the rounding
# error is about sqrt(192) * eps ~ 3e-15 of the inputs' scale, and the LayerNorm's 1 / std
# (std >= ~0.1 here) scales it by at most ~10. A wrong patch order or table is O(1).
_F64_TOL = 256 * float(np.finfo(np.float64).eps)


def test_patch_order_and_position_embedding_against_numpy():
  """Tokens are row-major patches (+ posemb per position, class token first), as ViT defines.

  Compared in float64 (model and numpy), where summation order cannot matter at this tolerance.
  """
  with jax.enable_x64(True):
    _check_patch_order_and_position_embedding()


def _check_patch_order_and_position_embedding():
  m = _zero_depth_vit(dtype=jnp.float64)
  img = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3))
  v = nn.unbox(m.init(jax.random.key(0), img))
  assert v["params"]["embedding"]["kernel"].dtype == np.float64
  p = jax.tree.map(np.asarray, v["params"])
  pe = p["Transformer"]["posembed_input"]["pos_embedding"]
  assert pe.shape == (1, 1 + 16, 6) and p["cls"].shape == (1, 1, 6)
  # Reference: cut 8x8 patches row by row, flatten (y, x, c), project, add the table, LayerNorm.
  patches = img.reshape(2, 4, 8, 4, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 16, 192)
  tok = patches @ p["embedding"]["kernel"].reshape(192, 6) + p["embedding"]["bias"]
  tok = np.concatenate([np.broadcast_to(p["cls"], (2, 1, 6)), tok], axis=1) + pe
  mu, var = tok.mean(-1, keepdims=True), tok.var(-1, keepdims=True)
  ln = p["Transformer"]["encoder_norm"]
  ref = (tok - mu) / np.sqrt(var + 1e-6) * ln["scale"] + ln["bias"]
  out = m.apply(v, img)
  assert out.dtype == np.float64
  np.testing.assert_allclose(out, ref, rtol=_F64_TOL, atol=_F64_TOL)


def test_any_resolution_divisible_by_patch():
  for size, cls, n in ((48, True, 37), (64, False, 64)):
    out = jax.eval_shape(
      _zero_depth_vit(size, 8, cls).init_with_output,
      jax.random.key(0),
      jnp.zeros((1, size, size, 3)),
    )[0]
    assert out.shape == (1, n, 6)
  with pytest.raises(ValueError, match="divisible"):
    jax.eval_shape(_zero_depth_vit(36, 8).init, jax.random.key(0), jnp.zeros((1, 36, 36, 3)))
  with pytest.raises(ValueError, match="image_size"):
    jax.eval_shape(_zero_depth_vit(32, 8).init, jax.random.key(0), jnp.zeros((1, 48, 48, 3)))


@pytest.mark.slow
def test_conv_stem_against_numpy():
  """stem="conv": 3x3 stride-2 convs (SAME padding, ReLU) then a 1x1 embedding, in float64."""
  with jax.enable_x64(True):
    m = vit.ViT(16, 0, 16, 2, 4, 16, cls_token=False, stem="conv", dtype=jnp.float64,
                param_dtype=jnp.float64)  # fmt: skip
    img = np.random.RandomState(1).uniform(-1, 1, (2, 16, 16, 3))
    p = jax.tree.map(np.asarray, nn.unbox(m.init(jax.random.key(0), img))["params"])
    assert [p[f"stem_conv_{i}"]["kernel"].shape for i in range(2)] == [(3, 3, 3, 8), (3, 3, 8, 16)]
    assert p["embedding"]["kernel"].shape == (1, 1, 16, 16) and "stem_conv_2" not in p

    def conv_s2(x, kernel, bias):  # SAME for stride 2, even size: pad 0 before, 1 after
      x = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
      h = (x.shape[1] - 1) // 2
      out = np.zeros((x.shape[0], h, h, kernel.shape[-1]))
      for i in range(h):
        for j in range(h):
          out[:, i, j] = np.einsum("byxc,yxco->bo", x[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3],
                                   kernel)  # fmt: skip
      return np.maximum(out + bias, 0)

    x = img
    for i in range(2):
      x = conv_s2(x, p[f"stem_conv_{i}"]["kernel"], p[f"stem_conv_{i}"]["bias"])
    tok = x.reshape(2, 16, 16) @ p["embedding"]["kernel"][0, 0] + p["embedding"]["bias"]
    tok = tok + p["Transformer"]["posembed_input"]["pos_embedding"]
    mu, var = tok.mean(-1, keepdims=True), tok.var(-1, keepdims=True)
    ln = p["Transformer"]["encoder_norm"]
    ref = (tok - mu) / np.sqrt(var + 1e-6) * ln["scale"] + ln["bias"]
    np.testing.assert_allclose(m.apply({"params": p}, img), ref, rtol=_F64_TOL, atol=_F64_TOL)
  with pytest.raises(ValueError, match="power of 2"):
    jax.eval_shape(vit.ViT(8, 0, 16, 2, 6, 12, stem="conv").init, jax.random.key(0),
                   jnp.zeros((1, 12, 12, 3)))  # fmt: skip


def test_conv_stem_channels_set_each_convs_width():
  def kernels(channels):
    m = vit.ViT(16, 0, 16, 2, 8, 32, stem="conv", stem_channels=channels)
    p = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    return [nn.unbox(p[k]["kernel"]).shape for k in sorted(p) if k.startswith("stem_conv_")] + [
      nn.unbox(p["embedding"]["kernel"]).shape
    ]

  assert kernels(()) == [(3, 3, 3, 8), (3, 3, 8, 8), (3, 3, 8, 16), (1, 1, 16, 16)]
  assert kernels((24, 40, 40)) == [(3, 3, 3, 24), (3, 3, 24, 40), (3, 3, 40, 40), (1, 1, 40, 16)]
  with pytest.raises(ValueError, match=r"stem_channels \(24, 40\) has 2 widths; patch size 8"):
    kernels((24, 40))
