"""The batch's place on the mesh, and running a function under the mesh and logical rules.

batch_sharding(mesh)       the leading (batch) axis over ("data", "fsdp"), the rest replicated
shard_batch(batch, mesh)   this host's rows (numpy) -> global jax arrays on that sharding
with_mesh_context(fn, ...) fn traced/run under jax.set_mesh and nn.logical_axis_rules, so the
                           model's activation constraints become real sharding constraints
"""

import contextlib
import functools
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

BATCH_AXES = ("data", "fsdp")


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis over the mesh's data and fsdp axes, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """This host's part of a batch (numpy) -> global jax arrays sharded over the batch axes.

  On one host this is a device_put; on several, each host passes its own rows
  (jax.make_array_from_process_local_data assembles the global batch).
  """
  sharding = batch_sharding(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
  }


def with_mesh_context(fn: Callable, mesh, rules, set_mesh: bool = True) -> Callable:
  """Traces/runs `fn` under the logical rules and (if `set_mesh`) the mesh.

  With the mesh set (jax.set_mesh, not `with mesh:`), the model's nn.with_logical_constraint
  calls become real sharding constraints on the activations; without it they are no-ops and
  XLA propagates the shardings of the params and the batch (given by in_shardings).
  """

  @functools.wraps(fn)
  def wrapped(*args):
    with contextlib.ExitStack() as stack:
      if set_mesh:
        stack.enter_context(jax.set_mesh(mesh))
      stack.enter_context(nn.logical_axis_rules(rules))
      return fn(*args)

  wrapped.jitted = fn
  return wrapped
