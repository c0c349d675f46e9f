"""Heatmap head: feature map [B, h, w, C] -> convs -> stride-2 upsampling blocks -> sigmoid map.

Default layout (variants.py) is the PyTorch reproduction's (RAHF_REFERENCE.md s3):
  pre_conv_i:  conv 3x3 -> relu -> norm                 (768, 384)
  up_i:        deconv 3x3 stride 2 (doubles h, w) -> norm -> relu, then a residual pair
               res_conv_0 -> norm -> relu -> res_conv_1 -> norm, added back, relu
                                                        (768, 384, 384, 192)
  final_conv_i: conv 3x3 -> relu                        (192,)
  out_conv:    conv 3x3 to 1 channel -> sigmoid
"norm" is an RMS norm over channels with a learned scale (eps 1e-8, as the reproduction).
The transposed conv matches PyTorch's ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1):
out[2i + a - 1] += x[i] * w[a]. Kernels are HWIO; a PyTorch deconv weight [in, out, kh, kw] maps
as w.transpose(2, 3, 1, 0) -> [kh, kw, out, in] (flax keeps the forward conv's HWIO when
`transpose_kernel=True`; both sides apply the kernel unflipped in the scatter form above).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rahf_jax.models.dtypes import at_least_float32

CONV_AXES = ("conv_height", "conv_width", "conv_in", "conv_out")


class ChannelRMSNorm(nn.Module):
  """x / sqrt(mean_c(x^2) + eps) * scale over the channel (last) axis, in at least float32."""

  epsilon: float = 1e-8
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param(
      "scale",
      nn.with_logical_partitioning(nn.initializers.ones, ("conv_out",)),
      (x.shape[-1],),
      self.param_dtype,
    )
    x32 = x.astype(at_least_float32(x.dtype))
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    return (y * scale).astype(self.dtype)


def conv(features, name, dtype, param_dtype, kernel_size=3, out_axis="conv_out"):
  """A 'SAME' 3x3 conv with logically partitioned HWIO kernel and bias.

  `out_axis=None` keeps a 1-channel output layer unsharded.
  """
  return nn.Conv(
    features,
    (kernel_size, kernel_size),
    padding="SAME",
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
    kernel_init=nn.with_logical_partitioning(
      nn.initializers.he_normal(), CONV_AXES[:3] + (out_axis,)
    ),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (out_axis,)),
  )


def deconv(features, name, dtype, param_dtype, kernel_size=3):
  """Stride-2 transposed conv that exactly doubles h and w (PyTorch padding=1, output_padding=1).

  With `transpose_kernel=True` flax computes the gradient of a conv (PyTorch's semantics); the
  explicit padding (k - 1 - 1, k - 1 - 1 + 1) on the 2x-dilated input gives 2h outputs.
  """
  k = kernel_size
  pad = (k - 2, k - 1)
  return nn.ConvTranspose(
    features,
    (k, k),
    strides=(2, 2),
    padding=(pad, pad),
    transpose_kernel=True,
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
    # With transpose_kernel the stored kernel is [kh, kw, out, in] (a forward conv's HWIO).
    kernel_init=nn.with_logical_partitioning(
      nn.initializers.he_normal(in_axis=-1, out_axis=-2),
      ("conv_height", "conv_width", "conv_out", "conv_in"),
    ),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
  )


def grid_constraint(x):
  return nn.with_logical_constraint(x, ("batch", "grid_h", "grid_w", "channels"))


class HeatmapHead(nn.Module):
  """Feature map [B, h, w, C] -> heatmap float32 [B, h * 2**len(up_channels), same] in [0, 1]."""

  pre_convs: Sequence[int] = (768, 384)
  up_channels: Sequence[int] = (768, 384, 384, 192)
  final_convs: Sequence[int] = (192,)
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = x.astype(self.dtype)
    for i, c in enumerate(self.pre_convs):
      x = nn.relu(conv(c, f"pre_conv_{i}", **kw)(x))
      x = ChannelRMSNorm(name=f"pre_norm_{i}", **kw)(x)
    for i, c in enumerate(self.up_channels):
      x = deconv(c, f"up_{i}_deconv", **kw)(x)
      x = nn.relu(ChannelRMSNorm(name=f"up_{i}_norm", **kw)(x))
      h = conv(c, f"up_{i}_res_conv_0", **kw)(x)
      h = nn.relu(ChannelRMSNorm(name=f"up_{i}_res_norm_0", **kw)(h))
      h = conv(c, f"up_{i}_res_conv_1", **kw)(h)
      h = ChannelRMSNorm(name=f"up_{i}_res_norm_1", **kw)(h)
      x = grid_constraint(nn.relu(x + h))
    for i, c in enumerate(self.final_convs):
      x = nn.relu(conv(c, f"final_conv_{i}", **kw)(x))
    x = conv(1, "out_conv", out_axis=None, **kw)(x)
    return jax.nn.sigmoid(x[..., 0].astype(at_least_float32(self.dtype)))
