"""The PyTorch RAHF reproduction's state dict (`rahf_model.pt`) -> our RAHF params and config.

The checkpoint is `torch.save(model.state_dict())` of the reproduction's `RAHF` module:
  vit.*                       transformers ViTModel (the pooler is unused)   -> hf_weights
  t5.*                        transformers T5ForConditionalGeneration         -> hf_weights
  visual_token_projection.{weight [D, Dv], bias}  -> visual_projection/{kernel [Dv, D], bias}
  heatmap_predictor.<type>.*  multi-head (heatmap_predictor.* without <type>: augmented prompt)
  score_predictor.<type>.*

Heatmap head (`HeatmapPredictor`) -> heatmap_heads_<type>/ (or heatmap_head/):
  conv_layers.{0,3}            Conv2d [O, I, 3, 3]   -> pre_conv_{0,1}/kernel [3, 3, I, O] + bias
  conv_layers.{2,5}.scale      [C, 1, 1]             -> pre_norm_{0,1}/scale [C]
  deconv_layers.j.0            ConvTranspose2d [I, O, 3, 3] -> up_j_deconv/kernel [3, 3, O, I]
                               (k=3, stride 2, padding 1, output_padding 1; heatmap_head.py)
  deconv_layers.j.1.scale                            -> up_j_norm/scale
  conv_layers2.j.{0,3}                               -> up_j_res_conv_{0,1}
  conv_layers2.j.{1,4}.scale                         -> up_j_res_norm_{0,1}/scale
  last_conv1, last_conv2                             -> final_conv_0, out_conv
Score head (`ScorePredictor`) -> score_heads_<type>/ (or score_head/):
  conv_layers.{0,3,...,15}     six convs             -> conv_{0..5}
  conv_layers.{1,4,...,16}.scale                     -> norm_{0..5}/scale
  linear_layers.{0,2,4}        Linear                -> dense_{0,1,2}
  linear_layers.0 reads the conv output flattened channel-first, index c*g*g + h*g + w; ours
  flattens (h, w, c), index (h*g + w)*C + c: its rows are permuted accordingly.

`model_overrides(sd)` reads every size the state dict fixes (ViT width/depth/MLP/patch, image
size from the position table, T5 widths, layers, heads, MLP type, vocabulary; head channels) and
adds the reproduction's forward-pass choices: `decoder_memory="prompt"` (its decoder attends to
the prompt part of the encoder output only) and Hugging Face ViT's LayerNorm epsilon 1e-12.
"""

import re
from collections.abc import Mapping

import numpy as np

from rahf_jax import features
from rahf_jax.models import hf_weights
from rahf_jax.models.vit import _VIT_SIZES

HEATMAP_PREFIX, SCORE_PREFIX = "heatmap_predictor.", "score_predictor."


def _conv(w: np.ndarray) -> np.ndarray:
  """Conv2d [O, I, kh, kw] -> HWIO."""
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _deconv(w: np.ndarray) -> np.ndarray:
  """ConvTranspose2d [I, O, kh, kw] -> [kh, kw, O, I] (flax transpose_kernel layout)."""
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _norm(s: np.ndarray) -> np.ndarray:
  return s.reshape(-1)


def _head_names(sd: Mapping[str, np.ndarray], prefix: str) -> list[str]:
  """The head types under `prefix` ([""] for the augmented variant's single head)."""
  names = {k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)}
  known = set(features.HEATMAP_TYPES) | set(features.SCORE_TYPES)
  return sorted(names) if names <= known else [""]


def _heatmap_entries(sd: Mapping[str, np.ndarray], p: str) -> dict:
  out = {}
  pre = {0: "pre_conv_0", 3: "pre_conv_1", 2: "pre_norm_0", 5: "pre_norm_1"}
  for i, name in pre.items():
    if "norm" in name:
      out[f"{name}/scale"] = _norm(sd[f"{p}conv_layers.{i}.scale"])
    else:
      out[f"{name}/kernel"] = _conv(sd[f"{p}conv_layers.{i}.weight"])
      out[f"{name}/bias"] = sd[f"{p}conv_layers.{i}.bias"]
  j = 0
  while f"{p}deconv_layers.{j}.0.weight" in sd:
    out[f"up_{j}_deconv/kernel"] = _deconv(sd[f"{p}deconv_layers.{j}.0.weight"])
    out[f"up_{j}_deconv/bias"] = sd[f"{p}deconv_layers.{j}.0.bias"]
    out[f"up_{j}_norm/scale"] = _norm(sd[f"{p}deconv_layers.{j}.1.scale"])
    for k, i in enumerate((0, 3)):
      out[f"up_{j}_res_conv_{k}/kernel"] = _conv(sd[f"{p}conv_layers2.{j}.{i}.weight"])
      out[f"up_{j}_res_conv_{k}/bias"] = sd[f"{p}conv_layers2.{j}.{i}.bias"]
      out[f"up_{j}_res_norm_{k}/scale"] = _norm(sd[f"{p}conv_layers2.{j}.{i + 1}.scale"])
    j += 1
  for src, dst in (("last_conv1", "final_conv_0"), ("last_conv2", "out_conv")):
    out[f"{dst}/kernel"] = _conv(sd[f"{p}{src}.weight"])
    out[f"{dst}/bias"] = sd[f"{p}{src}.bias"]
  return out


def _indices(sd: Mapping[str, np.ndarray], prefix: str, seq: str) -> list[int]:
  """Sorted indices i of the `<prefix><seq>.<i>.weight` keys (the layers of an nn.Sequential)."""
  pattern = re.compile(re.escape(f"{prefix}{seq}.") + r"(\d+)\.weight")
  return sorted(int(m.group(1)) for k in sd if (m := pattern.fullmatch(k)))


def _score_entries(sd: Mapping[str, np.ndarray], p: str) -> dict:
  out = {}
  convs = _indices(sd, p, "conv_layers")
  for n, i in enumerate(convs):
    out[f"conv_{n}/kernel"] = _conv(sd[f"{p}conv_layers.{i}.weight"])
    out[f"conv_{n}/bias"] = sd[f"{p}conv_layers.{i}.bias"]
    out[f"norm_{n}/scale"] = _norm(sd[f"{p}conv_layers.{i + 1}.scale"])
  channels = sd[f"{p}conv_layers.{convs[-1]}.weight"].shape[0]
  linears = _indices(sd, p, "linear_layers")
  for n, i in enumerate(linears):
    kernel = sd[f"{p}linear_layers.{i}.weight"].T  # [in, out]
    if n == 0:  # rows (c, h, w) -> (h, w, c)
      grid = int(round(np.sqrt(kernel.shape[0] // channels)))
      kernel = kernel.reshape(channels, grid, grid, -1).transpose(1, 2, 0, 3)
      kernel = kernel.reshape(grid * grid * channels, -1)
    out[f"dense_{n}/kernel"] = np.ascontiguousarray(kernel)
    out[f"dense_{n}/bias"] = sd[f"{p}linear_layers.{i}.bias"]
  return out


def rahf_entries(sd: Mapping[str, np.ndarray], model_config) -> dict:
  """Our whole params tree's entries ('/'-joined paths) from the reproduction's state dict."""
  c = model_config
  out = {f"vit/{k}": v for k, v in hf_weights.vit_entries(sd, c.vit.num_heads, "vit.").items()}
  out.update(hf_weights.t5_entries(sd, c.t5.tie_embeddings, "t5."))
  out["visual_projection/kernel"] = hf_weights._linear(sd["visual_token_projection.weight"])
  out["visual_projection/bias"] = sd["visual_token_projection.bias"]
  for prefix, ours, fn in (
    (HEATMAP_PREFIX, "heatmap_head", _heatmap_entries),
    (SCORE_PREFIX, "score_head", _score_entries),
  ):
    for name in _head_names(sd, prefix):
      scope = f"{ours}s_{name}" if name else ours
      p = f"{prefix}{name}." if name else prefix
      out.update({f"{scope}/{k}": v for k, v in fn(sd, p).items()})
  return out


def _count(entries: Mapping[str, np.ndarray], layer: str) -> int:
  return sum(bool(re.fullmatch(rf"{layer}_\d+/kernel", k)) for k in entries)


def _vit_heads(width: int, mlp_dim: int) -> int:
  for w, _, m, heads in _VIT_SIZES.values():
    if (w, m) == (width, mlp_dim):
      return heads
  raise ValueError(
    f"ViT of width {width} and MLP {mlp_dim} is not a standard size; its head count cannot be "
    "read from the weights: pass it (--vit_num_heads)."
  )


def variant_of(sd: Mapping[str, np.ndarray]) -> str:
  """MULTI_HEAD when the heads are keyed by output type, else AUGMENTED_PROMPT."""
  return features.MULTI_HEAD if _head_names(sd, SCORE_PREFIX) != [""] else features.AUGMENTED_PROMPT


def model_overrides(sd: Mapping[str, np.ndarray], vit_num_heads: int | None = None) -> dict:
  """Model config fields that make our RAHF compute the reproduction's forward (module doc)."""
  missing = [k for k in ("vit.embeddings.position_embeddings", "t5.shared.weight",
                         "visual_token_projection.weight") if k not in sd]  # fmt: skip
  if missing:
    raise ValueError(
      f"state dict has no {missing[0]!r}: not a checkpoint of the PyTorch RAHF reproduction "
      "(expected keys under vit., t5., visual_token_projection., heatmap_predictor., "
      "score_predictor.)."
    )
  patch = sd["vit.embeddings.patch_embeddings.projection.weight"]
  width, patch_size = patch.shape[0], patch.shape[-1]
  grid = int(round(np.sqrt(sd["vit.embeddings.position_embeddings"].shape[1] - 1)))
  depth = len({k.split(".")[3] for k in sd if k.startswith("vit.encoder.layer.")})
  mlp_dim = sd["vit.encoder.layer.0.intermediate.dense.weight"].shape[0]
  rel = sd["t5.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
  vocab, d_model = sd["t5.shared.weight"].shape
  t5_heads = rel.shape[1]
  gated = "t5.encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in sd
  d_ff = sd[f"t5.encoder.block.0.layer.1.DenseReluDense.{'wi_0' if gated else 'wi'}.weight"].shape[
    0
  ]
  lm_head = sd.get("t5.lm_head.weight")
  tied = lm_head is None or np.array_equal(lm_head, sd["t5.shared.weight"])

  def layers(stack):
    return len({k.split(".")[3] for k in sd if k.startswith(f"t5.{stack}.block.")})

  hp = f"{HEATMAP_PREFIX}{n}." if (n := _head_names(sd, HEATMAP_PREFIX)[0]) else HEATMAP_PREFIX
  sp = f"{SCORE_PREFIX}{n}." if (n := _head_names(sd, SCORE_PREFIX)[0]) else SCORE_PREFIX
  heat = _heatmap_entries(sd, hp)
  score = _score_entries(sd, sp)
  num_up = len([k for k in heat if k.endswith("_deconv/kernel")])
  return {
    "image_size": grid * patch_size,
    "vit": {
      "width": width,
      "depth": depth,
      "mlp_dim": mlp_dim,
      "num_heads": vit_num_heads or _vit_heads(width, mlp_dim),
      "patch_size": patch_size,
      "cls_token": True,
      "layer_norm_epsilon": 1e-12,
    },
    "t5": {
      "d_model": d_model,
      "num_heads": t5_heads,
      "head_dim": sd["t5.encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // t5_heads,
      "d_ff": d_ff,
      "num_encoder_layers": layers("encoder"),
      "num_decoder_layers": layers("decoder"),
      "mlp_activation": "gated-gelu" if gated else "relu",
      "tie_embeddings": bool(tied),
      "vocab_size": vocab,
    },
    "heatmap_head": {
      "pre_convs": [heat[f"pre_conv_{i}/kernel"].shape[-1] for i in range(2)],
      "up_channels": [heat[f"up_{j}_deconv/kernel"].shape[-2] for j in range(num_up)],
      "final_convs": [heat["final_conv_0/kernel"].shape[-1]],
    },
    "score_head": {
      "convs": [score[f"conv_{i}/kernel"].shape[-1] for i in range(_count(score, "conv"))],
      "dense": [score[f"dense_{i}/kernel"].shape[-1] for i in range(_count(score, "dense") - 1)],
      "pool": "flatten",
    },
    "heatmap_size": grid * 2**num_up,
    "decoder_memory": "prompt",
  }  # fmt: skip
