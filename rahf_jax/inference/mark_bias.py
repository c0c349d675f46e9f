"""The constrained decoder's mark bias, as a workdir records it (`<workdir>/mark_bias.json`).

Constrained decoding (rahf_jax.models.constrained_decode) writes the `_0` mark after a word when
the decoder's logit of the mark plus `mark_bias` is above the logit of the next copied token.
Most prompt words are unmarked in training, so at bias 0 the decoder marks too few words;
`rahf-jax calibrate` (rahf_jax.evaluation.mark_calibration) chooses the bias that maximises the
misaligned-word F1 on a held-out split and records it here, for the parameters it was chosen on:
their step and a digest of their values (`params_digest`). `Predictor.from_workdir` then decodes
with it whenever it restores those parameters, from the best or the newest checkpoint folder
alike (a run's best checkpoint is often its newest one too); 0 for other parameters.

  {"mark_bias": 3.0, "checkpoint": {"kind": "best", "step": 1500, "params_digest": "9f0c..."},
   "split": "dev", "num_examples": 200, "f1_by_bias": {"0.0": 0.387, ...}}

A record without "params_digest" (written before digests were recorded) applies to its step.
"""

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MARK_BIAS_FILE = "mark_bias.json"

# Two odd multipliers per checksum: a change of any one element changes both sums (mod 2**32).
_K = ((0x9E3779B1, 0x7F4A7C15), (0x85EBCA77, 0xC2B2AE3D))
_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}


def _leaf_checksums(x: jax.Array) -> jax.Array:
  """uint32 [2]: two position-weighted sums (mod 2**32) of the bits of x's elements."""
  bits = jax.lax.bitcast_convert_type(x, _UINT[x.dtype.itemsize]).astype(jnp.uint32)
  index = jnp.arange(bits.size, dtype=jnp.uint32).reshape(bits.shape)
  return jnp.stack(
    [jnp.sum(bits * (index * jnp.uint32(a) + jnp.uint32(b)), dtype=jnp.uint32) for a, b in _K]
  )


_checksums = jax.jit(lambda leaves: [_leaf_checksums(x) for x in leaves])


def params_digest(params: Any) -> str:
  """A hex digest of a parameter tree's values: sha256 over every leaf's path, shape, dtype and
  two checksums of its bits, computed where the (sharded) arrays live; equal trees give equal
  digests, whichever checkpoint folder they were restored from."""
  paths_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  sums = jax.device_get(_checksums([jnp.asarray(x) for _, x in paths_leaves]))
  h = hashlib.sha256()
  for (path, leaf), (a, b) in zip(paths_leaves, np.asarray(sums).tolist(), strict=True):
    name = jax.tree_util.keystr(path)
    h.update(f"{name}|{tuple(leaf.shape)}|{jnp.dtype(leaf.dtype).name}|{a}|{b}\n".encode())
  return h.hexdigest()[:24]


def mark_bias_path(workdir: str) -> str:
  return os.path.join(workdir, MARK_BIAS_FILE)


def write_mark_bias(workdir: str, record: Mapping[str, Any]) -> str:
  """Writes `record` (with "mark_bias" and "checkpoint") to the workdir; returns the path."""
  path = mark_bias_path(workdir)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(dict(record), f, indent=2)
  return path


def read_mark_bias(workdir: str, step: int | None, digest: str | None) -> float:
  """The recorded bias when it was chosen for these parameters (`step` and `params_digest`);
  else 0.0, with a warning when a record exists for other parameters."""
  path = mark_bias_path(workdir)
  if not os.path.exists(path):
    return 0.0
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
    bias, chosen_for = float(record["mark_bias"]), dict(record["checkpoint"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    logging.warning("%s is unreadable (%s); decoding with mark bias 0.", path, e)
    return 0.0
  recorded = chosen_for.get("params_digest")
  if chosen_for.get("step") != step or (recorded is not None and recorded != digest):
    logging.warning(
      "%s was chosen for other parameters (the %s checkpoint of step %s), not these of step %s; "
      "decoding with mark bias 0 (run `rahf-jax calibrate` on this checkpoint).",
      path, chosen_for.get("kind"), chosen_for.get("step"), step,
    )  # fmt: skip
    return 0.0
  return bias
