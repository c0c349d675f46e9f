"""The model's forward pass and losses on a batch: the one function both training routes call.

The native train and eval steps (rahf_jax.train.steps) and the t5x adapter
(rahf_jax.t5x.run_settings.loss_fn, rahf_jax.t5x.models) compute their loss here, so the two
routes train the same function.
"""

from collections.abc import Mapping
from typing import Any

import jax

from rahf_jax.train import losses


def model_outputs(model, params, batch: Mapping[str, Any], dropout_key: jax.Array | None = None):
  """The network's outputs on a batch of model features; dropout on iff `dropout_key` is given."""
  rngs = None if dropout_key is None else {"dropout": dropout_key}
  return model.apply(
    {"params": params},
    batch["image"],
    batch["prompt_ids"],
    batch["decoder_input_ids"],
    deterministic=dropout_key is None,
    rngs=rngs,
  )


def forward_and_losses(
  model,
  params,
  batch: Mapping[str, Any],
  variant: str,
  loss_weights: Mapping[str, float],
  dropout_key: jax.Array | None = None,
  heatmap_loss: str = "mse",
  denominators: Mapping[str, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(loss, terms) of the model on `batch` (rahf_jax.train.losses.compute_losses)."""
  outputs = model_outputs(model, params, batch, dropout_key)
  return losses.compute_losses(
    outputs, batch, variant, loss_weights, None, heatmap_loss, denominators
  )
