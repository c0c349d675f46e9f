"""The RAHF network: ViT + T5 fusion encoder, heatmap and score heads, misaligned-word decoder.

  image [B, H, W, 3] -> ViT -> tokens [B, (1 +) N, Dv] -> `visual_projection` (linear to d_model)
  prompt_ids [B, Lp] -> `token_embedder` -> [B, Lp, d_model]
  concat (image tokens first) -> one T5 encoder (prompt padding masked) -> encoded [B, Ni + Lp, D]
  image-patch tokens of `encoded` (class token dropped) -> grid [B, g, g, D] -> heads
  T5 decoder (teacher forcing on decoder_input_ids) over the encoder memory -> logits [B, Lt, V]

Outputs (float32 when compute is bf16 or float32; float64 in a float64 model):
  multi-head:  {"heatmaps": {h: [B, Ho, Wo] for h in HEATMAP_TYPES},
                "scores":   {s: [B] for s in SCORE_TYPES}, "decoder_logits": [B, Lt, V]}
  augmented:   {"heatmap": [B, Ho, Wo], "score": [B], "decoder_logits": [B, Lt, V]}
  (the augmented variant's output type is written into the prompt by the data layer.)
`predict_heads` returns the same without "decoder_logits" and skips the decoder.
"""

import flax.linen as nn
import jax.numpy as jnp

from rahf_jax import features
from rahf_jax.models import t5_stack
from rahf_jax.models.heatmap_head import HeatmapHead
from rahf_jax.models.score_head import ScoreHead
from rahf_jax.models.vit import ViT


class RAHF(nn.Module):
  """Rich automatic human feedback model; `config` is a `get_model_config(...)` ConfigDict."""

  config: object

  def setup(self):
    c = self.config
    dtype, param_dtype = jnp.dtype(c.dtype), jnp.dtype(c.param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    # Speed options (variants.py); .get keeps configs saved before they existed loadable.
    attention_impl = c.get("attention_impl", "xla")
    v = c.vit
    self.vit = ViT(
      v.width,
      v.depth,
      v.mlp_dim,
      v.num_heads,
      v.patch_size,
      c.image_size,
      cls_token=v.cls_token,
      posemb=v.posemb,
      stem=v.get("stem", "patch"),
      stem_channels=tuple(v.get("stem_channels", ())),
      remat_policy=c.remat_policy,
      layer_norm_epsilon=c.vit.get("layer_norm_epsilon", 1e-6),
      attention_impl=attention_impl,
      **kw,
    )
    self.visual_projection = nn.Dense(
      c.t5.d_model,
      name="visual_projection",
      **kw,
      kernel_init=nn.with_logical_partitioning(
        nn.initializers.lecun_normal(), ("vit_embed", "embed")
      ),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
    )
    self.token_embedder = t5_stack.make_token_embedder(c.t5, param_dtype, dtype)
    self.encoder = t5_stack.T5Encoder(c.t5, c.remat_policy, attention_impl, **kw)
    self.decoder = t5_stack.T5Decoder(
      c.t5, self.token_embedder, c.remat_policy, attention_impl, **kw
    )
    hm = dict(
      pre_convs=tuple(c.heatmap_head.pre_convs),
      up_channels=tuple(c.heatmap_head.up_channels),
      final_convs=tuple(c.heatmap_head.final_convs),
      upsample_impl=c.get("upsample_impl", "transpose"),
      remat=c.get("heatmap_head_remat", "none"),
      init_value=c.heatmap_head.get("init_value", 0.5),  # absent in older configs
      **kw,
    )
    sc = dict(
      convs=tuple(c.score_head.convs),
      dense=tuple(c.score_head.dense),
      pool=c.score_head.get("pool", "flatten"),
      **kw,
    )
    if c.variant == features.MULTI_HEAD:
      self.heatmap_heads = {h: HeatmapHead(**hm) for h in features.HEATMAP_TYPES}
      self.score_heads = {s: ScoreHead(**sc) for s in features.SCORE_TYPES}
    elif c.variant == features.AUGMENTED_PROMPT:
      self.heatmap_head = HeatmapHead(**hm)
      self.score_head = ScoreHead(**sc)
    else:
      raise ValueError(f"model variant {c.variant!r} unknown; use one of {features.VARIANTS}.")

  @property
  def num_cls_tokens(self) -> int:
    return 1 if self.config.vit.cls_token else 0

  def encode(self, image, prompt_ids, deterministic=True):
    """-> (encoded [B, Ni + Lp, D], mask [B, Ni + Lp] bool); image tokens are always visible."""
    img = self.visual_projection(self.vit(image))
    txt = self.token_embedder(prompt_ids)
    x = jnp.concatenate([img.astype(txt.dtype), txt], axis=1)
    mask = jnp.concatenate([jnp.ones(img.shape[:2], bool), prompt_ids != features.PAD_ID], axis=1)
    return self.encoder(x, mask, deterministic), mask

  def feature_map(self, encoded):
    """The encoder's image-patch tokens as a grid [B, g, g, D] (the class token is dropped)."""
    g = self.config.image_size // self.config.vit.patch_size
    n0 = self.num_cls_tokens
    return encoded[:, n0 : n0 + g * g].reshape(encoded.shape[0], g, g, encoded.shape[-1])

  def heads(self, encoded):
    fmap = self.feature_map(encoded)
    if self.config.variant == features.MULTI_HEAD:
      return {
        "heatmaps": {h: m(fmap) for h, m in self.heatmap_heads.items()},
        "scores": {s: m(fmap) for s, m in self.score_heads.items()},
      }
    return {"heatmap": self.heatmap_head(fmap), "score": self.score_head(fmap)}

  def decoder_memory(self, encoded, mask):
    """What the decoder attends to: the whole encoder output, or only its prompt part."""
    if self.config.decoder_memory == "all":
      return encoded, mask
    if self.config.decoder_memory == "prompt":  # the PyTorch reproduction's choice
      n = self.config.num_image_tokens
      return encoded[:, n:], mask[:, n:]
    raise ValueError(
      f"decoder_memory {self.config.decoder_memory!r} unknown; use 'all' or 'prompt'."
    )

  def decode(self, encoded, mask, decoder_input_ids, deterministic=True, decode=False):
    """Decoder logits float32 [B, Lt, V]; `decode=True` steps against the `cache` collection."""
    memory, memory_mask = self.decoder_memory(encoded, mask)
    return self.decoder(decoder_input_ids, memory, memory_mask, deterministic, decode)

  def predict_heads(self, image, prompt_ids, deterministic=True):
    """Heads only (no decoder), for fast heatmap/score inference."""
    encoded, _ = self.encode(image, prompt_ids, deterministic)
    return self.heads(encoded)

  def __call__(self, image, prompt_ids, decoder_input_ids, deterministic=True):
    encoded, mask = self.encode(image, prompt_ids, deterministic)
    out = self.heads(encoded)
    out["decoder_logits"] = self.decode(encoded, mask, decoder_input_ids, deterministic)
    return out
