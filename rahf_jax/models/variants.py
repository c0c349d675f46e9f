"""Model sizes and `get_model_config(size, variant)`.

Sizes:
  test             unit tests: 64x64 images, patch 8 (8x8 grid), 2-layer ViT/T5 at width 64,
                   heatmaps 32x32 (two upsampling blocks), vocab 512.
  tiny             the demo's model, sized for 2 CPU cores: 128x128 images through a conv stem
                   to an 8x8 grid, 4-layer ViT and T5 encoder at width 64, attention-pooled score
                   heads, float32 compute (configs/rahf.py:tiny trains it).
  B16_t5base_384   the paper's backbone sizes: ViT-B/16 at 384 + t5-base, reproduction heads.
  L16_t5base_384   the PyTorch reproduction's: ViT-L/16 at 384 + t5-base, its heads.
Variants (rahf_jax.features): MULTI_HEAD, AUGMENTED_PROMPT.
"""

import ml_collections

from rahf_jax import features
from rahf_jax.models.vit import decode_variant

# t5-base as released (the reproduction's "t5-base"): ReLU MLP, tied logits, vocab 32128.
_T5_BASE = dict(
  d_model=768,
  num_heads=12,
  head_dim=64,
  d_ff=3072,
  num_encoder_layers=12,
  num_decoder_layers=12,
  mlp_activation="relu",
  tie_embeddings=True,
  vocab_size=32128,
)
_T5_FLAVOURS = {
  "t5_base": _T5_BASE,
  # T5.1.1 base: gated-GeLU MLP with d_ff 2048, untied logits.
  "t5_1_1_base": dict(_T5_BASE, d_ff=2048, mlp_activation="gated-gelu", tie_embeddings=False),
  "t5_large": dict(
    _T5_BASE, d_model=1024, num_heads=16, d_ff=4096, num_encoder_layers=24, num_decoder_layers=24
  ),
  "tiny": dict(
    d_model=64,
    num_heads=2,
    head_dim=32,
    d_ff=128,
    num_encoder_layers=2,
    num_decoder_layers=2,
    mlp_activation="relu",
    tie_embeddings=True,
    vocab_size=512,
  ),
}

_REPRO_HEATMAP = dict(pre_convs=(768, 384), up_channels=(768, 384, 384, 192), final_convs=(192,))
_REPRO_SCORE = dict(convs=(768, 384, 192, 96, 48, 12), dense=(512, 128), pool="flatten")

_SMALL_HEATMAP = dict(pre_convs=(64, 32), up_channels=(32, 16), final_convs=(16,))
_SMALL_SCORE = dict(convs=(32, 16, 8), dense=(32, 16), pool="flatten")

# The demo's choices, as measured on its synthetic data (docs/demo.md): a convolutional stem of
# 3x3 stride-2 convs with 32, 64, 64, 64 channels cuts the 128x128 input into an 8x8 grid of
# 16x16 cells (the patch embedding's one 768->64 matrix left the plausibility PLCC at -0.06 to
# -0.02 on 3 seeds, the default stem's 8, 16, 32, 64 channels at 0.28 and 0.34 on 2); 4 ViT and
# 4 T5 encoder layers (matching prompt objects to image regions needs more than 2); score heads
# that pool their features over the grid with learned attention weights (the flatten readout
# memorised the 8K training scenes); float32 compute (XLA:CPU runs bfloat16 dots as float32 plus
# casts); maps that start near the annotated pixels' rarity (about 1% of a map) instead of 0.5.
_TINY_DEMO = dict(
  dtype="float32",
  vit=dict(depth=4, stem="conv", stem_channels=(32, 64, 64, 64)),
  t5=dict(num_encoder_layers=4),
  heatmap_head=dict(init_value=0.01),
)

# size -> (vit variant, image_size, t5 flavour, heatmap head, score head, dropout, other fields)
MODEL_SIZES = {
  "test": ("tiny/8", 64, "tiny", _SMALL_HEATMAP, _SMALL_SCORE, 0.0, {}),
  "tiny": (
    "tiny/16",
    128,
    "tiny",
    _SMALL_HEATMAP,
    dict(_SMALL_SCORE, pool="attention"),
    0.0,
    _TINY_DEMO,
  ),
  "B16_t5base_384": ("B/16", 384, "t5_base", _REPRO_HEATMAP, _REPRO_SCORE, 0.1, {}),
  "L16_t5base_384": ("L/16", 384, "t5_base", _REPRO_HEATMAP, _REPRO_SCORE, 0.1, {}),
}


def get_model_config(size: str, variant: str = features.MULTI_HEAD) -> ml_collections.ConfigDict:
  """The model config of a registered size and a variant (multihead | augmented)."""
  if size not in MODEL_SIZES:
    raise ValueError(f"model size {size!r} unknown; use one of {sorted(MODEL_SIZES)}.")
  if variant not in features.VARIANTS:
    raise ValueError(f"model variant {variant!r} unknown; use one of {features.VARIANTS}.")
  vit_variant, image_size, t5_flavour, heatmap, score, dropout, other = MODEL_SIZES[size]
  c = ml_collections.ConfigDict()
  c.size = size  # registry name
  c.variant = variant  # features.MULTI_HEAD (7 heads) or features.AUGMENTED_PROMPT (1+1+decoder)
  c.image_size = image_size  # input H = W in pixels; the data layer resizes images to this
  c.vit = ml_collections.ConfigDict()
  c.vit.variant = vit_variant  # "<size>/<patch>" as big_vision's decode_variant
  c.vit.update(decode_variant(vit_variant))  # width, depth, mlp_dim, num_heads, patch_size
  c.vit.cls_token = True  # HF/Augreg ViT has one; it is dropped when forming the feature map
  c.vit.posemb = "learn"  # learned position table sized for image_size
  c.vit.stem = "patch"  # "patch" (the ViT's) | "conv" (3x3 stride-2 convs; models/vit.py)
  c.vit.stem_channels = ()  # conv stem widths, one per stride-2 conv; () = doubling up to width
  c.vit.layer_norm_epsilon = 1e-6  # big_vision/Augreg 1e-6; Hugging Face ViT (converted) 1e-12
  c.t5 = ml_collections.ConfigDict(dict(_T5_FLAVOURS[t5_flavour]))
  c.t5.flavour = t5_flavour  # t5_base (ReLU, tied) | t5_1_1_base (gated-GeLU, untied) | ...
  c.t5.relative_attention_num_buckets = 32  # T5 relative position buckets
  c.t5.relative_attention_max_distance = 128  # offsets beyond this share the last bucket
  c.t5.dropout_rate = dropout  # T5 dropout (t5-base's HF config uses 0.1); ViT has none
  c.vocab_size = c.t5.get_ref("vocab_size")  # SentencePiece vocabulary size (demo: 512)
  c.heatmap_head = ml_collections.ConfigDict(heatmap)  # conv widths before/in/after upsampling
  # The maps' value at initialisation (the output conv's bias is its logit); 0.5 = a zero bias.
  c.heatmap_head.init_value = 0.5
  # Score heads: conv widths, pool ("flatten" | "mean" | "attention"), dense widths (then 1).
  c.score_head = ml_collections.ConfigDict(score)
  # Derived fields are references: overriding image_size or vit.patch_size updates them.
  grid = c.get_ref("image_size") // c.vit.get_ref("patch_size")
  c.num_image_tokens = grid * grid + (1 if c.vit.cls_token else 0)  # encoder's image positions
  c.heatmap_size = grid * 2 ** len(heatmap["up_channels"])  # output Ho = Wo of heatmaps
  c.decoder_memory = "all"  # decoder attends to 'all' encoder tokens or only the 'prompt' part
  c.dtype = "bfloat16"  # compute dtype (activations, matmuls); heads are returned in float32
  c.param_dtype = "float32"  # parameter (and optimizer state) dtype
  c.remat_policy = "none"  # per-block rematerialisation: none | full | dots | dots_no_batch
  # Speed options: none changes a parameter's name or shape, so checkpoints load under any of them.
  # Attention kernel of every ViT/T5 attention: "xla" (XLA's) | "cudnn" (cuDNN flash attention on
  # GPUs, the T5 relative-position bias and masks as its bias, odd lengths padded to even; falls
  # back to "xla" with a logged warning off GPUs or when compute is not bfloat16/float16).
  c.attention_impl = "xla"
  # Rematerialisation of each heatmap-head upsampling block (and of the final convs): none | full |
  # dots | dots_no_batch; composes with remat_policy, which covers only the ViT/T5 blocks.
  c.heatmap_head_remat = "none"
  # Heatmap-head upsampling: "transpose" (stride-2 transposed conv) | "subpixel" (the same deconv
  # kernel, rearranged, as a stride-1 2x2 conv to 4x channels + depth-to-space; same function).
  c.upsample_impl = "transpose"
  c.update(other)
  return c
