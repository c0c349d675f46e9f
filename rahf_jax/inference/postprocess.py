"""Model outputs -> per-example prediction dicts; the same for targets of SeqIO examples.

Shared by our predictor, the notebook and the t5x adapter (which only adapts), so the
output structure is defined once. No TensorFlow, no SeqIO, no t5x imports here.

A prediction (or target) dict holds any subset of

  {"scores": {score type: float}, "heatmaps": {heatmap type: float32 [H, W]},
   "misaligned_words": "the prompt with _0 on every misaligned word"}

Multi-head examples fill all three; an augmented-prompt example fills only its own output
type (`merge_predictions` joins the seven parts of one image/prompt pair).

Flat output arrays (`output_arrays`) are what a batched predictor (and t5x's aux values)
carry: `score_<s>` [B] and `heatmap_<h>` [B, H, W] (multi-head), or `score` [B],
`heatmap` [B, H, W] and `output_type` [B] (augmented prompt).

SeqIO evaluation (t5x.eval, t5x.train's infer_eval): `seqio_postprocess_fn` turns a task
example into its target dict, and `seqio_metric_fn(targets, predictions, aux_values)` scores
decoded texts + aux arrays with the metric functions of rahf_jax.evaluation.seqio_metrics.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rahf_jax import features as F

SCORES = "scores"
HEATMAPS = "heatmaps"
WORDS = F.WORDS_TYPE


def output_arrays(
  outputs: Mapping[str, Any], variant: str, output_type: Any = None
) -> dict[str, Any]:
  """The model's non-text outputs as a flat dict of batch-major arrays (jit-friendly).

  Args:
    outputs: the network's output dict (multi-head {"heatmaps": {h}, "scores": {s}, ...},
      augmented {"heatmap", "score", ...}).
    variant: features.MULTI_HEAD or features.AUGMENTED_PROMPT.
    output_type: augmented prompt only: the batch's int [B] output types, copied in.
  """
  if variant == F.MULTI_HEAD:
    arrays = {f"score_{s}": outputs[SCORES][s] for s in F.SCORE_TYPES}
    arrays.update({f"heatmap_{h}": outputs[HEATMAPS][h] for h in F.HEATMAP_TYPES})
    return arrays
  if variant == F.AUGMENTED_PROMPT:
    arrays = {"score": outputs["score"], "heatmap": outputs["heatmap"]}
    if output_type is not None:
      arrays["output_type"] = output_type
    return arrays
  raise ValueError(f"Unknown variant {variant!r}; use one of {F.VARIANTS}.")


def strip_ids(ids: Sequence[int]) -> list[int]:
  """Token ids up to (not including) the first EOS, with PAD ids dropped."""
  out = []
  for i in np.asarray(ids).reshape(-1).tolist():
    if i == F.EOS_ID:
      break
    if i != F.PAD_ID:
      out.append(int(i))
  return out


def decode_texts(ids: Any, vocabulary: Any) -> list[str]:
  """Decoded strings of a [B, L] id array; `vocabulary` has a `.decode(list[int])`."""
  return [text_of(vocabulary.decode(strip_ids(row))) for row in np.asarray(ids)]


def text_of(x: Any) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _type_name(index: Any) -> str:
  i = int(np.asarray(index))
  if not 0 <= i < len(F.AUGMENTED_OUTPUT_TYPES):
    raise ValueError(
      f"output_type {i} is out of range; expected 0..{len(F.AUGMENTED_OUTPUT_TYPES) - 1} "
      "(an index into features.AUGMENTED_OUTPUT_TYPES)."
    )
  return F.AUGMENTED_OUTPUT_TYPES[i]


def _one_type_dict(name: str, score: Any, heatmap: Any, text: str | None) -> dict[str, Any]:
  """The part of a prediction dict that output type `name` fills."""
  if name in F.SCORE_TYPES:
    return {SCORES: {name: float(np.asarray(score))}}
  if name in F.HEATMAP_TYPES:
    return {HEATMAPS: {name: np.asarray(heatmap, np.float32)}}
  return {WORDS: text}


def misaligned_prompt_words(prompt: str, marked: str) -> list[str]:
  """The prompt words that the decoded `_0`-marked prompt marks, in prompt order.

  When the decoder reproduced the prompt word for word, the marks are read by position;
  otherwise a prompt word counts as marked when the same word carries `_0` somewhere in
  `marked` (each marked occurrence matches one prompt occurrence). Marked words that are not
  prompt words are left out.
  """
  words = F.split_prompt_words(prompt)
  decoded = marked.split()
  suffix = F.MISALIGNED_SUFFIX
  bare = [w[: -len(suffix)] if w.endswith(suffix) else w for w in decoded]
  if bare == words:
    return [w for w, d in zip(words, decoded, strict=True) if d.endswith(suffix)]
  pool: dict[str, int] = {}
  for w in decoded:
    if w.endswith(suffix):
      pool[w[: -len(suffix)]] = pool.get(w[: -len(suffix)], 0) + 1
  out = []
  for w in words:
    if pool.get(w, 0) > 0:
      pool[w] -= 1
      out.append(w)
  return out


def prediction_dicts(
  arrays: Mapping[str, Any], texts: Sequence[str] | None, variant: str
) -> list[dict[str, Any]]:
  """One prediction dict per example from `output_arrays` (as numpy) and decoded texts.

  Args:
    arrays: `output_arrays(...)` of a batch (augmented: with "output_type").
    texts: decoded `_0`-marked prompts, one per example (None: no words entry).
    variant: features.MULTI_HEAD or features.AUGMENTED_PROMPT.
  """
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  n = len(next(iter(arrays.values())))
  if texts is not None and len(texts) != n:
    raise ValueError(f"{len(texts)} texts for a batch of {n} examples; pass one per example.")
  out = []
  for i in range(n):
    text = None if texts is None else texts[i]
    if variant == F.MULTI_HEAD:
      d = {
        SCORES: {s: float(arrays[f"score_{s}"][i]) for s in F.SCORE_TYPES},
        HEATMAPS: {h: arrays[f"heatmap_{h}"][i].astype(np.float32) for h in F.HEATMAP_TYPES},
      }
      if text is not None:
        d[WORDS] = text
    elif variant == F.AUGMENTED_PROMPT:
      if "output_type" not in arrays:
        raise ValueError("augmented-prompt arrays need 'output_type' (pass it to output_arrays).")
      name = _type_name(arrays["output_type"][i])
      d = _one_type_dict(name, arrays["score"][i], arrays["heatmap"][i], text)
    else:
      raise ValueError(f"Unknown variant {variant!r}; use one of {F.VARIANTS}.")
    out.append(d)
  return out


def merge_predictions(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Joins partial prediction dicts (e.g. the seven augmented-prompt outputs of one pair)."""
  merged: dict[str, Any] = {}
  for part in parts:
    for key, value in part.items():
      if isinstance(value, Mapping):
        merged.setdefault(key, {}).update(value)
      else:
        merged[key] = value
  return merged


def target_dict(example: Mapping[str, Any]) -> dict[str, Any]:
  """The target dict of one SeqIO task example (numpy values, either variant).

  Words targets are left out where the example's word labels are invalid
  (`decoder_weight` 0), and, for the augmented variant, on every non-words example.
  """
  text = example.get("targets_pretokenized", None)
  text = None if text is None else text_of(text)
  valid = float(np.asarray(example.get("decoder_weight", 1.0))) > 0
  if "output_type" in example:
    name = _type_name(example["output_type"])
    d = _one_type_dict(name, example.get("score", 0.0), example.get("heatmap"), text)
    if name == WORDS and not (valid and text is not None):
      return {}
    return d
  d = {
    SCORES: {s: float(np.asarray(example[f"score_{s}"])) for s in F.SCORE_TYPES},
    HEATMAPS: {h: np.asarray(example[f"heatmap_{h}"], np.float32) for h in F.HEATMAP_TYPES},
  }
  if valid and text is not None:
    d[WORDS] = text
  return d


def seqio_postprocess_fn(output: Any, example: Mapping[str, Any] | None = None, is_target=False):
  """SeqIO task postprocess_fn: targets -> target dict; predictions (decoded text) unchanged."""
  if is_target:
    if example is None:
      raise ValueError("seqio_postprocess_fn needs the example for targets.")
    return target_dict(example)
  return text_of(output)


def sequence_log_likelihood(logits: Any, targets: Any, weights: Any, xp: Callable | Any = None):
  """Per-example sum of target-token log-probabilities (t5x's score_batch): [B].

  Args:
    logits: [B, L, V] decoder logits; targets: [B, L] ids; weights: [B, L] 0/1.
    xp: array module (jax.numpy inside jit; numpy by default).
  """
  if xp is None:
    xp = np
  dtype = xp.promote_types(logits.dtype, xp.float32)  # float64 logits stay float64
  logits = logits.astype(dtype)
  shifted = logits - xp.max(logits, axis=-1, keepdims=True)
  log_z = xp.log(xp.sum(xp.exp(shifted), axis=-1))
  picked = xp.take_along_axis(shifted, targets[..., None].astype(xp.int32), axis=-1)[..., 0]
  return xp.sum((picked - log_z) * weights.astype(dtype), axis=-1)
