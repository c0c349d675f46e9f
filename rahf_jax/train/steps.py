"""The jitted train and eval steps (jax.jit with NamedSharding in/out shardings).

The batch is sharded over ("data", "fsdp") on its leading axis; the state keeps the shardings
from `get_abstract_state` and is donated to the train step. Dropout uses the state's key
folded with the step, so a step's randomness depends only on (seed, step).

`num_microbatches=k` runs the train step's forward and backward pass on k slices of the batch
in turn (a `lax.scan`) and adds their gradients before the one optimizer update: the same loss
and gradients as the whole batch at once (every loss term is divided by the whole batch's
counts, rahf_jax.train.losses.loss_denominators), with the activations of B/k examples held
at a time. Slice i takes rows i, i+k, i+2k, ..., so every device keeps working on its own rows.
With dropout on, slice i draws its dropout from the step's key folded with i.
"""

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from rahf_jax.models.dtypes import at_least_float32
from rahf_jax.sharding.mesh_context import BATCH_AXES, batch_sharding, with_mesh_context
from rahf_jax.train import forward, losses, optimizer
from rahf_jax.train.state import TrainState


def make_train_step(
  model: nn.Module,
  tx: optax.GradientTransformation,
  *,
  variant: str,
  loss_weights: Mapping[str, float] | Any,
  mesh: jax.sharding.Mesh,
  rules,
  state_shardings: TrainState,
  schedule: optax.Schedule | None = None,
  grad_accum_steps: int = 1,
  heatmap_loss: str = "mse",
  num_microbatches: int = 1,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """A jitted (state, sharded batch) -> (new state, metrics) with the state donated.

  metrics: the loss terms of compute_losses plus "grad_norm" and, given the schedule,
  "learning_rate" (of the update this step contributes to). `num_microbatches`: see the module
  docstring.
  """
  loss_weights = dict(loss_weights)
  replicated = NamedSharding(mesh, PartitionSpec())

  def loss_fn(params, batch, dropout_key, denominators=None):
    return forward.forward_and_losses(
      model, params, batch, variant, loss_weights, dropout_key, heatmap_loss, denominators
    )

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def microbatched_grads(params, batch, dropout_key):
    denominators = losses.loss_denominators(batch, variant)
    slices = jax.tree.map(lambda x: _microbatches(x, num_microbatches, mesh), batch)

    def slice_grads(i):
      piece = jax.tree.map(lambda x: x[i], slices)
      (_, aux), grads = grad_fn(params, piece, jax.random.fold_in(dropout_key, i), denominators)
      return grads, aux

    def add_slice(total, i):
      return jax.tree.map(lambda t, x: t + x.astype(t.dtype), total, slice_grads(i)), None

    shapes = jax.eval_shape(slice_grads, 0)
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, at_least_float32(a.dtype)), shapes)
    (grads, aux), _ = jax.lax.scan(add_slice, zeros, jnp.arange(num_microbatches))
    aux["num_tokens"] = denominators["tokens"]
    return aux, jax.tree.map(lambda g, a: g.astype(a.dtype), grads, shapes[0])

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    if num_microbatches > 1:
      aux, grads = microbatched_grads(state.params, batch, state.dropout_key())
    else:
      (_, aux), grads = grad_fn(state.params, batch, state.dropout_key())
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    # With fp32 master weights (param_dtype="bfloat16"): exactly the new master weights cast down.
    params = optimizer.model_params(optax.apply_updates(state.params, updates), opt_state)
    aux["grad_norm"] = optax.tree.norm(
      jax.tree.map(lambda g: g.astype(at_least_float32(g.dtype)), grads)
    )
    if schedule is not None:
      aux["learning_rate"] = jnp.asarray(schedule(state.step // grad_accum_steps), jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, aux

  jitted = jax.jit(
    train_step,
    in_shardings=(state_shardings, batch_sharding(mesh)),
    out_shardings=(state_shardings, replicated),
    donate_argnums=(0,),
  )
  return with_mesh_context(jitted, mesh, rules)


def _microbatches(x: jax.Array, k: int, mesh: jax.sharding.Mesh) -> jax.Array:
  """[B, ...] -> [k, B/k, ...] where slice i holds rows i, i+k, ...; rows stay on their device."""
  if x.shape[0] % k:
    raise ValueError(f"batch of {x.shape[0]} does not split into {k} microbatches.")
  sliced = jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)
  return jax.lax.with_sharding_constraint(
    sliced, NamedSharding(mesh, PartitionSpec(None, BATCH_AXES))
  )


def make_eval_step(
  model: nn.Module,
  *,
  variant: str,
  loss_weights: Mapping[str, float] | Any,
  mesh: jax.sharding.Mesh,
  rules,
  state_shardings: TrainState,
  heatmap_loss: str = "mse",
) -> Callable[[TrainState, dict, jax.Array], tuple[dict, Any]]:
  """A jitted (state, sharded batch, example_weights [B]) -> (loss terms, model outputs).

  Deterministic (no dropout). `example_weights` masks padded rows of a last partial batch; the
  returned terms are means over the real examples, with "num_examples" to weight them by.
  """
  loss_weights = dict(loss_weights)
  replicated = NamedSharding(mesh, PartitionSpec())
  bsharding = batch_sharding(mesh)

  def eval_step(state: TrainState, batch: dict, example_weights: jax.Array):
    outputs = forward.model_outputs(model, state.params, batch)
    _, aux = losses.compute_losses(
      outputs, batch, variant, loss_weights, example_weights, heatmap_loss
    )
    aux["num_examples"] = jnp.sum(example_weights)
    return aux, outputs

  jitted = jax.jit(
    eval_step,
    in_shardings=(state_shardings, bsharding, bsharding),
    out_shardings=(replicated, bsharding),
  )
  return with_mesh_context(jitted, mesh, rules)
