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

Every term is a sum over the batch divided by a count that depends on the batch alone (real
tokens, real examples, examples of a type): `loss_denominators`. Given the denominators of a
whole batch, `compute_losses` on a slice of it returns that slice's share of the whole batch's
terms, so the terms (and their gradients) of microbatches add up to the full batch's: what the
train step's `num_microbatches` relies on.
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


def _ratio(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  return numerator / jnp.maximum(denominator, _EPS)


def token_cross_entropy(
  logits: jax.Array, targets: jax.Array, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Masked mean token cross-entropy and the number of real tokens.

  Args:
    logits: [B, L, V] decoder logits.
    targets: [B, L] int target ids.
    weights: [B, L] 1 on real tokens, 0 on padding.
  """
  nll_sum, num_tokens = _token_nll_sum(logits, targets, weights)
  return nll_sum / jnp.maximum(num_tokens, 1.0), num_tokens


def _token_nll_sum(logits, targets, weights) -> tuple[jax.Array, jax.Array]:
  logits = logits.astype(at_least_float32(logits.dtype))
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return jnp.sum(nll * weights), jnp.sum(weights)


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


def loss_denominators(
  batch: Mapping[str, jax.Array],
  variant: str,
  example_weights: jax.Array | None = None,
  dtype=jnp.float32,
) -> dict[str, jax.Array]:
  """The counts every loss term is divided by; they depend on the batch, not the model.

  "tokens": real target tokens; "examples": real examples; for the augmented variant also
  "type_<name>": real examples of each output type, and "heatmap"/"score": those of the
  heatmap and score types.
  """
  bsz = batch["decoder_target_ids"].shape[0]
  ex_w = jnp.ones((bsz,), dtype) if example_weights is None else example_weights.astype(dtype)
  dens = {
    "tokens": jnp.sum(batch["decoder_loss_weights"].astype(dtype) * ex_w[:, None]),
    "examples": jnp.sum(ex_w),
  }
  if variant == features.AUGMENTED_PROMPT:
    otype = batch["output_type"].astype(jnp.int32)
    dens["heatmap"] = dens["score"] = jnp.zeros((), dtype)
    for i, name in enumerate(features.AUGMENTED_OUTPUT_TYPES):
      dens[f"type_{name}"] = jnp.sum((otype == i).astype(dtype) * ex_w)
      kind = "heatmap" if name in features.HEATMAP_TYPES else "score"
      if name != features.WORDS_TYPE:
        dens[kind] += dens[f"type_{name}"]
  return dens


def compute_losses(
  outputs: Mapping[str, Any],
  batch: Mapping[str, jax.Array],
  variant: str,
  loss_weights: Mapping[str, float] | Any,
  example_weights: jax.Array | None = None,
  heatmap_loss: str = "mse",
  denominators: Mapping[str, jax.Array] | None = None,
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
    denominators: `loss_denominators` of the whole batch this one is a slice of (default: of
      this batch); with them every term is this slice's share of the whole batch's term.

  Returns:
    (loss, aux): aux has "loss", "heatmap_loss", "score_loss", "text_loss", one
    "heatmap_<h>"/"score_<s>" entry per type (unweighted: the pixel loss, the score MSE) and
    "num_tokens" (of the whole batch when `denominators` are given).
  """
  targets = batch["decoder_target_ids"]
  bsz = targets.shape[0]
  # float32, or float64 for a float64 model (the losses follow the outputs' precision).
  loss_dtype = at_least_float32(outputs["decoder_logits"].dtype)
  ex_w = jnp.ones((bsz,), loss_dtype) if example_weights is None else example_weights
  ex_w = ex_w.astype(loss_dtype)
  aux: dict[str, jax.Array] = {}

  if variant not in features.VARIANTS:
    raise ValueError(f"Unknown model variant {variant!r}; use one of {features.VARIANTS}.")
  dens = denominators or loss_denominators(batch, variant, example_weights, loss_dtype)

  tok_w = batch["decoder_loss_weights"].astype(loss_dtype) * ex_w[:, None]
  nll_sum, _ = _token_nll_sum(outputs["decoder_logits"], targets, tok_w)
  text_loss = nll_sum / jnp.maximum(dens["tokens"], 1.0)
  aux["num_tokens"] = dens["tokens"]

  if variant == features.MULTI_HEAD:
    heatmap_term = jnp.zeros((), loss_dtype)
    for h in features.HEATMAP_TYPES:
      pix = _pixel_loss(outputs["heatmaps"][h], batch[f"heatmap_{h}"], heatmap_loss)
      term = _ratio(jnp.sum(pix * ex_w), dens["examples"])
      aux[f"heatmap_{h}"] = term
      heatmap_term += loss_weight(loss_weights, "heatmap", h) * term
    score_loss = jnp.zeros((), loss_dtype)
    for s in features.SCORE_TYPES:
      err = (outputs["scores"][s].astype(loss_dtype) - batch[f"score_{s}"]) ** 2
      mse = _ratio(jnp.sum(err * ex_w), dens["examples"])
      aux[f"score_{s}"] = mse
      score_loss += loss_weight(loss_weights, "score", s) * mse
  else:
    otype = batch["output_type"].astype(jnp.int32)
    pix = _pixel_loss(outputs["heatmap"], batch["heatmap"], heatmap_loss)
    sq = (outputs["score"].astype(loss_dtype) - batch["score"].astype(loss_dtype)) ** 2
    heat_num = jnp.zeros((), loss_dtype)
    score_num = jnp.zeros((), loss_dtype)
    for i, name in enumerate(features.AUGMENTED_OUTPUT_TYPES):
      sel = (otype == i).astype(loss_dtype) * ex_w
      if name in features.HEATMAP_TYPES:
        aux[f"heatmap_{name}"] = _ratio(jnp.sum(pix * sel), dens[f"type_{name}"])
        heat_num += loss_weight(loss_weights, "heatmap", name) * jnp.sum(pix * sel)
      elif name in features.SCORE_TYPES:
        aux[f"score_{name}"] = _ratio(jnp.sum(sq * sel), dens[f"type_{name}"])
        score_num += loss_weight(loss_weights, "score", name) * jnp.sum(sq * sel)
    heatmap_term = _ratio(heat_num, dens["heatmap"])
    score_loss = _ratio(score_num, dens["score"])

  text_term = loss_weight(loss_weights, "text", features.WORDS_TYPE) * text_loss
  loss = heatmap_term + score_loss + text_term
  aux.update(loss=loss, heatmap_loss=heatmap_term, score_loss=score_loss, text_loss=text_loss)
  return loss, aux
