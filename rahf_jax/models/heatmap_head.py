"""Heatmap head: feature map [B, h, w, C] -> convs -> stride-2 upsampling blocks -> sigmoid map.

Default layout (variants.py) is the PyTorch reproduction's (github.com/youweiliang/RichHF,
model.py):
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

Speed options (defaults reproduce the layout above exactly; parameters are the same in every
option, so checkpoints are interchangeable):
  upsample_impl="subpixel"  each deconv as a stride-1 2x2 conv to 4x channels + depth-to-space,
                            its kernel rearranged from the same `up_i_deconv/kernel` (equal to the
                            transposed conv up to summation order; see SubpixelDeconv)
  remat=<policy>            each upsampling block, and the final convs with the output conv,
                            rematerialised under t5_layers.REMAT_POLICIES[policy]: the backward
                            pass keeps only each block's input and recomputes the rest
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rahf_jax.models import t5_layers
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


def conv(features, name, dtype, param_dtype, kernel_size=3, out_axis="conv_out", bias=0.0):
  """A 'SAME' 3x3 conv with logically partitioned HWIO kernel and bias (initialised to `bias`).

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
    bias_init=nn.with_logical_partitioning(nn.initializers.constant(bias), (out_axis,)),
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
    kernel_init=_deconv_kernel_init(),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
  )


UPSAMPLE_IMPLS = ("transpose", "subpixel")


def _deconv_kernel_init():
  # With transpose_kernel the stored kernel is [kh, kw, out, in] (a forward conv's HWIO).
  return nn.with_logical_partitioning(
    nn.initializers.he_normal(in_axis=-1, out_axis=-2),
    ("conv_height", "conv_width", "conv_out", "conv_in"),
  )


def subpixel_kernel(kernel):
  """The deconv kernel [3, 3, out, in] as a 2x2 forward conv kernel [2, 2, in, 4 * out].

  Per axis, out[2i + a - 1] += x[i] w[a] gives: even output 2m = x[m] w[1]; odd output 2m + 1 =
  x[m] w[2] + x[m + 1] w[0]. So output phase r in {0, 1} reads the 2-tap window (x[m], x[m + 1])
  through taps (w[1], 0) for r = 0 and (w[2], w[0]) for r = 1. Output channels are ordered
  (row phase, column phase, out).
  """
  w = jnp.swapaxes(kernel, 2, 3)  # [3, 3, in, out]
  zero = jnp.zeros_like(w[0, 0])
  taps = {(0, 0): 1, (0, 1): None, (1, 0): 2, (1, 1): 0}  # (phase, window offset) -> tap

  def tap(ry, dy, rx, dx):
    a, b = taps[ry, dy], taps[rx, dx]
    return zero if a is None or b is None else w[a, b]

  rows = [
    [
      jnp.stack([tap(ry, dy, rx, dx) for ry in (0, 1) for rx in (0, 1)], axis=-2)  # [in, 4, out]
      for dx in (0, 1)
    ]
    for dy in (0, 1)
  ]
  k2 = jnp.stack([jnp.stack(r, axis=0) for r in rows], axis=0)  # [2, 2, in, 4, out]
  return k2.reshape(k2.shape[:3] + (-1,))


class SubpixelDeconv(nn.Module):
  """The stride-2 3x3 transposed conv of `deconv` as a stride-1 2x2 conv + depth-to-space.

  Same parameters (`kernel` [3, 3, out, in], `bias` [out], same initialisers) and the same
  function: every output is the same sum of the same products (the 7 extra taps of the 2x2 conv
  multiply exact zeros), so only the summation order can differ. The 2x2 conv runs 16 multiplies
  per 4 outputs where the transposed conv needs 9 (1.78x the deconv FLOPs), in exchange for one
  dense, stride-1 convolution with 4x output channels.
  """

  features: int
  kernel_size: int = 3
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.kernel_size != 3:
      raise ValueError(
        f"upsample_impl='subpixel' is derived for 3x3 kernels, got {self.kernel_size}."
      )
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param(
      "kernel", _deconv_kernel_init(), (k, k, self.features, cin), self.param_dtype
    )
    bias = self.param(
      "bias",
      nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
      (self.features,),
      self.param_dtype,
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jax.lax.conv_general_dilated(
      x,
      subpixel_kernel(kernel),
      (1, 1),
      ((0, 1), (0, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )  # [B, h, w, 2 * 2 * out]
    b, h, w, _ = y.shape
    y = y.reshape(b, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, 2 * h, 2 * w, self.features) + bias


def grid_constraint(x):
  return nn.with_logical_constraint(x, ("batch", "grid_h", "grid_w", "channels"))


class _UpBlock(nn.Module):
  """One upsampling block; its parameters live in the head's scope (`up_{index}_...`)."""

  index: int
  features: int
  upsample_impl: str = "transpose"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    i, c = self.index, self.features
    if self.upsample_impl == "transpose":
      x = deconv(c, f"up_{i}_deconv", **kw)(x)
    elif self.upsample_impl == "subpixel":
      x = SubpixelDeconv(c, name=f"up_{i}_deconv", **kw)(x)
    else:
      raise ValueError(
        f"upsample_impl {self.upsample_impl!r} unknown; use one of {UPSAMPLE_IMPLS}."
      )
    x = nn.relu(ChannelRMSNorm(name=f"up_{i}_norm", **kw)(x))
    h = conv(c, f"up_{i}_res_conv_0", **kw)(x)
    h = nn.relu(ChannelRMSNorm(name=f"up_{i}_res_norm_0", **kw)(h))
    h = conv(c, f"up_{i}_res_conv_1", **kw)(h)
    h = ChannelRMSNorm(name=f"up_{i}_res_norm_1", **kw)(h)
    return grid_constraint(nn.relu(x + h))


class _Tail(nn.Module):
  """final_conv_i -> relu, then out_conv (1 channel); parameters in the head's scope."""

  final_convs: Sequence[int]
  out_bias: float = 0.0
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    for i, c in enumerate(self.final_convs):
      x = nn.relu(conv(c, f"final_conv_{i}", **kw)(x))
    return conv(1, "out_conv", out_axis=None, bias=self.out_bias, **kw)(x)


class HeatmapHead(nn.Module):
  """Feature map [B, h, w, C] -> heatmap float32 [B, h * 2**len(up_channels), same] in [0, 1]."""

  pre_convs: Sequence[int] = (768, 384)
  up_channels: Sequence[int] = (768, 384, 384, 192)
  final_convs: Sequence[int] = (192,)
  upsample_impl: str = "transpose"  # "transpose" | "subpixel" (same parameters and function)
  remat: str = "none"  # "none" or a t5_layers.REMAT_POLICIES name, per upsampling block
  # The map's value at initialisation (out_conv's bias is its logit); 0.5 is a zero bias.
  init_value: float = 0.5
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if not 0.0 < self.init_value < 1.0:
      raise ValueError(f"heatmap_head.init_value must be in (0, 1), got {self.init_value}.")
    x = x.astype(self.dtype)
    for i, c in enumerate(self.pre_convs):
      x = nn.relu(conv(c, f"pre_conv_{i}", **kw)(x))
      x = ChannelRMSNorm(name=f"pre_norm_{i}", **kw)(x)
    up_cls = t5_layers.maybe_remat(_UpBlock, self.remat, (), "heatmap_head_remat")
    tail_cls = t5_layers.maybe_remat(_Tail, self.remat, (), "heatmap_head_remat")
    for i, c in enumerate(self.up_channels):
      block = up_cls(i, c, self.upsample_impl, **kw)
      nn.share_scope(self, block)  # parameters stay `up_{i}_*` directly under the head
      x = block(x)
    out_bias = math.log(self.init_value / (1.0 - self.init_value))
    tail = tail_cls(tuple(self.final_convs), out_bias, **kw)
    nn.share_scope(self, tail)
    x = tail(x)
    return jax.nn.sigmoid(x[..., 0].astype(at_least_float32(self.dtype)))
