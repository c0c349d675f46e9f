"""Score head: feature map [B, h, w, C] -> convs -> flatten -> dense layers -> sigmoid score [B].

Default layout (variants.py) is the PyTorch reproduction's: six 3x3 convs with 768, 384, 192, 96,
48, 12 output channels (each conv -> channel RMS norm -> relu), flatten (h * w * 12), dense 512,
relu, dense 128, relu, dense 1, sigmoid. The flatten order here is (h, w, c); the reproduction's is
(c, h, w), which matters only when importing its weights (weights.py).

`pool="mean"` replaces the flatten by a mean over the grid: a readout that does not depend on
where in the image a feature sits, with far fewer dense weights. `pool="attention"` weights that
mean by a softmax over the grid of a learned 1x1 conv's scores (attention-based pooling, Ilse et
al., ICML 2018), so that a few cells (one artifact) can carry the score. No registered size uses
either by default; configs/rahf.py's tiny (the demo) sets its choice.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rahf_jax.models.dtypes import at_least_float32
from rahf_jax.models.heatmap_head import ChannelRMSNorm, conv


class ScoreHead(nn.Module):
  """Feature map [B, h, w, C] -> float32 [B] in [0, 1]."""

  convs: Sequence[int] = (768, 384, 192, 96, 48, 12)
  dense: Sequence[int] = (512, 128)
  pool: str = "flatten"  # "flatten" (the reproduction) or "mean" over the grid
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = x.astype(self.dtype)
    for i, c in enumerate(self.convs):
      x = conv(c, f"conv_{i}", **kw)(x)
      x = nn.relu(ChannelRMSNorm(name=f"norm_{i}", **kw)(x))
    if self.pool == "flatten":
      x = x.reshape(x.shape[0], -1)
    elif self.pool == "mean":
      x = x.mean(axis=(1, 2))
    elif self.pool == "attention":
      # Attention-based pooling (Ilse et al., 2018): a 1x1 conv scores each grid cell and the
      # softmax of the scores over the grid weights the mean, so a few cells can carry the score.
      logits = conv(1, "attention", kernel_size=1, out_axis=None, **kw)(x)
      weights = jax.nn.softmax(
        logits.reshape(x.shape[0], -1).astype(at_least_float32(self.dtype)), axis=-1
      )
      x = jnp.einsum("bn,bnc->bc", weights.astype(x.dtype), x.reshape(x.shape[0], -1, x.shape[-1]))
    else:
      raise ValueError(
        f"score_head.pool must be 'flatten', 'mean' or 'attention', got {self.pool!r}."
      )
    for i, f in enumerate(list(self.dense) + [1]):
      out_axis = "score_out" if i < len(self.dense) else None  # the 1-wide output: unsharded
      x = nn.Dense(
        f,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"dense_{i}",
        kernel_init=nn.with_logical_partitioning(
          nn.initializers.he_normal(), ("score_in", out_axis)
        ),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (out_axis,)),
      )(x)
      if i < len(self.dense):
        x = nn.relu(x)
    return jax.nn.sigmoid(x[:, 0].astype(at_least_float32(self.dtype)))
