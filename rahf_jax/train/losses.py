"""RAHF training losses: per-pixel MSE or cross-entropy (heatmaps), MSE (scores), token
cross-entropy (text).

Both variants are handled by `compute_losses`:

- Multi-head: every heatmap head and every score head is trained on every example, plus the
  decoder. total = sum_h w_h * pixel_h + sum_s w_s * mse_s + w_text * ce, where pixel_h is the
  per-pixel MSE (the paper's) or, with `heatmap_loss="bce"`, binary cross-entropy.
- Augmented prompt: each example carries `output_type` (an index into
  rahf_jax.features.AUGMENTED_OUTPUT_TYPES) and only its own output contributes: the heatmap
  term averages the per-pixel loss over the examples whose type is a heatmap type (weighted by
  their type's weight), the score term likewise over score-type examples. The decoder term is
  masked by `decoder_loss_weights` only (the pipeline zeroes it for non-word examples).

The text term is teacher-forced cross-entropy summed over real tokens
(`decoder_loss_weights`) and divided by their number. `example_weights` (optional, [B]) masks
padded examples out of every term (used for the last, padded eval batch).
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from rahf_jax import features
from rahf_jax.models.dtypes import at_least_float32

_EPS = 1e-8


def loss_weight(loss_weights: Mapping[str, float] | Any, kind: str, name: str) -> float:
  """Weight of output type `name` of kind heatmap/score/text; a per-type entry overrides."""
  get = loss_weights.get if hasattr(loss_weights, "get") else lambda k, d: d
  return float(get(name, get(kind, 1.0)))


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), _EPS)


def token_cross_entropy(
  logits: jax.Array, targets: jax.Array, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Masked mean token cross-entropy and the number of real tokens.

  Args:
    logits: [B, L, V] decoder logits.
    targets: [B, L] int target ids.
    weights: [B, L] 1 on real tokens, 0 on padding.
  """
  logits = logits.astype(at_least_float32(logits.dtype))
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  num_tokens = jnp.sum(weights)
  return jnp.sum(nll * weights) / jnp.maximum(num_tokens, 1.0), num_tokens


HEATMAP_LOSSES = ("mse", "bce")


def heatmap_loss_of(config) -> str:
  """A training config's per-pixel heatmap loss (`heatmap_loss`, "mse" when absent), checked."""
  kind = str(config.get("heatmap_loss", "mse"))
  if kind not in HEATMAP_LOSSES:
    raise ValueError(f"config.heatmap_loss={kind!r} is unknown; use one of {HEATMAP_LOSSES}.")
  return kind


def _pixel_loss(pred: jax.Array, target: jax.Array, kind: str = "mse") -> jax.Array:
  """Per-example mean over pixels of the loss between maps in [0, 1]: [B, Ho, Wo] -> [B].

  "mse": the squared error (the paper's). "bce": the binary cross-entropy of the target under
  the predicted probability; through the sigmoid its gradient in the logit is pred - target, where
  the squared error's is 2 (pred - target) pred (1 - pred), which vanishes on an annotated pixel
  once the map has learned to be near 0 everywhere (the MSE's blank-map plateau).
  """
  dtype = at_least_float32(pred.dtype)
  p, y = pred.astype(dtype), target.astype(dtype)
  if kind == "mse":
    err = (p - y) ** 2
  elif kind == "bce":
    tiny = jnp.finfo(dtype).tiny  # keeps log finite where the sigmoid rounded to 0 or 1
    err = -(y * jnp.log(p + tiny) + (1 - y) * jnp.log(1 - p + tiny))
  else:
    raise ValueError(f"heatmap loss {kind!r} unknown; use one of {HEATMAP_LOSSES}.")
  return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)


def compute_losses(
  outputs: Mapping[str, Any],
  batch: Mapping[str, jax.Array],
  variant: str,
  loss_weights: Mapping[str, float] | Any,
  example_weights: jax.Array | None = None,
  heatmap_loss: str = "mse",
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Total weighted loss and each term separately.

  Args:
    outputs: the model's output dict for `variant` (see rahf_jax/features.py and the models
      room): multi-head {"heatmaps": {h: [B,Ho,Wo]}, "scores": {s: [B]}, "decoder_logits"},
      augmented {"heatmap", "score", "decoder_logits"}.
    batch: the model features of the batch (rahf_jax/features.py).
    variant: features.MULTI_HEAD or features.AUGMENTED_PROMPT.
    loss_weights: mapping with "heatmap", "score", "text" and optional per-type overrides.
    example_weights: optional [B] 0/1 mask of real examples.
    heatmap_loss: the per-pixel heatmap loss, "mse" or "bce" (see `_pixel_loss`).

  Returns:
    (loss, aux): aux has "loss", "heatmap_loss", "score_loss", "text_loss", one
    "heatmap_<h>"/"score_<s>" entry per type (unweighted: the pixel loss, the score MSE) and
    "num_tokens".
  """
  targets = batch["decoder_target_ids"]
  bsz = targets.shape[0]
  # float32, or float64 for a float64 model (the losses follow the outputs' precision).
  loss_dtype = at_least_float32(outputs["decoder_logits"].dtype)
  ex_w = jnp.ones((bsz,), loss_dtype) if example_weights is None else example_weights
  ex_w = ex_w.astype(loss_dtype)
  aux: dict[str, jax.Array] = {}

  tok_w = batch["decoder_loss_weights"].astype(loss_dtype) * ex_w[:, None]
  text_loss, num_tokens = token_cross_entropy(outputs["decoder_logits"], targets, tok_w)
  aux["num_tokens"] = num_tokens

  if variant == features.MULTI_HEAD:
    heatmap_term = jnp.zeros((), loss_dtype)
    for h in features.HEATMAP_TYPES:
      pix = _pixel_loss(outputs["heatmaps"][h], batch[f"heatmap_{h}"], heatmap_loss)
      term = _weighted_mean(pix, ex_w)
      aux[f"heatmap_{h}"] = term
      heatmap_term += loss_weight(loss_weights, "heatmap", h) * term
    score_loss = jnp.zeros((), loss_dtype)
    for s in features.SCORE_TYPES:
      err = (outputs["scores"][s].astype(loss_dtype) - batch[f"score_{s}"]) ** 2
      mse = _weighted_mean(err, ex_w)
      aux[f"score_{s}"] = mse
      score_loss += loss_weight(loss_weights, "score", s) * mse
  elif variant == features.AUGMENTED_PROMPT:
    otype = batch["output_type"].astype(jnp.int32)
    pix = _pixel_loss(outputs["heatmap"], batch["heatmap"], heatmap_loss)
    sq = (outputs["score"].astype(loss_dtype) - batch["score"].astype(loss_dtype)) ** 2
    heat_num = jnp.zeros((), loss_dtype)
    heat_den = jnp.zeros((), loss_dtype)
    score_num = jnp.zeros((), loss_dtype)
    score_den = jnp.zeros((), loss_dtype)
    for i, name in enumerate(features.AUGMENTED_OUTPUT_TYPES):
      sel = (otype == i).astype(loss_dtype) * ex_w
      if name in features.HEATMAP_TYPES:
        aux[f"heatmap_{name}"] = _weighted_mean(pix, sel)
        heat_num += loss_weight(loss_weights, "heatmap", name) * jnp.sum(pix * sel)
        heat_den += jnp.sum(sel)
      elif name in features.SCORE_TYPES:
        aux[f"score_{name}"] = _weighted_mean(sq, sel)
        score_num += loss_weight(loss_weights, "score", name) * jnp.sum(sq * sel)
        score_den += jnp.sum(sel)
    heatmap_term = heat_num / jnp.maximum(heat_den, _EPS)
    score_loss = score_num / jnp.maximum(score_den, _EPS)
  else:
    raise ValueError(f"Unknown model variant {variant!r}; use one of {features.VARIANTS}.")

  text_term = loss_weight(loss_weights, "text", features.WORDS_TYPE) * text_loss
  loss = heatmap_term + score_loss + text_term
  aux.update(loss=loss, heatmap_loss=heatmap_term, score_loss=score_loss, text_loss=text_loss)
  return loss, aux
