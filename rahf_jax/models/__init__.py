"""RAHF network in Flax: `build_model(get_model_config(size, variant))`, `greedy_decode`,
`constrained_decode`."""

import ml_collections

from rahf_jax.models.decoding import constrained_decode, greedy_decode
from rahf_jax.models.rahf import RAHF
from rahf_jax.models.variants import MODEL_SIZES, get_model_config


def build_model(model_config) -> RAHF:
  """The RAHF module for a `get_model_config(...)` ConfigDict (frozen, so the module hashes)."""
  return RAHF(ml_collections.FrozenConfigDict(model_config))


def build_model_from_config(config) -> tuple[ml_collections.ConfigDict, RAHF]:
  """(model_config, model) from a run config's model.{size, variant, overrides}."""
  model_config = get_model_config(config.model.size, config.model.variant)
  overrides = config.model.get("overrides", None)
  if overrides:
    model_config.update(overrides.to_dict() if hasattr(overrides, "to_dict") else dict(overrides))
  return model_config, build_model(model_config)


__all__ = [
  "MODEL_SIZES",
  "RAHF",
  "build_model",
  "build_model_from_config",
  "constrained_decode",
  "get_model_config",
  "greedy_decode",
]
