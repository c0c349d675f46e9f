"""Pretrained weight import: one `load_*` per source format, each a documented name mapping.

`load_vit_npz(path, params)`  ViT `.npz` (keys are '/'-joined parameter paths):
  * vision_transformer / Augreg (the source of HF's google/vit-*-384): names equal ours except the
    block children `MultiHeadDotProductAttention_1 -> _0`, `LayerNorm_2 -> LayerNorm_1`,
    `MlpBlock_3 -> MlpBlock_0`; `cls`, `embedding`, `Transformer/posembed_input/pos_embedding` and
    `Transformer/encoder_norm` are the same.
  * big_vision: block children equal ours; `pos_embedding` (top level, patches only: big_vision
    adds the class token after the position embedding) -> `Transformer/posembed_input/
    pos_embedding` with a zero row prepended for our class-token slot (adding 0 to `cls` is the
    same computation); a scanned checkpoint's `Transformer/encoderblock/...` (leading depth axis)
    is split into `encoderblock_i`.
  * `head/*`, `pre_logits/*` and `MAPHead_0/*` are classifier parts and are ignored.
  * A position table of another grid is resampled bilinearly (`resample_posemb`), so a 224
    checkpoint loads into a 384 model.
`load_t5x_params(t5x_params, params)`  a T5X T5 checkpoint's restored `target` tree (nested dict):
  `token_embedder`, `encoder/*`, `decoder/*` map by name (same names as ours, see t5_layers.py);
  attention kernels are stored 2-D (`[embed, heads*kv]`, out `[heads*kv, embed]`) and are reshaped
  to our 3-D layout. The original T5 (t5-base: `mlp/wi`, tied logits) and T5.1.1 (`mlp/wi_0`,
  `wi_1`, `decoder/logits_dense`) both map; the flavour must match the model config.
Both return a new params tree and raise ValueError naming the first missing/mis-shaped entry.
`load_vit(path, params)` / `load_t5(path, params)`: the same for any supported source: a ViT
`.npz` or a Hugging Face ViT (folder, `model.safetensors` or `.bin`; hf_weights.py), a Hugging
Face T5 (same forms). The PyTorch RAHF reproduction's checkpoint: reproduction_weights.py.
"""

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import numpy as np

from rahf_jax.models import hf_weights, state_dicts

_VIT_RENAMES = (
  (r"MultiHeadDotProductAttention_1/", "MultiHeadDotProductAttention_0/"),
  (r"LayerNorm_2/", "LayerNorm_1/"),
  (r"MlpBlock_3/", "MlpBlock_0/"),
)
_VIT_IGNORED = re.compile(r"^(head|pre_logits|MAPHead_0)(/|$)")
_POSEMB = "Transformer/posembed_input/pos_embedding"


def resample_posemb(posemb: np.ndarray, new_grid: int, num_prefix: int) -> np.ndarray:
  """[1, prefix + g*g, D] -> [1, prefix + new_grid**2, D]: the grid part resized bilinearly."""
  prefix, grid = posemb[:, :num_prefix], posemb[:, num_prefix:]
  g = int(round(np.sqrt(grid.shape[1])))
  if g * g != grid.shape[1]:
    raise ValueError(f"position table of {grid.shape[1]} patch positions is not a square grid.")
  if g != new_grid:
    grid = grid.reshape(1, g, g, -1)
    grid = jax.image.resize(grid, (1, new_grid, new_grid, grid.shape[-1]), "bilinear")
    grid = np.asarray(grid).reshape(1, new_grid * new_grid, -1)
  return np.concatenate([prefix, grid], axis=1)


def _vit_entries(npz: Mapping[str, np.ndarray], our_posemb_len: int, has_cls: bool):
  """Checkpoint entries renamed to our ViT paths ('/'-joined, relative to params['vit'])."""
  out = {}
  for key, value in npz.items():
    if _VIT_IGNORED.match(key):
      continue
    value = np.asarray(value)
    for pat, rep in _VIT_RENAMES:
      key = re.sub(pat, rep, key)
    if key == "pos_embedding":  # big_vision: patches only
      key = _POSEMB
      if has_cls:
        value = np.concatenate([np.zeros_like(value[:, :1]), value], axis=1)
    m = re.match(r"Transformer/encoderblock/(.*)", key)
    if m:  # big_vision scanned layers: [depth, ...]
      for i in range(value.shape[0]):
        out[f"Transformer/encoderblock_{i}/{m.group(1)}"] = value[i]
      continue
    out[key] = value
  if _POSEMB in out and out[_POSEMB].shape[1] != our_posemb_len:
    prefix = 1 if has_cls else 0
    new_grid = int(round(np.sqrt(our_posemb_len - prefix)))
    out[_POSEMB] = resample_posemb(out[_POSEMB], new_grid, prefix)
  return out


def fill_params(
  ours: dict,
  entries: Mapping[str, np.ndarray],
  what: str,
  reshape_ok: bool = False,
  place: Callable[[np.ndarray, Any], Any] | None = None,
) -> dict:
  """A tree shaped like `ours` (arrays or ShapeDtypeStructs) with every leaf from `entries`.

  `entries` are keyed by "/"-joined paths relative to `ours`; a missing, unused or mis-shaped
  entry raises ValueError naming the first one. Values are cast to the leaves' dtypes.
  `place(value, our_leaf)` (e.g. a device_put onto the leaf's sharding) is applied to each value,
  and then each entry is popped from `entries`, so that the host copy of a large model is freed
  leaf by leaf instead of living beside the placed one.
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(ours), sep="/")
  missing = sorted(set(flat) - set(entries))
  if missing:
    raise ValueError(
      f"{what}: no entry for parameter {missing[0]!r} ({len(missing)} missing); "
      "check that the checkpoint matches the model config's size/flavour."
    )
  unused = sorted(set(entries) - set(flat))
  if unused:
    raise ValueError(
      f"{what}: checkpoint entry {unused[0]!r} has no parameter here "
      f"({len(unused)} unused); check the model config's size/flavour."
    )
  new = {}
  for key, old in flat.items():
    value = np.asarray(entries[key])
    if value.shape != old.shape:
      if reshape_ok and value.size == int(np.prod(old.shape)):
        value = value.reshape(old.shape)
      else:
        raise ValueError(
          f"{what}: {key!r} has shape {value.shape} in the checkpoint but "
          f"{tuple(old.shape)} in the model; check the model config."
        )
    value = np.asarray(value, dtype=old.dtype)  # no copy when the dtype already matches
    if place is not None:
      value = place(value, old)
      del entries[key]
    new[key] = value
  return flax.traverse_util.unflatten_dict(new, sep="/")


def load_vit_npz(path: str | os.PathLike, params: dict) -> dict:
  """`params` with `params['vit']` replaced by the ViT weights of a `.npz` (see module doc)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"ViT checkpoint {os.fspath(path)!r} not found; pass an existing .npz.")
  with np.load(path) as npz:
    raw = dict(npz.items())
  vit = params["vit"]
  our_len = vit["Transformer"]["posembed_input"]["pos_embedding"].shape[1]
  entries = _vit_entries(raw, our_len, "cls" in vit)
  return {**params, "vit": fill_params(vit, entries, f"ViT checkpoint {os.fspath(path)!r}")}


def load_t5x_params(t5x_params: Mapping, params: dict) -> dict:
  """`params` with the T5 parts (token_embedder, encoder, decoder) taken from a T5X target tree."""
  new = dict(params)
  for part in ("token_embedder", "encoder", "decoder"):
    if part not in t5x_params:
      raise ValueError(f"T5X checkpoint has no {part!r} subtree; pass the restored 'target' tree.")
    src = flax.traverse_util.flatten_dict(flax.core.unfreeze(t5x_params[part]), sep="/")
    new[part] = fill_params(params[part], src, f"T5X checkpoint ({part})", reshape_ok=True)
  return new


def vit_npz_entries(vit_params: dict, layout: str = "vision_transformer") -> dict:
  """Our ViT params as `.npz` entries in a source layout (the inverse mapping; used by tests)."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(vit_params), sep="/")
  out = {}
  for key, value in flat.items():
    value = np.asarray(value)
    if layout == "vision_transformer":
      for pat, rep in _VIT_RENAMES:
        key = re.sub(rep, pat, key)
    elif layout == "big_vision" and key == _POSEMB:
      key, value = "pos_embedding", value[:, 1:] if "cls" in vit_params else value
    elif layout != "big_vision":
      raise ValueError(f"layout {layout!r} unknown; use 'vision_transformer' or 'big_vision'.")
    out[key] = value
  return out


def _prefix(sd: Mapping[str, np.ndarray], candidates: tuple[str, ...]) -> str:
  """The first candidate prefix that some key starts with ("" if none)."""
  return next((p for p in candidates if any(k.startswith(p) for k in sd)), "")


def load_vit(path: str | os.PathLike, params: dict, num_heads: int) -> dict:
  """`params` with params["vit"] from a ViT `.npz` or a Hugging Face ViT's weights."""
  if os.fspath(path).endswith(".npz"):
    return load_vit_npz(path, params)
  sd = state_dicts.read_state_dict(path)
  entries = hf_weights.vit_entries(sd, num_heads, _prefix(sd, ("vit.",)))
  vit = params["vit"]
  our_len = vit["Transformer"]["posembed_input"]["pos_embedding"].shape[1]
  if entries[_POSEMB].shape[1] != our_len:  # e.g. a 224 checkpoint into a 384 model
    entries[_POSEMB] = resample_posemb(entries[_POSEMB], int(round(np.sqrt(our_len - 1))), 1)
  return {**params, "vit": fill_params(vit, entries, f"ViT weights {os.fspath(path)!r}")}


def load_t5(path: str | os.PathLike, params: dict, tie_embeddings: bool) -> dict:
  """`params` with token_embedder, encoder and decoder from a Hugging Face T5's weights."""
  sd = state_dicts.read_state_dict(path)
  entries = hf_weights.t5_entries(sd, tie_embeddings, _prefix(sd, ("t5.",)))
  new = dict(params)
  for part in ("token_embedder", "encoder", "decoder"):
    sub = {k[len(part) + 1 :]: v for k, v in entries.items() if k.startswith(part + "/")}
    new[part] = fill_params(params[part], sub, f"T5 weights {os.fspath(path)!r} ({part})")
  return new
