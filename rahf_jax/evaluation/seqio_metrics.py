"""The paper's metrics as SeqIO metric functions: `metric_fn(targets, predictions) -> dict`.

Plain functions with seqio's `metric_fns` signature (seqio is not imported); they
can be listed in a `seqio.Task(..., metric_fns=[...])` or called by a t5x evaluator.
Every returned value is a Python float; an undefined aggregate (e.g. MSE over GT=0
maps when there are none) is left out of the dict. Keys are `<output type>/<metric>`.

`seqio_metric_fn(targets, predictions, aux_values)` is the t5x tasks' predict_with_aux metric:
target dicts (rahf_jax.inference.postprocess.target_dict), decoded texts and the model's aux
arrays, every output kind at once.

Accepted element types:
  scores    a float per example (one score type: `<type>` taken from `score_type`),
            or a dict {score type: float} per example;
  heatmaps  an [H, W] array per example (one heatmap type), or a dict {type: map};
  words     a `_0`-marked prompt per example (str or UTF-8 bytes).
"""

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rahf_jax import features
from rahf_jax.evaluation import heatmap_metrics, score_metrics, word_metrics
from rahf_jax.inference import postprocess


def _flatten(prefix: str, values: dict) -> dict[str, float]:
  return {
    f"{prefix}/{k}": float(v)
    for k, v in values.items()
    if v is not None and not k.startswith("num_")
  }


def _by_type(items: Sequence, single_type: str | None, kind: str) -> dict[str, list]:
  """[{type: value}] or [value] (with `single_type`) -> {type: [values]}."""
  if not len(items):
    raise ValueError(f"no {kind} to evaluate: the targets are empty.")
  if isinstance(items[0], dict):
    return {t: [item[t] for item in items] for t in items[0]}
  if single_type is None:
    raise ValueError(f"{kind}: plain values need a type; pass score_type/heatmap_type.")
  return {single_type: list(items)}


def score_metric_fn(
  targets: Sequence, predictions: Sequence, score_type: str | None = None
) -> dict[str, float]:
  """PLCC, SRCC and MSE per score type: {"<type>/plcc", "<type>/srcc", "<type>/mse"}."""
  t = _by_type(targets, score_type, "scores")
  p = _by_type(predictions, score_type, "scores")
  out = {}
  for s, values in score_metrics.all_score_metrics(p, t).items():
    out.update(_flatten(s, values))
  return out


def heatmap_metric_fn(
  targets: Sequence, predictions: Sequence, heatmap_type: str | None = None, seed: int = 0
) -> dict[str, float]:
  """The heatmap metrics per heatmap type: {"<type>/mse_all", "<type>/cc", ...}."""
  t = _by_type(targets, heatmap_type, "heatmaps")
  p = _by_type(predictions, heatmap_type, "heatmaps")
  out = {}
  for h in features.HEATMAP_TYPES:
    if h in p:
      pred = np.stack([np.asarray(m, dtype=np.float32) for m in p[h]])
      gt = np.stack([np.asarray(m, dtype=np.float32) for m in t[h]])
      out.update(_flatten(h, heatmap_metrics.heatmap_metrics(pred, gt, seed)))
  return out


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def misaligned_words_metric_fn(targets: Sequence, predictions: Sequence) -> dict[str, float]:
  """Per-example mean precision, recall, F1 of misaligned words (zero_division=0)."""
  values = word_metrics.word_metrics([_text(x) for x in predictions], [_text(x) for x in targets])
  return _flatten(features.WORDS_TYPE, values)


def score_metric_fn_for(score_type: str):
  """`score_metric_fn` bound to one score type (for tasks that emit a bare float)."""
  if score_type not in features.SCORE_TYPES:
    raise ValueError(f"unknown score type '{score_type}'; expected one of {features.SCORE_TYPES}.")
  return functools.partial(score_metric_fn, score_type=score_type)


def heatmap_metric_fn_for(heatmap_type: str):
  """`heatmap_metric_fn` bound to one heatmap type (for tasks that emit a bare map)."""
  if heatmap_type not in features.HEATMAP_TYPES:
    raise ValueError(
      f"unknown heatmap type '{heatmap_type}'; expected one of {features.HEATMAP_TYPES}."
    )
  return functools.partial(heatmap_metric_fn, heatmap_type=heatmap_type)


def _aux_row(aux_values: Mapping[str, Sequence[Any]], i: int) -> dict[str, Any]:
  return {k: v[i] for k, v in aux_values.items()}


def paired_values(
  targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[list, list]]:
  """Groups (target, prediction) values by output kind where both have them.

  Returns {"scores": ([{type: t}], [{type: p}]), "heatmaps": (...), "misaligned_words":
  ([text], [text])}, one list entry per example (augmented: per example of that type).
  """
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions.")
  grouped: dict[str, tuple[list, list]] = {}
  for kind in (postprocess.SCORES, postprocess.HEATMAPS):
    by_type: dict[str, tuple[list, list]] = {}
    for t, p in zip(targets, predictions, strict=True):
      for name, value in t.get(kind, {}).items():
        if name in p.get(kind, {}):
          by_type.setdefault(name, ([], []))
          by_type[name][0].append(value)
          by_type[name][1].append(p[kind][name])
    for name, (ts, ps) in by_type.items():
      grouped[f"{kind}/{name}"] = (ts, ps)
  words = [
    (t[postprocess.WORDS], p[postprocess.WORDS])
    for t, p in zip(targets, predictions, strict=True)
    if postprocess.WORDS in t and postprocess.WORDS in p
  ]
  if words:
    grouped[postprocess.WORDS] = ([w[0] for w in words], [w[1] for w in words])
  return grouped


def compute_metrics(
  targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
  """The paper's metrics over target/prediction dicts (the metric fns above)."""
  out: dict[str, float] = {}
  for key, (ts, ps) in paired_values(targets, predictions).items():
    if key == postprocess.WORDS:
      out.update(misaligned_words_metric_fn(ts, ps))
      continue
    kind, name = key.split("/")
    if kind == postprocess.SCORES:
      if len(ts) < 2:
        continue  # correlations need two examples
      out.update(score_metric_fn_for(name)(ts, ps))
    else:
      out.update(heatmap_metric_fn_for(name)(ts, ps))
  return out


def seqio_metric_fn(
  targets: Sequence[Mapping[str, Any]], predictions: Sequence[str], aux_values: Mapping
) -> dict[str, float]:
  """SeqIO predict_with_aux metric fn: target dicts, decoded texts, aux arrays -> metrics.

  `aux_values` maps each `output_arrays` key to one value per example (t5x's layout).
  The variant is read from the keys ("output_type" present: augmented prompt).
  """
  variant = features.AUGMENTED_PROMPT if "output_type" in aux_values else features.MULTI_HEAD
  preds = []
  for i, text in enumerate(predictions):
    row = {k: np.asarray(v)[None] for k, v in _aux_row(aux_values, i).items()}
    preds.append(postprocess.prediction_dicts(row, [postprocess.text_of(text)], variant)[0])
  return compute_metrics(targets, preds)
