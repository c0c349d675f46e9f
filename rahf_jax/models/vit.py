"""ViT image encoder with the big_vision / vision_transformer parameter layout.

Names (so that an Augreg/vision_transformer or big_vision `.npz` maps on by path, see weights.py):
  embedding/{kernel [p, p, 3, D], bias}          patch embedding (a strided conv)
  cls [1, 1, D]                                  optional class token (HF ViT and the PyTorch
                                                 reproduction have one; its output is dropped)
  Transformer/posembed_input/pos_embedding [1, N(+1), D]   learned; covers the class token too
  Transformer/encoderblock_i/{LayerNorm_0, MultiHeadDotProductAttention_0/{query,key,value,out},
                              LayerNorm_1, MlpBlock_0/{Dense_0, Dense_1}}
  Transformer/encoder_norm
There is no classifier head and no pooler (the reproduction's HF pooler is unused).

`stem="conv"` (an option, not the paper's ViT) replaces the one-matrix patch embedding by
log2(p) 3x3 stride-2 convs with ReLU (stem_conv_i, widths doubling up to D, or `stem_channels`)
and a 1x1 conv, `embedding` [1, 1, D, D]: a convolutional stem, which makes a ViT trained from
scratch learn local texture (noise, broken edges) in far fewer steps (Xiao et al., "Early
convolutions help transformers see better", NeurIPS 2021). No released ViT checkpoint has it.
The position table is sized for `image_size`; a checkpoint at another resolution is resampled
when loaded (weights.resample_posemb), so any resolution divisible by the patch size works.
"""

import re

import flax.linen as nn
import jax.numpy as jnp

from rahf_jax.models import t5_layers

# width, depth, mlp_dim, heads of the standard ViT sizes (big_vision's decode_variant table) plus
# "tiny", which is ours (the "test" and "tiny" model sizes of rahf_jax/models/variants.py).
_VIT_SIZES = {
  "tiny": (64, 2, 128, 2),
  "Ti": (192, 12, 768, 3),
  "S": (384, 12, 1536, 6),
  "M": (512, 12, 2048, 8),
  "B": (768, 12, 3072, 12),
  "L": (1024, 24, 4096, 16),
  "H": (1280, 32, 5120, 16),
  "So400m": (1152, 27, 4304, 16),
  "g": (1408, 40, 6144, 16),
}


def decode_variant(variant: str) -> dict:
  """'B/16' -> {'width', 'depth', 'mlp_dim', 'num_heads', 'patch_size'}."""
  m = re.fullmatch(r"(\w+)/(\d+)", variant or "")
  if not m or m.group(1) not in _VIT_SIZES:
    raise ValueError(
      f"ViT variant {variant!r} unknown; use '<size>/<patch>' with size in "
      f"{sorted(_VIT_SIZES)}, e.g. 'B/16'."
    )
  width, depth, mlp_dim, heads = _VIT_SIZES[m.group(1)]
  return dict(
    width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads, patch_size=int(m.group(2))
  )


class MlpBlock(nn.Module):
  """ViT MLP: Dense_0 -> gelu -> Dense_1, with biases."""

  mlp_dim: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    def dense(features, axes, name):
      return nn.Dense(
        features,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
        kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.normal(1e-6), axes[1:]),
      )

    h = nn.gelu(dense(self.mlp_dim, ("embed", "mlp"), "Dense_0")(x), approximate=False)
    return dense(x.shape[-1], ("mlp", "embed"), "Dense_1")(h)


def _layer_norm(name, epsilon, dtype, param_dtype):
  return nn.LayerNorm(
    epsilon=epsilon,
    dtype=dtype,
    param_dtype=param_dtype,
    name=name,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
  )


class EncoderBlock(nn.Module):
  """Pre-norm ViT block (attention with biases and 1/sqrt(d) scaling, then GELU MLP)."""

  num_heads: int
  mlp_dim: int
  layer_norm_epsilon: float = 1e-6
  attention_impl: str = "xla"  # t5_layers.dot_product_attention's impl
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    eps = self.layer_norm_epsilon
    h = _layer_norm("LayerNorm_0", eps, **kw)(x)
    head_dim = x.shape[-1] // self.num_heads
    h = t5_layers.MultiHeadAttention(
      self.num_heads,
      head_dim,
      use_bias=True,
      scale=None,
      attention_impl=self.attention_impl,
      name="MultiHeadDotProductAttention_0",
      **kw,
    )(h, h)
    x = x + h
    h = _layer_norm("LayerNorm_1", eps, **kw)(x)
    x = x + MlpBlock(self.mlp_dim, name="MlpBlock_0", **kw)(h)
    return t5_layers.activation_constraint(x)


class Transformer(nn.Module):
  """Position embedding + blocks + final norm (the `Transformer/` scope of the checkpoints)."""

  depth: int
  num_heads: int
  mlp_dim: int
  remat_policy: str = "none"
  layer_norm_epsilon: float = 1e-6
  attention_impl: str = "xla"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    eps = self.layer_norm_epsilon
    x = PosEmbed(name="posembed_input", param_dtype=self.param_dtype)(x)
    block_cls = t5_layers.maybe_remat(EncoderBlock, self.remat_policy, ())
    for i in range(self.depth):
      x = block_cls(
        self.num_heads, self.mlp_dim, eps, self.attention_impl, name=f"encoderblock_{i}", **kw
      )(x)
    return _layer_norm("encoder_norm", eps, **kw)(x)


class PosEmbed(nn.Module):
  """Learned additive position embedding `pos_embedding [1, L, D]` (stddev 0.02, as in ViT)."""

  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    pe = self.param(
      "pos_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "length", "embed")),
      (1, x.shape[1], x.shape[2]),
      self.param_dtype,
    )
    return x + pe.astype(x.dtype)


def stem_widths(patch_size: int, width: int, channels=()) -> list[int]:
  """Output widths of the conv stem's stride-2 convs: `channels` if given (one per conv),
  else doubling, the last one `width`."""
  steps = patch_size.bit_length() - 1
  if patch_size != 2**steps or steps == 0:
    raise ValueError(f"vit stem 'conv' needs a patch size that is a power of 2, not {patch_size}.")
  if channels:
    if len(channels) != steps:
      raise ValueError(
        f"vit stem_channels {tuple(channels)} has {len(channels)} widths; patch size "
        f"{patch_size} needs {steps} (one per stride-2 conv)."
      )
    return [int(c) for c in channels]
  return [max(width // 2 ** (steps - 1 - i), 8) for i in range(steps)]


class ViT(nn.Module):
  """Image [B, H, W, 3] in [-1, 1] -> tokens [B, (1 +) N, width] after the final norm."""

  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  patch_size: int
  image_size: int
  cls_token: bool = True
  posemb: str = "learn"
  stem: str = "patch"  # "patch" (one strided conv, the ViT's) | "conv" (see the module docstring)
  stem_channels: tuple[int, ...] = ()  # the conv stem's widths; () = doubling up to `width`
  remat_policy: str = "none"
  layer_norm_epsilon: float = 1e-6  # big_vision/Augreg: 1e-6; Hugging Face's ViT: 1e-12
  attention_impl: str = "xla"  # t5_layers.dot_product_attention's impl
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @property
  def grid_size(self) -> int:
    return self.image_size // self.patch_size

  def _conv_stem(self, x):
    for i, c in enumerate(stem_widths(self.patch_size, self.width, self.stem_channels)):
      x = nn.Conv(
        c,
        (3, 3),
        strides=(2, 2),
        padding="SAME",
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"stem_conv_{i}",
        kernel_init=nn.with_logical_partitioning(
          nn.initializers.he_normal(), ("conv_height", "conv_width", None, None)
        ),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
      )(x)
      x = nn.relu(x)
    return x

  @nn.compact
  def __call__(self, image):
    if self.posemb != "learn":
      raise ValueError(f"vit posemb {self.posemb!r} not supported; use 'learn'.")
    b, h, w, _ = image.shape
    if h != self.image_size or w != self.image_size:
      raise ValueError(
        f"image is {h}x{w} but the model's image_size is {self.image_size}; "
        "resize the input (the data layer reads model_config.image_size)."
      )
    if self.image_size % self.patch_size:
      raise ValueError(
        f"image_size {self.image_size} is not divisible by the patch size "
        f"{self.patch_size}; pick a multiple of it."
      )
    p = self.patch_size
    x = image.astype(self.dtype)
    if self.stem == "conv":
      x, p = self._conv_stem(x), 1
    elif self.stem != "patch":
      raise ValueError(f"vit stem {self.stem!r} unknown; use 'patch' or 'conv'.")
    x = nn.Conv(
      self.width,
      (p, p),
      strides=(p, p),
      padding="VALID",
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="embedding",
      kernel_init=nn.with_logical_partitioning(
        nn.initializers.lecun_normal(), ("conv_height", "conv_width", None, "embed")
      ),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
    )(x)
    x = x.reshape(b, -1, self.width)
    if self.cls_token:
      cls = self.param(
        "cls",
        nn.with_logical_partitioning(nn.initializers.zeros, (None, None, "embed")),
        (1, 1, self.width),
        self.param_dtype,
      )
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, self.width)), x], axis=1)
    x = t5_layers.activation_constraint(x)
    return Transformer(
      self.depth,
      self.num_heads,
      self.mlp_dim,
      self.remat_policy,
      self.layer_norm_epsilon,
      self.attention_impl,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="Transformer",
    )(x)
