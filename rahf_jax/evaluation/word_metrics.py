"""Misaligned-word metrics of the paper (Liang et al., CVPR 2024): precision, recall, F1.

The model writes the prompt back with `_0` after every misaligned word. Per example:
- prediction and reference are split on whitespace; a prediction shorter than the
  reference is padded with empty words, extra predicted words are ignored;
- reference word w is positive (label 1) if it ends in `_0` (its stem is w without
  the suffix), else negative (label 0, stem w);
- the predicted word at the same position is positive (1) if it ends in `_0` and
  its stem equals the reference stem, negative (0) if it equals the reference stem
  unmarked, and otherwise a third "wrong word" class (-1) that is never counted as
  a predicted positive;
- precision, recall and F1 of the positive class: with tp, fp, fn counted over the
  example's words, P = tp / (tp + fp), R = tp / (tp + fn), F1 = 2 tp / (2 tp + fp + fn)
  (= 2PR / (P + R); the formula of sklearn >= 1.3, which applies zero_division only
  when 2 tp + fp + fn = 0).
The reported numbers are the means of the per-example values over the examples (the
PyTorch reproduction averages sklearn's per-example `classification_report`).

Zero division follows sklearn's `zero_division` argument; the default 0.0 is what
the reproduction passes. So with the default an example with no positive reference
word (including an empty prompt) gets precision, recall and F1 all 0, whatever it
predicts (any predicted positive is a false positive), and an example without
predicted positives gets precision 0. Such examples still count in the mean, which
is why a model that is right on a clean prompt scores 0 there. `zero_division=1.0` gives
1 instead, `zero_division=float("nan")` leaves such values out of the mean (as
sklearn >= 1.3's np.nan option followed by a nan-ignoring mean).
"""

import math
from collections.abc import Sequence

import numpy as np

from rahf_jax.features import MISALIGNED_SUFFIX

WRONG_WORD = -1


def _text(x: str | bytes) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def word_labels(prediction: str | bytes, reference: str | bytes) -> tuple[list[int], list[int]]:
  """The reference's 0/1 labels and the prediction's 0/1/-1 labels, one per reference word.

  Strings or UTF-8 bytes (as TensorFlow hands them out) are accepted.
  """
  pred = _text(prediction).split()
  ref = _text(reference).split()
  pred = pred + [""] * (len(ref) - len(pred))
  ref_labels, pred_labels = [], []
  n = len(MISALIGNED_SUFFIX)
  for p, r in zip(pred, ref, strict=False):  # extra predicted words are ignored
    positive = r.endswith(MISALIGNED_SUFFIX)
    stem = r[:-n] if positive else r
    ref_labels.append(int(positive))
    if p.endswith(MISALIGNED_SUFFIX):
      pred_labels.append(1 if p[:-n] == stem else WRONG_WORD)
    else:
      pred_labels.append(0 if p == stem else WRONG_WORD)
  return ref_labels, pred_labels


def _divide(num: int, den: int, zero_division: float) -> float:
  return num / den if den > 0 else zero_division


def example_word_metrics(
  prediction: str, reference: str, zero_division: float = 0.0
) -> dict[str, float]:
  """Precision, recall and F1 of the misaligned (positive) class for one example."""
  ref_labels, pred_labels = word_labels(prediction, reference)
  r = np.asarray(ref_labels, dtype=np.int64)
  p = np.asarray(pred_labels, dtype=np.int64)
  tp = int(np.sum((r == 1) & (p == 1)))
  fp = int(np.sum((r != 1) & (p == 1)))
  fn = int(np.sum((r == 1) & (p != 1)))
  return {
    "precision": _divide(tp, tp + fp, zero_division),
    "recall": _divide(tp, tp + fn, zero_division),
    "f1": _divide(2 * tp, 2 * tp + fp + fn, zero_division),
    "num_reference_positive": int(np.sum(r == 1)),
    "num_predicted_positive": tp + fp,
    "num_reference_words": len(ref_labels),
  }


def word_metrics(
  predictions: Sequence[str], references: Sequence[str], zero_division: float = 0.0
) -> dict[str, float | int | None]:
  """Mean per-example precision, recall and F1 of misaligned words, with counts.

  Args:
    predictions: the decoded `_0`-marked prompts.
    references: the ground-truth `_0`-marked prompts, in the same order.
    zero_division: value of an undefined ratio (0.0 as in the reproduction, 1.0, or NaN
      to leave it out of the mean); see the module docstring.

  Returns:
    {"precision", "recall", "f1": float in [0, 1] or None if no example defines it,
     "precision_gt_positive", "recall_gt_positive", "f1_gt_positive": the same means over
     the examples whose reference has a misaligned word (where zero_division cannot apply
     to recall: an example without one scores 0 under the paper's averaging even when the
     prediction is right),
     "num_examples", "num_without_reference_positive", "num_without_predicted_positive",
     "num_empty_reference": int}.
  """
  if isinstance(predictions, str) or isinstance(references, str):
    raise ValueError("word_metrics takes lists of prompts, not a single string.")
  if len(predictions) != len(references):
    raise ValueError(
      f"{len(predictions)} predicted prompts but {len(references)} references; they must pair."
    )
  if not (zero_division in (0.0, 1.0) or math.isnan(zero_division)):
    raise ValueError(f"zero_division must be 0.0, 1.0 or nan, got {zero_division}.")
  rows = [
    example_word_metrics(p, r, zero_division) for p, r in zip(predictions, references, strict=True)
  ]
  out = {}
  positive = np.asarray([row["num_reference_positive"] > 0 for row in rows], dtype=bool)
  for key in ("precision", "recall", "f1"):
    values = np.asarray([row[key] for row in rows], dtype=np.float64)
    for suffix, keep in (("", ~np.isnan(values)), ("_gt_positive", positive & ~np.isnan(values))):
      out[key + suffix] = float(values[keep].mean()) if keep.any() else None
  out.update(
    num_examples=len(rows),
    num_without_reference_positive=sum(row["num_reference_positive"] == 0 for row in rows),
    num_without_predicted_positive=sum(row["num_predicted_positive"] == 0 for row in rows),
    num_empty_reference=sum(row["num_reference_words"] == 0 for row in rows),
  )
  return out
