"""The train state, and the ONE abstract-state function that init and restore both target.

`get_abstract_state` runs `model.init` and `tx.init` under `jax.eval_shape` (no memory, no
FLOPs), reads the logical axis names every parameter carries (`nn.with_logical_partitioning`),
maps them to mesh shardings with the logical rules, and gives the optimizer state the
shardings of the parameters it mirrors (`optax.tree_map_params`). `init_state` jits the same
init with `out_shardings=state_shardings`, so every array is born on its shard; orbax restores
into the same abstract state (rahf_jax/train/checkpointing.py); inference restores the params
alone into rahf_jax/sharding/abstract_params.py's (rahf_jax/sharding/workdir_files.py).

With fp32 master weights (training config `param_dtype="bfloat16"`, rahf_jax/train/optimizer.py)
the state's params are bf16 and the optimizer state holds their fp32 master copy: `tx.init` sees
the model's (fp32) init, and the abstract state, built from the same init function, has the bf16
params and the master weights with the params' shardings. `abstract_params` (for inference)
keeps the model config's param dtype; orbax casts a bf16 checkpoint's params to it on restore.
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec

from rahf_jax.sharding.abstract_params import abstract_params, init_variables, input_shapes
from rahf_jax.train import optimizer


class TrainState(struct.PyTreeNode):
  """Everything a train step reads and writes; a pytree of arrays (checkpointed as is).

  Attributes:
    step: int32 scalar, number of train steps taken.
    params: the model's parameters (unboxed); bf16 under param_dtype="bfloat16", with their
      fp32 master weights in opt_state.
    opt_state: the optax state.
    rng: uint32[2] base key; the dropout key of step t is fold_in(rng, t).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array

  def dropout_key(self) -> jax.Array:
    """The dropout key of this step: the base key folded with the step."""
    return jax.random.fold_in(self.rng, self.step)


def make_init_fn(model: nn.Module, tx: optax.GradientTransformation, example_batch_shapes):
  """A function seed_key -> TrainState (unboxed params, fresh optimizer state)."""
  shapes = input_shapes(example_batch_shapes)

  def init_fn(key: jax.Array) -> TrainState:
    init_key, state_key = jax.random.split(key)
    params = nn.unbox(init_variables(model, init_key, shapes)["params"])
    opt_state = tx.init(params)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      # The model's params, or (param_dtype="bfloat16") the fp32 master weights cast down.
      params=optimizer.model_params(params, opt_state),
      opt_state=opt_state,
      rng=state_key,
    )

  return init_fn


def get_abstract_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  rules,
  example_batch_shapes: Mapping[str, Any],
) -> tuple[TrainState, TrainState]:
  """The abstract train state (ShapeDtypeStructs carrying shardings) and its shardings.

  Args:
    model: the flax module (its params carry logical axis names).
    tx: the optimizer.
    mesh: the device mesh (axes data, fsdp, model).
    rules: logical axis rules (rahf_jax.sharding.partitioning.LOGICAL_AXIS_RULES[name]).
    example_batch_shapes: a batch (arrays or ShapeDtypeStructs) with the model inputs.

  Returns:
    (abstract_state, state_shardings): two TrainState pytrees with ShapeDtypeStruct leaves
    (each with `.sharding` set) and NamedSharding leaves.
  """
  _, param_shardings = abstract_params(model, mesh, rules, example_batch_shapes)
  abstract = jax.eval_shape(make_init_fn(model, tx, example_batch_shapes), jax.random.PRNGKey(0))
  replicated = NamedSharding(mesh, PartitionSpec())
  opt_shardings = optax.tree_map_params(
    tx,
    lambda _, sharding: sharding,
    abstract.opt_state,
    param_shardings,
    transform_non_params=lambda _: replicated,
    is_leaf=lambda x: isinstance(x, NamedSharding),
  )
  shardings = TrainState(
    step=replicated, params=param_shardings, opt_state=opt_shardings, rng=replicated
  )
  abstract = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )
  return abstract, shardings


def init_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  rules,
  example_batch_shapes: Mapping[str, Any],
  seed: int = 0,
  state_shardings: TrainState | None = None,
) -> tuple[TrainState, TrainState]:
  """A freshly initialised, sharded TrainState and its shardings (same seed -> same state).

  `state_shardings` (from get_abstract_state) skips recomputing them.
  """
  shardings = state_shardings
  if shardings is None:
    _, shardings = get_abstract_state(model, tx, mesh, rules, example_batch_shapes)
  init_fn = jax.jit(make_init_fn(model, tx, example_batch_shapes), out_shardings=shardings)
  # Traced without the mesh/rules context: out_shardings place every array on its shard, and
  # activation constraints do not matter for init (flax's DenseGeneral also re-runs a boxed
  # N-d kernel init on a flattened kernel, which a set mesh would reject).
  return init_fn(jax.random.PRNGKey(seed)), shardings


def num_params(params: Any) -> int:
  """Total number of parameter scalars."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
