"""The model's parameters as shapes with shardings: what init and every restore target.

`abstract_params(model, mesh, rules, input_shapes)` runs `model.init` under `jax.eval_shape` (no
memory, no FLOPs), reads the logical axis names every parameter carries
(`nn.with_logical_partitioning`) and maps them to mesh shardings with the logical rules
(rahf_jax.sharding.partitioning). Training adds the optimizer state on top
(rahf_jax.train.state.get_abstract_state); inference restores the params straight into it
(rahf_jax.sharding.workdir_files.restore_params).
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rahf_jax.models import build_model_from_config
from rahf_jax.sharding import partitioning

# The three model inputs that `model.init` needs (rahf_jax/features.py names).
MODEL_INPUTS = ("image", "prompt_ids", "decoder_input_ids")


def input_shapes(example_batch_shapes: Mapping[str, Any]) -> dict[str, jax.ShapeDtypeStruct]:
  """ShapeDtypeStructs of the model inputs, from arrays or shape/dtype structs."""
  missing = [k for k in MODEL_INPUTS if k not in example_batch_shapes]
  if missing:
    raise ValueError(f"example_batch_shapes lacks {missing}; pass a batch of model features.")
  return {
    k: jax.ShapeDtypeStruct(tuple(example_batch_shapes[k].shape), example_batch_shapes[k].dtype)
    for k in MODEL_INPUTS
  }


def model_input_shapes(model_config, prompt_len: int, target_len: int) -> dict:
  """ShapeDtypeStructs of one example's model inputs (batch 1) for a model config."""
  size = int(model_config.image_size)
  return {
    "image": jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32),
    "prompt_ids": jax.ShapeDtypeStruct((1, int(prompt_len)), jnp.int32),
    "decoder_input_ids": jax.ShapeDtypeStruct((1, int(target_len)), jnp.int32),
  }


def init_variables(model: nn.Module, rng: jax.Array, shapes: Mapping[str, Any]):
  """`model.init` on zeros of `shapes` (the params and dropout keys split from `rng`)."""
  params_rng, dropout_rng = jax.random.split(rng)
  inputs = [jnp.zeros(shapes[k].shape, shapes[k].dtype) for k in MODEL_INPUTS]
  return model.init({"params": params_rng, "dropout": dropout_rng}, *inputs)


def abstract_params(model: nn.Module, mesh: jax.sharding.Mesh, rules, example_batch_shapes):
  """(abstract params with shardings, param shardings): what init and every restore target.

  The parameters alone, for inference (no optimizer); get_abstract_state adds the rest.
  """
  shapes = input_shapes(example_batch_shapes)
  boxed = jax.eval_shape(lambda k: init_variables(model, k, shapes), jax.random.PRNGKey(0))
  param_shardings = partitioning.divisible_shardings(
    partitioning.logical_shardings(nn.get_partition_spec(boxed["params"]), mesh, rules),
    nn.unbox(boxed["params"]),
  )
  abstract = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
    nn.unbox(boxed["params"]),
    param_shardings,
  )
  return abstract, param_shardings


def model_and_abstract_params(config, devices=None):
  """(model config, model, mesh, rules, abstract params) of a run config.

  The model its config names, the config's mesh over `devices` (default: all) and rules, and
  the abstract params every restore of its checkpoints targets.
  """
  model_config, model = build_model_from_config(config)
  mesh, rules = partitioning.make_mesh_and_rules(config, devices)
  shapes = model_input_shapes(model_config, config.data.prompt_len, config.data.target_len)
  abstract, _ = abstract_params(model, mesh, rules, shapes)
  return model_config, model, mesh, rules, abstract
