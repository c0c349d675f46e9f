"""Hugging Face (PyTorch) ViT and T5 state dicts -> our parameter paths, one line per rule.

Each function maps a state dict ({key: np.ndarray}, see state_dicts.py) to entries named by our
"/"-joined parameter paths, for `weights.fill_params` to check and place. PyTorch `Linear`
weights are [out, in]; ours are [in, out] (hence `.T`), and our attention kernels are N-D.

`vit_entries(sd)` (transformers `ViTModel`; a `vit.` prefix, as in ViTForImageClassification or
the RAHF reproduction, is passed as `prefix`), relative to params["vit"]:
  embeddings.cls_token [1, 1, D]                          -> cls
  embeddings.position_embeddings [1, 1 + N, D]           -> Transformer/posembed_input/pos_embedding
  embeddings.patch_embeddings.projection.weight [D,3,p,p] -> embedding/kernel [p, p, 3, D]
  encoder.layer.i.layernorm_before / layernorm_after      -> encoderblock_i/LayerNorm_0 / _1
  encoder.layer.i.attention.attention.{query,key,value}   -> .../MultiHeadDotProductAttention_0/
      weight [H*k, D] -> kernel [D, H, k]; bias [H*k] -> [H, k]       {query,key,value}
  encoder.layer.i.attention.output.dense [D, H*k]         -> .../out/kernel [H, k, D]
  encoder.layer.i.intermediate.dense / output.dense       -> .../MlpBlock_0/Dense_0 / Dense_1
  layernorm                                               -> Transformer/encoder_norm
  pooler.*, classifier.*                                   -> dropped (unused by RAHF)
  LayerNorm weight -> scale. HF's LayerNorm epsilon is 1e-12 (ours defaults to 1e-6: set
  model.vit.layer_norm_epsilon=1e-12 for exact parity); both use exact (erf) GELU.

`t5_entries(sd)` (transformers `T5ForConditionalGeneration` / `T5Model`), at the top level:
  shared.weight [V, D]                        -> token_embedder/embedding (encoder./decoder.
                                                 embed_tokens are copies of it and are checked)
  {encoder,decoder}.block.i.layer.0.SelfAttention.{q,k,v} [H*k, D] -> <stack>/layers_i/
                                                 {attention|self_attention}/{query,key,value}
                                                 /kernel [D, H, k];  .o [D, H*k] -> out [H, k, D]
  {encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias [buckets, H]
                                              -> <stack>/relpos_bias/rel_embedding [H, buckets]
                                                 (HF keeps it in layer 0 only; ours is per stack)
  encoder.block.i.layer.0.layer_norm           -> encoder/layers_i/pre_attention_layer_norm
  encoder.block.i.layer.1.{DenseReluDense,layer_norm} -> encoder/layers_i/{mlp,pre_mlp_layer_norm}
  decoder.block.i.layer.0.layer_norm           -> decoder/layers_i/pre_self_attention_layer_norm
  decoder.block.i.layer.1.EncDecAttention      -> decoder/layers_i/encoder_decoder_attention
  decoder.block.i.layer.1.layer_norm           -> decoder/layers_i/pre_cross_attention_layer_norm
  decoder.block.i.layer.2.{DenseReluDense,layer_norm} -> decoder/layers_i/{mlp,pre_mlp_layer_norm}
  DenseReluDense.wi / wi_0 / wi_1 [F, D]       -> mlp/wi / wi_0 / wi_1 kernel [D, F]; wo -> [F, D]
  {encoder,decoder}.final_layer_norm           -> encoder/encoder_norm, decoder/decoder_norm
  lm_head.weight [V, D]: tied (t5-base) -> must equal shared.weight (our tied logits rescale by
                 d_model**-0.5 as HF does); untied (T5.1.1) -> decoder/logits_dense/kernel [D, V]
"""

import re
from collections.abc import Mapping

import numpy as np

_VIT_LAYER = {
  "layernorm_before.weight": "LayerNorm_0/scale",
  "layernorm_before.bias": "LayerNorm_0/bias",
  "layernorm_after.weight": "LayerNorm_1/scale",
  "layernorm_after.bias": "LayerNorm_1/bias",
  "intermediate.dense.weight": "MlpBlock_0/Dense_0/kernel",
  "intermediate.dense.bias": "MlpBlock_0/Dense_0/bias",
  "output.dense.weight": "MlpBlock_0/Dense_1/kernel",
  "output.dense.bias": "MlpBlock_0/Dense_1/bias",
}
_VIT_IGNORED = re.compile(r"^(pooler|classifier)\.")
_ATTN = "MultiHeadDotProductAttention_0"


def _linear(w: np.ndarray) -> np.ndarray:
  """PyTorch Linear weight [out, in] -> our kernel [in, out]."""
  return np.ascontiguousarray(w.T)


def _qkv(w: np.ndarray, num_heads: int) -> np.ndarray:
  """Linear [H*k, D] -> [D, H, k]."""
  return _linear(w).reshape(w.shape[1], num_heads, -1)


def _out(w: np.ndarray, num_heads: int) -> np.ndarray:
  """Linear [D, H*k] -> [H, k, D]."""
  return _linear(w).reshape(num_heads, -1, w.shape[0])


def strip_prefix(sd: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
  """The entries under `prefix` (e.g. "vit."), with the prefix removed."""
  return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def vit_entries(sd: Mapping[str, np.ndarray], num_heads: int, prefix: str = "") -> dict:
  """Our ViT entries (relative to params["vit"]) from an HF ViTModel state dict (module doc)."""
  sd = strip_prefix(sd, prefix) if prefix else dict(sd)
  out = {}
  for key, value in sd.items():
    if _VIT_IGNORED.match(key):
      continue
    if key == "embeddings.cls_token":
      out["cls"] = value
    elif key == "embeddings.position_embeddings":
      out["Transformer/posembed_input/pos_embedding"] = value
    elif key == "embeddings.patch_embeddings.projection.weight":
      out["embedding/kernel"] = np.ascontiguousarray(value.transpose(2, 3, 1, 0))
    elif key == "embeddings.patch_embeddings.projection.bias":
      out["embedding/bias"] = value
    elif key in ("layernorm.weight", "layernorm.bias"):
      out[f"Transformer/encoder_norm/{'scale' if key.endswith('weight') else 'bias'}"] = value
    else:
      m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", key)
      if not m:
        raise ValueError(f"ViT state dict: unexpected key {prefix + key!r}; is it an HF ViTModel?")
      block, rest = f"Transformer/encoderblock_{m.group(1)}", m.group(2)
      a = re.fullmatch(r"attention\.attention\.(query|key|value)\.(weight|bias)", rest)
      if a:
        name = f"{block}/{_ATTN}/{a.group(1)}"
        if a.group(2) == "weight":
          out[f"{name}/kernel"] = _qkv(value, num_heads)
        else:
          out[f"{name}/bias"] = value.reshape(num_heads, -1)
      elif rest == "attention.output.dense.weight":
        out[f"{block}/{_ATTN}/out/kernel"] = _out(value, num_heads)
      elif rest == "attention.output.dense.bias":
        out[f"{block}/{_ATTN}/out/bias"] = value
      elif rest in _VIT_LAYER:
        is_kernel = _VIT_LAYER[rest].endswith("kernel")
        out[f"{block}/{_VIT_LAYER[rest]}"] = _linear(value) if is_kernel else value
      else:
        raise ValueError(f"ViT state dict: unexpected key {prefix + key!r}; is it an HF ViTModel?")
  return out


# (HF stack, HF sub-layer index, HF module) -> our module, per stack.
_T5_SUBLAYERS = {
  ("encoder", 0, "SelfAttention"): "attention",
  ("encoder", 0, "layer_norm"): "pre_attention_layer_norm",
  ("encoder", 1, "DenseReluDense"): "mlp",
  ("encoder", 1, "layer_norm"): "pre_mlp_layer_norm",
  ("decoder", 0, "SelfAttention"): "self_attention",
  ("decoder", 0, "layer_norm"): "pre_self_attention_layer_norm",
  ("decoder", 1, "EncDecAttention"): "encoder_decoder_attention",
  ("decoder", 1, "layer_norm"): "pre_cross_attention_layer_norm",
  ("decoder", 2, "DenseReluDense"): "mlp",
  ("decoder", 2, "layer_norm"): "pre_mlp_layer_norm",
}
_T5_BLOCK_KEY = re.compile(
  r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d)\.(\w+)\.(?:(\w+)\.)?weight"
)
_T5_ATTN = {"q": "query", "k": "key", "v": "value"}
_T5_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")


def t5_entries(sd: Mapping[str, np.ndarray], tie_embeddings: bool, prefix: str = "") -> dict:
  """Our token_embedder/encoder/decoder entries from an HF T5 state dict (module doc)."""
  sd = strip_prefix(sd, prefix) if prefix else dict(sd)
  if "shared.weight" not in sd:
    raise ValueError(f"T5 state dict has no {prefix}shared.weight; is it an HF T5 model?")
  shared = sd["shared.weight"]
  out = {"token_embedder/embedding": shared}
  heads = None
  for stack in ("encoder", "decoder"):
    key = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    if key not in sd:
      raise ValueError(f"T5 state dict has no {prefix}{key}; is it an HF T5 model?")
    heads = sd[key].shape[1]
    out[f"{stack}/relpos_bias/rel_embedding"] = np.ascontiguousarray(sd[key].T)
  norms = {"encoder.final_layer_norm.weight": "encoder/encoder_norm/scale",
           "decoder.final_layer_norm.weight": "decoder/decoder_norm/scale"}  # fmt: skip
  for key, value in sd.items():
    if key in _T5_COPIES:
      if key == "lm_head.weight" and not tie_embeddings:
        out["decoder/logits_dense/kernel"] = _linear(value)
      elif not np.array_equal(value, shared):
        raise ValueError(
          f"T5 state dict: {prefix}{key} differs from shared.weight; the model config's "
          f"tie_embeddings={tie_embeddings} does not match this checkpoint."
        )
      continue
    if key == "shared.weight" or key.endswith("relative_attention_bias.weight"):
      continue
    if key in norms:
      out[norms[key]] = value
      continue
    m = re.fullmatch(
      r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d)\.(\w+)\.(?:(\w+)\.)?weight", key
    )
    module = m and _T5_SUBLAYERS.get((m.group(1), int(m.group(3)), m.group(4)))
    if not module:
      raise ValueError(f"T5 state dict: unexpected key {prefix + key!r}; is it an HF T5 model?")
    stack, layer, leaf = m.group(1), m.group(2), m.group(5)
    base = f"{stack}/layers_{layer}/{module}"
    if module.endswith("layer_norm"):
      out[f"{base}/scale"] = value
    elif module == "mlp":
      out[f"{base}/{leaf}/kernel"] = _linear(value)
    elif leaf == "o":
      out[f"{base}/out/kernel"] = _out(value, heads)
    else:
      out[f"{base}/{_T5_ATTN[leaf]}/kernel"] = _qkv(value, heads)
  if not tie_embeddings and "decoder/logits_dense/kernel" not in out:
    raise ValueError(f"T5 state dict has no {prefix}lm_head.weight for the untied logits.")
  return out
