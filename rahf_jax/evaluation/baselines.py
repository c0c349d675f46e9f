"""Trivial baselines, scored with the same metrics on the same split and ground truth as a model.

Every baseline predicts without looking at the image or the prompt's meaning:
  scores    "mean_score": the mean of the split's ground-truth scores, for every example (its
            MSE is the variance of the ground truth); "train_mean_score": the mean of the
            training split's scores, when the caller passes it.
  heatmaps  "all_zeros": the all-zero map; "mean_gt_map": the pixel-wise mean of the split's
            ground-truth maps of that type (all maps, at the prediction's resolution), the
            same map for every example.
  words     "unmarked_prompt": the reference prompt without any `_0` mark (no word predicted
            misaligned); "all_marked": every word of the reference marked `_0`.
The mean score and the mean GT map are computed from the evaluated split itself, so they are
the best constant predictions for it in MSE: an upper bound of what a constant achieves.

Metrics that a constant prediction leaves undefined are None and named, with the reason, in
the baseline's "undefined" entry ({metric: reason}): PLCC and SRCC of a constant score vector
(zero variance); CC, NSS and AUC-Judd of a constant map (zero variance; AUC-Judd would rank the
pixels by its jitter alone); KLD and SIM of a map that sums to 0 (it has no distribution).
"""

from collections.abc import Mapping, Sequence

import numpy as np

from rahf_jax import features
from rahf_jax.evaluation import heatmap_metrics, protocols, score_metrics, word_metrics

MEAN_SCORE = "mean_score"
TRAIN_MEAN_SCORE = "train_mean_score"
ALL_ZEROS = "all_zeros"
MEAN_GT_MAP = "mean_gt_map"
UNMARKED_PROMPT = "unmarked_prompt"
ALL_MARKED = "all_marked"

CONSTANT_SCORE = "a constant prediction has zero variance"
CONSTANT_MAP = "a constant map has zero variance"
ZERO_SUM_MAP = "a map that sums to 0 has no distribution"


def constant_score_metrics(value: float, target) -> dict:
  """The score metrics of predicting `value` for every example of `target`.

  Returns:
    {"value", "mse", "num_examples"; "plcc", "srcc": None; "undefined": {metric: reason}}.
  """
  t = np.asarray(target, dtype=np.float64).reshape(-1)
  return {
    "value": float(value),
    "plcc": None,
    "srcc": None,
    "mse": score_metrics.mse(np.full_like(t, value), t),
    "num_examples": int(t.size),
    "undefined": {"plcc": CONSTANT_SCORE, "srcc": CONSTANT_SCORE},
  }


def score_baselines(
  references: Mapping[str, Sequence[float]], train_means: Mapping[str, float] | None = None
) -> dict:
  """{score type: {"mean_score": ..., ["train_mean_score": ...]}} (see the module docstring)."""
  out = {}
  for s in features.SCORE_TYPES:
    if s not in references:
      continue
    t = np.asarray(references[s], dtype=np.float64).reshape(-1)
    out[s] = {MEAN_SCORE: constant_score_metrics(float(t.mean()) if t.size else 0.0, t)}
    if train_means and s in train_means:
      out[s][TRAIN_MEAN_SCORE] = constant_score_metrics(float(train_means[s]), t)
  return out


def constant_map_metrics(baseline_map, gt, seed: int = 0, protocol: str = protocols.PAPER) -> dict:
  """The heatmap metrics of predicting `baseline_map` [H, W] for every map of `gt` [N, H', W'].

  As heatmap_metrics.heatmap_metrics (the ground truth resized to [H, W] there), with the
  metrics the map leaves undefined set to None and listed in "undefined" (module docstring).
  """
  base = np.asarray(baseline_map, dtype=np.float32)
  g = np.asarray(gt, dtype=np.float32)
  undefined = {}
  if not base.max() > base.min():
    undefined.update(cc=CONSTANT_MAP, nss=CONSTANT_MAP, auc_judd=CONSTANT_MAP)
  if not base.sum() > 0:
    undefined.update(kld=ZERO_SUM_MAP, sim=ZERO_SUM_MAP)
  pred = np.broadcast_to(base, (g.shape[0], *base.shape))
  out = heatmap_metrics.heatmap_metrics(
    pred, g, seed, protocol=protocol, with_auc_judd="auc_judd" not in undefined
  )
  for k in undefined:
    out[k] = None
  out["undefined"] = undefined
  return out


def heatmap_baselines(
  gt, size: Sequence[int], seed: int = 0, protocol: str = protocols.PAPER
) -> dict:
  """{"all_zeros": ..., "mean_gt_map": ...} for ground-truth maps `gt` compared at `size`."""
  g = heatmap_metrics.resize_heatmaps(np.asarray(gt, dtype=np.float32), size)
  mean_map = g.astype(np.float64).mean(axis=0).astype(np.float32)
  return {
    ALL_ZEROS: constant_map_metrics(np.zeros(tuple(size), np.float32), g, seed, protocol),
    MEAN_GT_MAP: constant_map_metrics(mean_map, g, seed, protocol),
  }


def _words(prompt) -> list[str]:
  return (prompt.decode("utf-8") if isinstance(prompt, bytes) else str(prompt)).split()


def unmark(prompt) -> str:
  """The prompt with the `_0` mark removed from every word."""
  n = len(features.MISALIGNED_SUFFIX)
  return " ".join(w[:-n] if w.endswith(features.MISALIGNED_SUFFIX) else w for w in _words(prompt))


def mark_all(prompt) -> str:
  """The prompt with every word marked `_0`."""
  return " ".join(w + features.MISALIGNED_SUFFIX for w in _words(unmark(prompt)))


def word_baselines(references: Sequence) -> dict:
  """{"unmarked_prompt": word metrics, "all_marked": word metrics} against `references`."""
  refs = list(references)
  return {
    UNMARKED_PROMPT: word_metrics.word_metrics([unmark(r) for r in refs], refs),
    ALL_MARKED: word_metrics.word_metrics([mark_all(r) for r in refs], refs),
  }


def compute_baselines(
  predictions: Mapping,
  references: Mapping,
  seed: int = 0,
  protocol: str = protocols.PAPER,
  train_score_means: Mapping[str, float] | None = None,
) -> dict:
  """Every baseline of the output types present, keyed by output type names.

  Args:
    predictions: {output type: values} as for tables.compute_all_metrics; only the heatmaps'
      resolution is read (the baselines are compared at the model's resolution).
    references: the ground truth, same keys.
    seed: seed of the AUC-Judd jitter.
    protocol: "paper" or "reproduction", as for the model's metrics.
    train_score_means: {score type: mean of the training split's scores}, optional.

  Returns:
    {"scores": {s: {...}}, "heatmaps": {h: {...}}, "words": {...}}, the sections present.
  """
  protocols.check_protocol(protocol)
  out = {}
  scores = {s: references[s] for s in features.SCORE_TYPES if s in references}
  if scores:
    out["scores"] = score_baselines(scores, train_score_means)
  maps = [h for h in features.HEATMAP_TYPES if h in references and h in predictions]
  if maps:
    out["heatmaps"] = {
      h: heatmap_baselines(references[h], np.shape(predictions[h])[1:], seed, protocol)
      for h in maps
    }
  if features.WORDS_TYPE in references:
    out["words"] = word_baselines(references[features.WORDS_TYPE])
  return out
