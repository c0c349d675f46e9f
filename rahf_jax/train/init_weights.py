"""Pretrained starts: `config.init.{vit, t5, rahf}` -> parameters placed on their shards.

  init.vit   ViT weights: a big_vision / Augreg `.npz`, or a Hugging Face ViT (a model folder,
             `model.safetensors` or `pytorch_model.bin`, e.g. google/vit-base-patch16-384); a
             position table of another resolution is resampled
  init.t5    T5 weights: a Hugging Face T5 (folder / safetensors / .bin, e.g. t5-base,
             google/t5-v1_1-base), or a T5X checkpoint directory (read with t5x, the `t5x` extra)
  init.rahf  a whole RAHF: a workdir (one of our runs, or `rahf-jax convert`'s output; its params
             only) or the PyTorch reproduction's `rahf_model.pt`
`init.rahf` is applied first; `init.vit` / `init.t5` then replace their parts. Every other group
keeps its random init. Each group is read into host memory once (at most one float32 copy of
the model), then each leaf is put on its shard; a missing or mis-shaped entry raises ValueError
naming it. The log names the groups loaded and those left random.
"""

import logging
import os
from collections.abc import Mapping
from typing import Any

import flax
import jax
import numpy as np

from rahf_jax.models import reproduction_weights, state_dicts, weights
from rahf_jax.sharding import workdir_files

T5_GROUPS = ("token_embedder", "encoder", "decoder")


def _read_t5x(path: str) -> Mapping:
  try:
    from t5x import checkpoints  # noqa: PLC0415
  except ImportError:
    raise ImportError(
      f"{path!r} is a T5X checkpoint; reading it needs t5x (pip install 'rahf-jax[t5x]'), or "
      "pass a Hugging Face T5 folder instead."
    ) from None
  return checkpoints.load_t5x_checkpoint(path)["target"]


def is_workdir(path: str) -> bool:
  return os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json"))


def host_params(config, model_config, abstract: Any) -> tuple[Any, set[str]]:
  """A params tree holding numpy arrays for the loaded groups (abstract leaves elsewhere)."""
  params = dict(abstract)
  loaded: set[str] = set()
  init = config.get("init", {})
  if init.get("rahf") and not is_workdir(init.rahf):
    sd = state_dicts.read_state_dict(init.rahf)
    entries = reproduction_weights.rahf_entries(sd, model_config)
    params = weights.fill_params(abstract, entries, f"RAHF checkpoint {init.rahf!r}")
    loaded |= set(params)
  if init.get("vit"):
    params = weights.load_vit(init.vit, params, int(model_config.vit.num_heads))
    loaded.add("vit")
  if init.get("t5"):
    path = init.t5
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "checkpoint")):
      params = weights.load_t5x_params(_read_t5x(path), params)
    else:
      params = weights.load_t5(path, params, bool(model_config.t5.tie_embeddings))
    loaded |= set(T5_GROUPS)
  return params, loaded


def apply_pretrained(config, model_config, params: Any, abstract: Any) -> Any:
  """`params` (sharded, freshly initialised) with config.init's groups loaded (module doc)."""
  init = config.get("init", {})
  if not any(init.get(k) for k in ("vit", "t5", "rahf")):
    return params
  loaded: set[str] = set()
  if init.get("rahf") and is_workdir(init.rahf):
    params, step = workdir_files.restore_params(init.rahf, abstract)  # straight onto the shards
    loaded |= set(params)
    logging.info("init.rahf: params of step %d of %s", step, init.rahf)
  host, from_files = host_params(config, model_config, abstract)
  loaded |= from_files
  flat_host = flax.traverse_util.flatten_dict(host)
  flat = flax.traverse_util.flatten_dict(dict(params))
  for key, value in flat_host.items():
    if isinstance(value, np.ndarray):
      flat[key] = jax.device_put(value, flat[key].sharding)
  for group in sorted(set(params)):
    logging.info("init: %-32s %s", group, "loaded" if group in loaded else "random")
  return flax.traverse_util.unflatten_dict(flat)
