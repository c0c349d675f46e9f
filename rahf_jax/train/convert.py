"""`rahf-jax convert`: the PyTorch RAHF reproduction's checkpoint -> a workdir we open directly.

  convert_reproduction("rahf_model.pt", "t5-base/spiece.model", "rahf_l16")

writes
  rahf_l16/config.json             a run config: the model read off the state dict (ViT-L/16-384 +
                                   t5-base for the published checkpoint) plus the switches that
                                   make our forward equal the reproduction's (models/
                                   reproduction_weights.model_overrides), float32 compute
  rahf_l16/checkpoints/0/          a params-only orbax checkpoint (restored by Predictor,
                                   rahf-jax predict/eval and the reward API)
  rahf_l16/spiece.model            the T5 SentencePiece model prompts are tokenised with
  rahf_l16/conversion.json         source path, size and sha256, parameter count, timings
The mapping of every tensor is documented in models/reproduction_weights.py and
models/hf_weights.py.
"""

import gc
import hashlib
import json
import logging
import os
import shutil
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rahf_jax.models import reproduction_weights, state_dicts, weights
from rahf_jax.sharding import workdir_files
from rahf_jax.sharding.abstract_params import model_and_abstract_params
from rahf_jax.train.default_train_config import train_config_defaults

# Prompts of Pick-a-Pic fit in 128 T5 tokens but for a handful (the reproduction truncates at
# 512); its generation stops after 100 new tokens.
PROMPT_LEN, TARGET_LEN = 128, 100


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 24), b""):
      h.update(block)
  return h.hexdigest()


def _to_jax(value: np.ndarray, _) -> jax.Array:
  """A jax array of `value`; a copy when `value` views the memory-mapped state dict.

  Arrays the mapping made (transposed copies) are handed over as they are; views of the state
  dict's own storage are copied, so that nothing keeps the 2.6 GB mapping alive after it.
  """
  root = value
  while isinstance(root, np.ndarray) and root.base is not None:
    root = root.base
  if isinstance(root, np.ndarray) and root.flags.owndata:
    return jax.device_put(value)
  return jnp.array(value, copy=True)


def reproduction_config(sd, vit_num_heads: int | None = None) -> ml_collections.ConfigDict:
  """The run config of a reproduction checkpoint (base size by ViT width; overrides for all)."""
  overrides = reproduction_weights.model_overrides(sd, vit_num_heads)
  width = overrides["vit"]["width"]
  c = train_config_defaults()
  # Other widths start from the small "test" size, whose stem, pooling and map init are the
  # reproduction's (patch embedding, flatten, 0.5); the overrides set every size field.
  c.model.size = {1024: "L16_t5base_384", 768: "B16_t5base_384"}.get(width, "test")
  c.model.variant = reproduction_weights.variant_of(sd)
  c.model.overrides = ml_collections.ConfigDict({**overrides, "dtype": "float32"})
  c.data.vocabulary = "spiece.model"  # relative to the workdir (predictor.load_config)
  c.data.prompt_len, c.data.target_len = PROMPT_LEN, TARGET_LEN
  c.batch_size = c.eval_batch_size = 8
  return c


def convert_reproduction(
  checkpoint: str, spiece_model: str, out_dir: str, vit_num_heads: int | None = None
) -> dict:
  """Converts the reproduction's `torch.save` state dict into a workdir (module doc)."""
  if not os.path.isfile(spiece_model):
    raise FileNotFoundError(
      f"SentencePiece model {spiece_model!r} not found; pass --spiece with the spiece.model of "
      "the Hugging Face t5-base folder the checkpoint was trained with."
    )
  if os.path.exists(os.path.join(out_dir, "config.json")):
    raise FileExistsError(f"{out_dir!r} already holds a workdir; pick a new --out folder.")
  t0 = time.perf_counter()
  sd = state_dicts.read_state_dict(checkpoint)
  t_read = time.perf_counter() - t0
  config = reproduction_config(sd, vit_num_heads)
  # The abstract params every restore targets (the same function the Predictor uses).
  model_config, _, _, _, abstract = model_and_abstract_params(config)
  entries = reproduction_weights.rahf_entries(sd, model_config)
  # Each leaf becomes a (host) jax array as soon as it is mapped, and its numpy copy is freed:
  # the state dict (memory-mapped) plus one copy of the params is the peak.
  params = weights.fill_params(abstract, entries, f"RAHF checkpoint {checkpoint!r}", place=_to_jax)
  n_source = len(sd)
  del sd, entries  # unmaps the state dict before orbax stages its own copy for writing
  gc.collect()
  n_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
  t_map = time.perf_counter() - t0 - t_read
  os.makedirs(out_dir, exist_ok=True)
  workdir_files.save_config(config, out_dir)
  shutil.copyfile(spiece_model, os.path.join(out_dir, "spiece.model"))
  workdir_files.save_params(out_dir, params, step=0, meta={"converted_from": checkpoint})
  summary = {
    "source": os.path.abspath(checkpoint),
    "source_bytes": os.path.getsize(checkpoint) if os.path.isfile(checkpoint) else None,
    "source_sha256": _sha256(checkpoint) if os.path.isfile(checkpoint) else None,
    "model_size": config.model.size,
    "variant": config.model.variant,
    "num_params": n_params,
    "source_tensors": n_source,
    "seconds": {"read": t_read, "map": t_map, "total": time.perf_counter() - t0},
  }
  with open(os.path.join(out_dir, "conversion.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  logging.info("Converted %s (%d parameters) into %s", checkpoint, n_params, out_dir)
  return summary
