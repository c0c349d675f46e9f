"""Score metrics of the paper: PLCC (Pearson) and SRCC (Spearman) per score type, and the MSE.

The paper's definition: for each score type, over the whole evaluation split, the
Pearson linear correlation (PLCC) and Spearman rank correlation (SRCC) between
predicted and ground-truth scores. Ties are ranked by their average rank, as in
`scipy.stats.spearmanr`.

A correlation with a constant vector is undefined (scipy returns NaN and warns).
Here it is 0.0 instead, so that the metrics stay NaN-free and JSON-clean: a
constant prediction carries no information about the ranking of the examples.

Under `protocol="reproduction"` (rahf_jax.evaluation.protocols) the correlations are
`scipy.stats.pearsonr(pred, gt)[0]` and `spearmanr(pred, gt)[0]`, as the reproduction's
train.py `evaluate_model` computes them; where scipy gives NaN (a constant vector) the value is
None (JSON null), since the reproduction would report NaN there, not 0.

Beside the correlations, `score_metrics` reports the mean squared error of the scores ("mse",
the same under both protocols): the one figure that a constant prediction (the baselines of
rahf_jax.evaluation.baselines) also has, so the model can be compared with it.
"""

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from rahf_jax import features
from rahf_jax.evaluation import protocols


def _as_vector(x, name: str) -> np.ndarray:
  """A float64 1-D copy of `x`, with a clear error for wrong shapes or NaNs."""
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim > 1 and arr.size == max(arr.shape):  # [N, 1] or [1, N]
    arr = arr.reshape(-1)
  if arr.ndim != 1:
    raise ValueError(f"{name}: expected a vector of scores, got shape {arr.shape}.")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name}: scores contain NaN or Inf; fix the model output or the labels.")
  return arr


def pearson(pred, target) -> float:
  """Pearson linear correlation coefficient (PLCC) of two score vectors.

  Args:
    pred: predicted scores, shape [N].
    target: ground-truth scores, shape [N].

  Returns:
    The correlation in [-1, 1]; 0.0 when either vector is constant or N < 2.
  """
  p = _as_vector(pred, "predictions")
  t = _as_vector(target, "targets")
  if p.shape != t.shape:
    raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in length.")
  if p.size < 2:
    return 0.0
  pc = p - p.mean()
  tc = t - t.mean()
  den = np.sqrt(np.dot(pc, pc) * np.dot(tc, tc))
  if den == 0.0 or not np.isfinite(den):
    return 0.0
  return float(np.clip(np.dot(pc, tc) / den, -1.0, 1.0))


def spearman(pred, target) -> float:
  """Spearman rank correlation coefficient (SRCC): Pearson of average ranks."""
  p = _as_vector(pred, "predictions")
  t = _as_vector(target, "targets")
  if p.shape != t.shape:
    raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in length.")
  return pearson(stats.rankdata(p), stats.rankdata(t))


def _scipy_or_none(fn, pred, target) -> float | None:
  """fn(pred, target)[0] as scipy computes it; None where that is NaN (or N < 2)."""
  p = _as_vector(pred, "predictions")
  t = _as_vector(target, "targets")
  if p.shape != t.shape:
    raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in length.")
  if p.size < 2:
    return None
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # scipy warns on constant input and returns NaN
    value = float(fn(p, t)[0])
  return None if math.isnan(value) else value


def mse(pred, target) -> float | None:
  """Mean squared error of two score vectors; None for no examples."""
  p = _as_vector(pred, "predictions")
  t = _as_vector(target, "targets")
  if p.shape != t.shape:
    raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in length.")
  return float(np.mean((p - t) ** 2)) if p.size else None


def score_metrics(pred, target, protocol: str = protocols.PAPER) -> dict[str, float]:
  """PLCC, SRCC, MSE and the count for one score type (the module docstring: `protocol`)."""
  if protocols.check_protocol(protocol) == protocols.REPRODUCTION:
    plcc = _scipy_or_none(stats.pearsonr, pred, target)
    srcc = _scipy_or_none(stats.spearmanr, pred, target)
  else:
    plcc, srcc = pearson(pred, target), spearman(pred, target)
  return {"plcc": plcc, "srcc": srcc, "mse": mse(pred, target), "num_examples": len(pred)}


def all_score_metrics(
  predictions: Mapping[str, Sequence[float]],
  references: Mapping[str, Sequence[float]],
  protocol: str = protocols.PAPER,
) -> dict[str, dict[str, float]]:
  """PLCC/SRCC for every score type present in both dicts, in the paper's order.

  Args:
    predictions: {score_type: [N]} with score types from `features.SCORE_TYPES`.
    references: the same for the ground truth.
    protocol: "paper" or "reproduction" (see the module docstring).

  Returns:
    {score_type: {"plcc", "srcc", "mse", "num_examples"}}.
  """
  unknown = (set(predictions) | set(references)) - set(features.SCORE_TYPES)
  if unknown:
    raise ValueError(
      f"unknown score types {sorted(unknown)}; expected names from {features.SCORE_TYPES}."
    )
  out = {}
  for s in features.SCORE_TYPES:
    if s in predictions and s in references:
      out[s] = score_metrics(predictions[s], references[s], protocol)
  return out
