"""A PyTorch RAHF with the reproduction's architecture and state-dict layout, for parity and speed.

Built on transformers' `ViTModel` and `T5ForConditionalGeneration` from configs (random init, no
hub access), plus heatmap/score heads written from the reproduction's documented layout:
  heatmap: conv(pre[0]) relu norm, conv(pre[1]) relu norm; per up block: ConvTranspose2d(k3,
           s2, p1, op1) norm relu, then conv norm relu conv norm, added back, relu; conv relu,
           conv to 1 channel, sigmoid.  (norm: x * rsqrt(mean_c(x^2) + 1e-8) * scale[C, 1, 1])
  score:   convs each + norm + relu, flatten channel-first, Linear/relu stack, Linear to 1, sigmoid.
Forward: ViT tokens (class token included) -> Linear to d_model -> concatenated before the
prompt's token embeddings -> T5 encoder without an attention mask; the heads read encoder
positions 1..g*g as a channel-first map; the decoder attends to the prompt part only.

Used by tests/models/test_convert_reproduction.py (parity of our converted model) and by
bench/bench_torch_baseline.py (the same-run speed baseline). Needs torch and transformers.
"""

import os

os.environ.setdefault("USE_TF", "0")  # transformers: never import TensorFlow here

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from transformers import T5Config, T5ForConditionalGeneration, ViTConfig, ViTModel  # noqa: E402

SCORE_TYPES = ("plausibility", "alignment", "aesthetics", "overall")
HEATMAP_TYPES = ("implausibility", "misalignment")

# The reproduction's sizes: ViT-L/16 at 384 + t5-base, and its head channels.
L16_VIT = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
               intermediate_size=4096, image_size=384, patch_size=16)  # fmt: skip
B16_VIT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072, image_size=384, patch_size=16)  # fmt: skip
T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
               feed_forward_proj="relu", tie_word_embeddings=True)  # fmt: skip
REPRO_HEATMAP = dict(pre=(768, 384), up=(768, 384, 384, 192), final=192)


class ChannelNorm(nn.Module):
  def __init__(self, channels):
    super().__init__()
    self.scale = nn.Parameter(torch.ones(channels, 1, 1))

  def forward(self, x):
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt() * self.scale


def _conv(i, o):
  return nn.Conv2d(i, o, kernel_size=3, stride=1, padding=1)


class HeatmapHead(nn.Module):
  def __init__(self, d_model, pre=(768, 384), up=(768, 384, 384, 192), final=192):
    super().__init__()
    self.conv_layers = nn.Sequential(
      _conv(d_model, pre[0]), nn.ReLU(), ChannelNorm(pre[0]),
      _conv(pre[0], pre[1]), nn.ReLU(), ChannelNorm(pre[1]),
    )  # fmt: skip
    self.deconv_layers, self.conv_layers2 = nn.ModuleList(), nn.ModuleList()
    c = pre[1]
    for o in up:
      self.deconv_layers.append(nn.Sequential(
        nn.ConvTranspose2d(c, o, kernel_size=3, stride=2, padding=1, output_padding=1),
        ChannelNorm(o), nn.ReLU(),
      ))  # fmt: skip
      self.conv_layers2.append(nn.Sequential(
        _conv(o, o), ChannelNorm(o), nn.ReLU(), _conv(o, o), ChannelNorm(o),
      ))  # fmt: skip
      c = o
    self.last_conv1 = _conv(c, final)
    self.last_conv2 = _conv(final, 1)

  def forward(self, x):
    x = self.conv_layers(x)
    for deconv, convs in zip(self.deconv_layers, self.conv_layers2, strict=True):
      x = deconv(x)
      x = F.relu(convs(x) + x)
    return torch.sigmoid(self.last_conv2(F.relu(self.last_conv1(x)))).squeeze(1)


class ScoreHead(nn.Module):
  def __init__(self, d_model, num_patches, divisors=(1, 2, 4, 8, 16, 64), dense=(512, 128)):
    super().__init__()
    layers, c = [], d_model
    for d in divisors:
      layers += [_conv(c, d_model // d), ChannelNorm(d_model // d), nn.ReLU()]
      c = d_model // d
    self.conv_layers = nn.Sequential(*layers)
    lin, n = [], c * num_patches
    for f in dense:
      lin += [nn.Linear(n, f), nn.ReLU()]
      n = f
    self.linear_layers = nn.Sequential(*lin, nn.Linear(n, 1), nn.Sigmoid())

  def forward(self, x):
    return self.linear_layers(self.conv_layers(x).flatten(1)).flatten()


class TorchRAHF(nn.Module):
  """Multi-head (or single-head) RAHF; `vit`/`t5` are transformers config kwargs."""

  def __init__(self, vit: dict, t5: dict, heatmap: dict | None = None, multi_heads=True,
               score_divisors=(1, 2, 4, 8, 16, 64), score_dense=(512, 128)):  # fmt: skip
    super().__init__()
    self.vit = ViTModel(ViTConfig(**vit))
    self.t5 = T5ForConditionalGeneration(T5Config(decoder_start_token_id=0, **t5))
    self.visual_token_projection = nn.Linear(vit["hidden_size"], t5["d_model"])
    self.grid = vit["image_size"] // vit["patch_size"]
    d = t5["d_model"]
    heat = lambda: HeatmapHead(d, **(heatmap or REPRO_HEATMAP))  # noqa: E731
    score = lambda: ScoreHead(d, self.grid**2, score_divisors, score_dense)  # noqa: E731
    if multi_heads:
      self.heatmap_predictor = nn.ModuleDict({h: heat() for h in HEATMAP_TYPES})
      self.score_predictor = nn.ModuleDict({s: score() for s in SCORE_TYPES})
    else:
      self.heatmap_predictor, self.score_predictor = heat(), score()

  def encode(self, pixel_values, input_ids):
    """-> (encoder output [B, Ni + Lp, D], number of image tokens Ni)."""
    tokens = self.visual_token_projection(self.vit(pixel_values=pixel_values).last_hidden_state)
    text = self.t5.encoder.embed_tokens(input_ids)
    out = self.t5.encoder(inputs_embeds=torch.cat([tokens, text], dim=1)).last_hidden_state
    return out, tokens.shape[1]

  def heads(self, encoded, num_image_tokens):
    b = encoded.shape[0]
    fmap = encoded[:, 1:num_image_tokens].transpose(1, 2).reshape(b, -1, self.grid, self.grid)
    if isinstance(self.heatmap_predictor, nn.ModuleDict):
      return ({h: m(fmap) for h, m in self.heatmap_predictor.items()},
              {s: m(fmap) for s, m in self.score_predictor.items()})  # fmt: skip
    return self.heatmap_predictor(fmap), self.score_predictor(fmap)

  def forward(self, pixel_values, input_ids, decoder_input_ids=None):
    """Heatmaps, scores and (given decoder_input_ids) the decoder logits."""
    encoded, n = self.encode(pixel_values, input_ids)
    heatmaps, scores = self.heads(encoded, n)
    logits = None
    if decoder_input_ids is not None:
      logits = self.t5(
        encoder_outputs=(encoded[:, n:],), decoder_input_ids=decoder_input_ids
      ).logits
    return heatmaps, scores, logits

  @torch.no_grad()
  def generate(self, pixel_values, input_ids, max_new_tokens):
    """Greedy ids (without the start token), as the reproduction's t5.generate call."""
    encoded, n = self.encode(pixel_values, input_ids)
    from transformers.modeling_outputs import BaseModelOutput  # noqa: PLC0415

    out = self.t5.generate(
      encoder_outputs=BaseModelOutput(last_hidden_state=encoded[:, n:]),
      max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
    )  # fmt: skip
    return out[:, 1:]
