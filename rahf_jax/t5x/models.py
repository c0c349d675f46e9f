"""RAHF as a t5x `BaseModel`: the network, losses and decoder of rahf_jax, adapted to t5x.

Nothing here computes anything of its own: the loss is the native train step's
(`rahf_jax.t5x.run_settings.loss_fn`, i.e. `rahf_jax.train.forward.forward_and_losses`),
decoding is the native Predictor's (`rahf_jax.models.constrained_decode` by default,
`rahf_jax.models.greedy_decode` with decoding='free'), the output structure is
`rahf_jax.inference.postprocess.output_arrays`, and the batch is what the data layer's
feature converter (`rahf_jax.data.feature_converter`) emits. This module only translates
between those and t5x's calling conventions (params + `params_axes`, clu metrics, aux dicts).

gin (see configs/t5x/models/*.gin):

  MODEL = @rahf_models.RAHFModel()
  rahf_models.RAHFModel:
    run_config = %RUN_CONFIG          # rahf_jax.t5x.run_settings.run_config: configs/rahf.py
    optimizer_def = %OPTIMIZER
    num_train_steps = %TRAIN_STEPS
    dropout_rate = %DROPOUT_RATE
    model_overrides = %MODEL_OVERRIDES
    decoding = %DECODING              # 'constrained' (default) | 'free'
    mark_bias = %MARK_BIAS            # rahf_jax.t5x.run_settings.mark_bias: MARK_BIAS_RECORD

Decoding the misaligned words:

  'constrained'  as the native Predictor: the decoder copies the prompt's words and only chooses
                 where the `_0` marks go (rahf_jax.models.constrained_decode), writing one after a
                 word where its logit of the mark plus `mark_bias` beats the next copied token.
                 The copy plan comes in the batch (copy_ids, can_mark: the t5x tasks' features,
                 rahf_jax.t5x.tasks.add_copy_plan, fitted by the feature converter), so the
                 FEATURE_CONVERTER_CLS asks for it. `mark_bias` is the bias `rahf-jax calibrate`
                 chose for the parameters evaluated (MARK_BIAS, or MARK_BIAS_RECORD = the native
                 workdir or its mark_bias.json); 0 marks too few words (the decoder is trained on
                 prompts in which most words are unmarked).
  'free'         greedy decoding over the whole vocabulary; may write words not in the prompt.
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
from rahf_jax.inference import postprocess, prompt_copy
from rahf_jax.inference.tokenizer import load_tokenizer
from rahf_jax.models import build_model, constrained_decode, greedy_decode
from rahf_jax.t5x import run_settings
from rahf_jax.train import forward

_INT_FEATURES = ("prompt_ids", "decoder_input_ids", "decoder_target_ids", "output_type")
DECODINGS = ("constrained", "free")


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
  """t5x wrapper of the RAHF network (either variant), built from a native training config."""

  def __init__(
    self,
    run_config,
    optimizer_def,
    num_train_steps: int | None = None,
    dropout_rate: float | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    decoding: str = "constrained",
    mark_bias: float = 0.0,
  ):
    """Builds the network, loss weights and vocabulary of a training config.

    Args:
      run_config: the native training config (rahf_jax.t5x.run_settings.run_config, i.e.
        configs/rahf.py's get_config with overrides): model size, variant and overrides, loss
        weights, vocabulary.
      optimizer_def: a t5x optimizer (rahf_jax.t5x.optimizer.adamw of the same config).
      num_train_steps: TRAIN_STEPS, recorded in `self.train_config`; None keeps the config's.
      dropout_rate: DROPOUT_RATE, the T5 dropout (model field t5.dropout_rate); None keeps the
        config's.
      model_overrides: MODEL_OVERRIDES, dotted model-config keys ({"t5.num_heads": 8}) merged
        into the config's model overrides.
      decoding: DECODING, "constrained" (the copy plan in the batch) or "free" (module
        docstring).
      mark_bias: MARK_BIAS, constrained decoding's bias of the `_0` mark's logit.
    """
    if decoding not in DECODINGS:
      raise ValueError(f"DECODING {decoding!r} unknown; use one of {DECODINGS}.")
    self.decoding = decoding
    self.mark_bias = float(mark_bias)
    self.train_config = run_settings.train_config(
      run_config,
      num_train_steps=num_train_steps,
      dropout_rate=dropout_rate,
      model_overrides=model_overrides,
    )
    self.config = run_settings.model_config(self.train_config)
    self.variant = self.train_config.model.variant
    self.module = build_model(self.config)
    self._vocabulary_name = run_settings.vocabulary(self.train_config)
    self.loss_weights = run_settings.loss_weights(self.train_config)
    self.heatmap_loss = run_settings.heatmap_loss(self.train_config)
    self.FEATURE_CONVERTER_CLS = functools.partial(  # pylint: disable=invalid-name
      feature_converter.CONVERTERS[self.variant],
      image_size=self.config.image_size,
      heatmap_size=self.config.heatmap_size,
      copy_plan=decoding == "constrained",
    )
    self._mark_ids = None
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
    return forward.model_outputs(self.module, params, batch, dropout_rng)

  def loss_fn(self, params, batch, dropout_rng):
    """The native train step's loss (run_settings.loss_fn) and each term as a clu metric."""
    loss, terms = run_settings.loss_fn(
      self.module, params, batch, self.variant, self.loss_weights, dropout_rng, self.heatmap_loss
    )
    metrics = {
      f"rahf/{k}": clu_metrics.Average.from_model_output(jnp.asarray(v, jnp.float32))
      for k, v in terms.items()
      if k not in ("num_tokens", "loss")
    }
    metrics["loss"] = clu_metrics.Average.from_model_output(loss)
    metrics["num_tokens"] = clu_metrics.Average.from_model_output(terms["num_tokens"])
    return loss, metrics

  @property
  def mark_ids(self) -> list[int]:
    """The `_0` mark's tokens in the vocabulary (prompt_copy.mark_tokens), as the plan's."""
    if self._mark_ids is None:
      self._mark_ids = prompt_copy.mark_tokens(load_tokenizer(self._vocabulary_name))
    return self._mark_ids

  def decode(self, params, batch):
    """The `_0`-marked prompt ids int32 [B, Lt] (Lt: the decoder inputs' length), decoded as
    `self.decoding` says (module docstring)."""
    variables = {"params": params}
    image, prompt_ids = batch["image"], batch["prompt_ids"]
    if self.decoding == "free":
      max_length = batch["decoder_input_ids"].shape[1]
      return greedy_decode(self.module, variables, image, prompt_ids, max_length=max_length)
    missing = [k for k in ("copy_ids", "can_mark") if k not in batch]
    if missing:
      raise ValueError(
        f"constrained decoding needs the copy plan, but the batch lacks {missing}: use a task of "
        "rahf_jax.t5x.tasks with this model's FEATURE_CONVERTER_CLS, or DECODING = 'free'."
      )
    return constrained_decode(
      self.module, variables, image, prompt_ids, batch["copy_ids"], batch["can_mark"],
      self.mark_ids, self.mark_bias,
    )  # fmt: skip

  def predict_batch_with_aux(self, params, batch, rng=None, **kwargs):
    """The `_0`-marked prompt ids [B, Lt] (`decode`) and aux arrays (scores, heatmaps)."""
    del rng, kwargs
    heads = self.module.apply(
      {"params": params},
      batch["image"],
      batch["prompt_ids"],
      method=self.module.predict_heads,
    )
    ids = self.decode(params, batch)
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
    """Initial params and their logical axes, from the feature shapes t5x passes.

    Random, except the groups the config's `init` names (pretrained ViT / T5 / RAHF).
    """
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
    split = split_params_and_axes(variables)
    # config.init (finetune_from_pretrained.gin): pretrained groups, read by host callbacks when
    # t5x runs this init (a start from scratch), never when it restores a checkpoint.
    split["params"] = run_settings.with_pretrained(self.train_config, self.config, split["params"])
    return flax.core.freeze(split)
