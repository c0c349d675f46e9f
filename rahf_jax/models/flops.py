"""Analytic FLOP counts of the RAHF network (matmuls and convolutions; 2 FLOPs per multiply-add).

Conventions follow PyTorch's FLOP counter (the reference's 5.8 TFLOP/example): a transposed conv
costs its useful multiply-adds, 2 * H_in * W_in * k * k * C_in * C_out (not the zeros of the
dilated input), attention costs its two batched matmuls, elementwise work (norms, activations,
softmax) is not counted, and a training step is 3x the forward (backward = 2x forward).
With `upsample_impl="subpixel"` the heatmap heads' upsampling runs as a 2x2 conv to 4x the
channels, 16/9 of the transposed conv's multiply-adds; that is counted by default (see
`forward_flops_breakdown`).

XLA's cost analysis differs from these counts in two known ways: it leaves out the taps that
fall on a convolution's zero padding (a 3x3 'SAME' conv on an n x n map has (3n - 2)**2 valid
taps per channel pair, not 9 n**2: -5.5% at the 24 x 24 grid, -0.3% at 384 x 384), and it adds
the elementwise work (bias adds, norms, activations). For L16 the two nearly cancel (within 1%).
"""

from rahf_jax import features
from rahf_jax.models.vit import stem_widths


def _conv(h, w, cin, cout, k=3):
  return 2 * h * w * k * k * cin * cout


def upsample_flops(s: int, cin: int, cout: int, upsample_impl: str = "transpose") -> int:
  """One stride-2 3x3 upsampling of an s x s x cin map to 2s x 2s x cout, as the impl runs it.

  transpose: the transposed conv's useful multiply-adds, s * s input positions x 9 taps.
  subpixel:  the stride-1 2x2 conv to 4 * cout channels it is rewritten as (heatmap_head.py's
             SubpixelDeconv): s * s positions x 4 taps x 4 * cout, i.e. 16/9 of the above (the
             extra products multiply the zeros of the rearranged kernel, but they are executed).
  """
  if upsample_impl == "transpose":
    return _conv(s, s, cin, cout)
  if upsample_impl == "subpixel":
    return _conv(s, s, cin, 4 * cout, k=2)
  raise ValueError(f"upsample_impl {upsample_impl!r} unknown; use 'transpose' or 'subpixel'.")


def vit_stem_flops(
  image_size: int, patch_size: int, width: int, stem: str = "patch", channels=()
) -> int:
  """The ViT's patch embedding: one strided p x p conv ("patch"), or the conv stem's 3x3
  stride-2 convs and its 1x1 embedding ("conv", models/vit.py)."""
  g = image_size // patch_size
  if stem == "patch":
    return 2 * g * g * patch_size**2 * 3 * width
  f, c, s = 0, 3, image_size
  for w in stem_widths(patch_size, width, channels):
    s = -(-s // 2)  # SAME padding, stride 2
    f, c = f + _conv(s, s, c, w), w
  return f + _conv(s, s, c, width, k=1)


def heatmap_head_flops(grid: int, d_in: int, head, upsample_impl: str = "transpose") -> int:
  """One heatmap head on a grid x grid x d_in feature map (upsampling as `upsample_impl` runs)."""
  f, c, s = 0, d_in, grid
  for w in head.pre_convs:
    f, c = f + _conv(s, s, c, w), w
  for w in head.up_channels:
    f += upsample_flops(s, c, w, upsample_impl)
    s, c = 2 * s, w
    f += 2 * _conv(s, s, c, c)
  for w in head.final_convs:
    f, c = f + _conv(s, s, c, w), w
  return f + _conv(s, s, c, 1)


def score_head_flops(grid: int, d_in: int, head) -> int:
  """One score head on a grid x grid x d_in feature map."""
  f, c = 0, d_in
  for w in head.convs:
    f, c = f + _conv(grid, grid, c, w), w
  pool = head.get("pool", "flatten")
  fin = grid * grid * c if pool == "flatten" else c
  if pool == "attention":  # the 1x1 scoring conv and the weighted sum over the grid
    f += _conv(grid, grid, c, 1, k=1) + 2 * grid * grid * c
  for w in list(head.dense) + [1]:
    f, fin = f + 2 * fin * w, w
  return f


def forward_flops_breakdown(
  model_config, prompt_len: int, target_len: int, upsample_impl: str | None = None
) -> dict[str, int]:
  """Forward FLOPs per example by component: vit, projection, encoder, decoder, heads.

  `upsample_impl`: None counts the heatmap heads' upsampling as the config's `upsample_impl`
  runs it (what XLA's cost analysis counts); "transpose" counts the transposed conv's useful
  work whatever runs (the model FLOPs behind an MFU that compares the two impls fairly).
  """
  c, v, t = model_config, model_config.vit, model_config.t5
  if upsample_impl is None:
    upsample_impl = c.get("upsample_impl", "transpose")
  g = c.image_size // v.patch_size
  n_img = g * g + (1 if v.cls_token else 0)
  d = v.width
  vit = vit_stem_flops(
    c.image_size, v.patch_size, d, v.get("stem", "patch"), v.get("stem_channels", ())
  )
  vit += v.depth * (2 * n_img * d * 4 * d + 4 * n_img * n_img * d + 4 * n_img * d * v.mlp_dim)
  proj = 2 * n_img * d * t.d_model
  inner = t.num_heads * t.head_dim
  mlp_mats = 3 if t.mlp_activation == "gated-gelu" else 2
  length = n_img + prompt_len
  enc = t.num_encoder_layers * (
    8 * length * t.d_model * inner
    + 4 * length * length * inner
    + 2 * mlp_mats * length * t.d_model * t.d_ff
  )
  mem = length if c.decoder_memory == "all" else prompt_len
  lt = target_len
  dec = t.num_decoder_layers * (
    8 * lt * t.d_model * inner
    + 4 * lt * lt * inner  # self-attention
    + 4 * lt * t.d_model * inner
    + 4 * mem * t.d_model * inner
    + 4 * lt * mem * inner  # cross
    + 2 * mlp_mats * lt * t.d_model * t.d_ff
  )
  dec += 2 * lt * t.d_model * t.vocab_size  # logits
  n_hm, n_sc = (
    (len(features.HEATMAP_TYPES), len(features.SCORE_TYPES))
    if (c.variant == features.MULTI_HEAD)
    else (1, 1)
  )
  return {
    "vit": vit,
    "projection": proj,
    "encoder": enc,
    "decoder": dec,
    "heatmap_heads": n_hm * heatmap_head_flops(g, t.d_model, c.heatmap_head, upsample_impl),
    "score_heads": n_sc * score_head_flops(g, t.d_model, c.score_head),
  }


def train_flops_per_example(
  model_config, prompt_len: int, target_len: int, upsample_impl: str | None = None
) -> int:
  """FLOPs of one training step per example (3x the forward; `upsample_impl` as above).

  For the augmented-prompt variant this is one (image, prompt, output type) example: one encoder
  pass, both heads and the decoder (the loss masks the heads that do not apply).
  """
  breakdown = forward_flops_breakdown(model_config, prompt_len, target_len, upsample_impl)
  return 3 * sum(breakdown.values())
