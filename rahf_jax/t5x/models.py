"""RAHF as a t5x `BaseModel`: the network, losses and decoder of rahf_jax, adapted to t5x.

Nothing here computes anything of its own: the loss is `rahf_jax.train.losses.compute_losses`,
decoding is `rahf_jax.models.greedy_decode`, the output structure is
`rahf_jax.inference.postprocess.output_arrays`, and the batch is what the data layer's
feature converter (`rahf_jax.data.feature_converter`) emits. This module only translates
between those and t5x's calling conventions (params + `params_axes`, clu metrics, aux dicts).

gin (see configs/t5x/models/*.gin):

  MODEL = @rahf_models.RAHFModel()
  rahf_models.RAHFModel:
    size = 'tiny'            # rahf_jax.models.MODEL_SIZES
    variant = 'multihead'    # or 'augmented'
    optimizer_def = %OPTIMIZER
"""

import functools
from collections.abc import Mapping
from typing import Any

import clu.metrics as clu_metrics
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import partitioning as flax_partitioning
from t5x import models as t5x_models

from rahf_jax.data import feature_converter
from rahf_jax.data import vocab as data_vocab
from rahf_jax.inference import postprocess
from rahf_jax.models import build_model, get_model_config, greedy_decode
from rahf_jax.train import losses

_INT_FEATURES = ("prompt_ids", "decoder_input_ids", "decoder_target_ids", "output_type")


def _apply_overrides(config, overrides: Mapping[str, Any] | None):
  """Sets dotted keys ("t5.num_heads": 8) of a model ConfigDict."""
  for key, value in (overrides or {}).items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise ValueError(f"model override {key!r}: no such field in the model config.")
    node[leaf] = value
  return config


def split_params_and_axes(variables: Mapping[str, Any]) -> dict[str, Any]:
  """`nn.with_logical_partitioning` boxes -> t5x's {"params", "params_axes"} layout."""
  boxed = variables["params"]
  is_box = lambda x: isinstance(x, nn.Partitioned)  # noqa: E731
  params = nn.unbox(boxed)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(boxed))
  axes = {}
  for path, leaf in flat.items():
    if not is_box(leaf):
      raise ValueError(
        f"parameter {'/'.join(path)} has no logical axis names; declare it with "
        "nn.with_logical_partitioning."
      )
    axes[path[:-1] + (path[-1] + "_axes",)] = flax_partitioning.AxisMetadata(names=leaf.names)
  rest = {k: v for k, v in variables.items() if k != "params"}
  return {**rest, "params": params, "params_axes": flax.traverse_util.unflatten_dict(axes)}


class RAHFModel(t5x_models.BaseModel):
  """t5x wrapper of the RAHF network (either variant)."""

  def __init__(
    self,
    size: str,
    variant: str,
    optimizer_def,
    loss_weights: Mapping[str, float] | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    dtype: str | None = None,
    vocabulary: str = "t5",
  ):
    """Builds the network of `get_model_config(size, variant)`.

    Args:
      size: a rahf_jax.models.MODEL_SIZES name ("tiny", "B16_t5base_384", ...).
      variant: "multihead" or "augmented".
      optimizer_def: a t5x optimizer (e.g. optimizers.OptaxWrapper of our AdamW).
      loss_weights: {"heatmap", "score", "text", or an output type: weight}; default all 1.
      model_overrides: dotted model-config keys to set, e.g. {"t5.num_heads": 8}.
      dtype: compute dtype override ("float32" on CPU, "bfloat16" on TPU); None keeps it.
      vocabulary: name of the tasks' SentencePiece vocabulary ("t5" or "demo"); t5x.infer
        checks it against the task's.
    """
    config = get_model_config(size, variant)
    if dtype is not None:
      config.dtype = dtype
    self.config = _apply_overrides(config, model_overrides)
    self.variant = variant
    self.module = build_model(self.config)
    self._vocabulary_name = vocabulary
    self.loss_weights = dict(loss_weights or {"heatmap": 1.0, "score": 1.0, "text": 1.0})
    self.FEATURE_CONVERTER_CLS = functools.partial(  # pylint: disable=invalid-name
      feature_converter.CONVERTERS[variant],
      image_size=self.config.image_size,
      heatmap_size=self.config.heatmap_size,
    )
    super().__init__(optimizer_def=optimizer_def)

  @property
  def input_vocabulary(self):
    """The prompts' vocabulary (rahf_jax.data.vocab), for t5x's vocabulary checks."""
    return data_vocab.get_vocabulary(self._vocabulary_name)

  @property
  def output_vocabulary(self):
    """The `_0`-marked targets' vocabulary (the same SentencePiece model)."""
    return self.input_vocabulary

  def _outputs(self, params, batch, dropout_rng=None):
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply(
      {"params": params},
      batch["image"],
      batch["prompt_ids"],
      batch["decoder_input_ids"],
      deterministic=dropout_rng is None,
      rngs=rngs,
    )

  def loss_fn(self, params, batch, dropout_rng):
    """The trainer's loss (rahf_jax.train.losses) and each term as a clu metric."""
    outputs = self._outputs(params, batch, dropout_rng)
    loss, terms = losses.compute_losses(outputs, batch, self.variant, self.loss_weights)
    metrics = {
      f"rahf/{k}": clu_metrics.Average.from_model_output(jnp.asarray(v, jnp.float32))
      for k, v in terms.items()
      if k not in ("num_tokens", "loss")
    }
    metrics["loss"] = clu_metrics.Average.from_model_output(loss)
    metrics["num_tokens"] = clu_metrics.Average.from_model_output(terms["num_tokens"])
    return loss, metrics

  def predict_batch_with_aux(self, params, batch, rng=None, **kwargs):
    """Greedy `_0`-marked prompt ids [B, Lt] and aux arrays (scores, heatmaps)."""
    del rng, kwargs
    heads = self.module.apply(
      {"params": params},
      batch["image"],
      batch["prompt_ids"],
      method=self.module.predict_heads,
    )
    ids = greedy_decode(
      self.module,
      {"params": params},
      batch["image"],
      batch["prompt_ids"],
      max_length=batch["decoder_input_ids"].shape[1],
    )
    aux = postprocess.output_arrays(heads, self.variant, batch.get("output_type"))
    return ids, aux

  def score_batch(self, params, batch, return_intermediates: bool = False):
    """Per-example log-likelihood of the target tokens (decoder_loss_weights masked)."""
    if return_intermediates:
      raise NotImplementedError("RAHFModel.score_batch has no intermediates.")
    outputs = self._outputs(params, batch)
    return postprocess.sequence_log_likelihood(
      outputs["decoder_logits"], batch["decoder_target_ids"], batch["decoder_loss_weights"], jnp
    )

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    """Initial params and their logical axes, from the feature shapes t5x passes."""
    input_types = dict(input_types or {})

    def dummy(name):
      default = jnp.int32 if name in _INT_FEATURES else jnp.float32
      return jnp.zeros(input_shapes[name], input_types.get(name, default))

    variables = self.module.init(
      {"params": rng, "dropout": jax.random.fold_in(rng, 1)},
      dummy("image"),
      dummy("prompt_ids"),
      dummy("decoder_input_ids"),
      deterministic=True,
    )
    return flax.core.freeze(split_params_and_axes(variables))
