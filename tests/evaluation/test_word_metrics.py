"""Misaligned-word metrics against a direct loop with sklearn-style report averaging."""

import math

import numpy as np
import pytest

from rahf_jax.evaluation import word_metrics as wm


def classification_report_loop(y_true, y_pred, labels=(0, 1), zero_division=0.0):
  """Per-class precision/recall/F1 as sklearn's classification_report computes them."""
  report = {}
  for c in labels:
    tp = fp = fn = 0
    for t, p in zip(y_true, y_pred, strict=True):
      if p == c and t == c:
        tp += 1
      elif p == c:
        fp += 1
      elif t == c:
        fn += 1
    precision = tp / (tp + fp) if tp + fp else zero_division
    recall = tp / (tp + fn) if tp + fn else zero_division
    # sklearn >= 1.3: F = 2tp / (2tp + fp + fn), zero_division when that denominator is 0.
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else zero_division
    report[c] = {"precision": precision, "recall": recall, "f1": f1}
  return report


def reference_loop(predictions, references, zero_division=0.0):
  """The reproduction's per-example rule, written out, averaged over examples."""
  sums = {"precision": [], "recall": [], "f1": []}
  for pred_text, ref_text in zip(predictions, references, strict=True):
    pred = pred_text.split()
    ref = ref_text.split()
    while len(pred) < len(ref):
      pred.append("")
    y_true, y_pred = [], []
    for k in range(len(ref)):
      r, p = ref[k], pred[k]
      if r[-2:] == "_0":
        y_true.append(1)
        stem = r[: len(r) - 2]
      else:
        y_true.append(0)
        stem = r
      if p[-2:] == "_0":
        y_pred.append(1 if p[: len(p) - 2] == stem else -1)
      elif p == stem:
        y_pred.append(0)
      else:
        y_pred.append(-1)
    positive = classification_report_loop(y_true, y_pred, zero_division=zero_division)[1]
    for key in sums:
      if not math.isnan(positive[key]):
        sums[key].append(positive[key])
  return {k: (sum(v) / len(v) if v else None) for k, v in sums.items()}


def random_examples(seed, n=60):
  rng = np.random.default_rng(seed)
  vocab = ["a", "red", "cat", "on", "the", "blue", "sofa", "dog", "two", "birds"]
  preds, refs = [], []
  for _ in range(n):
    words = list(rng.choice(vocab, size=rng.integers(0, 8)))
    marked = [w + "_0" if rng.random() < 0.3 else w for w in words]
    pred = []
    for w in words:
      u = rng.random()
      if u < 0.5:
        pred.append(w + "_0" if rng.random() < 0.3 else w)  # independent mark
      elif u < 0.7:
        pred.append(str(rng.choice(vocab)) + ("_0" if rng.random() < 0.5 else ""))
      else:
        pred.append(marked[len(pred)])  # copy of the truth
    cut = rng.integers(0, 3)
    if cut == 1:
      pred = pred[: rng.integers(0, len(pred) + 1)]  # shorter prediction
    elif cut == 2:
      pred += ["extra", "words_0"]  # longer prediction
    preds.append(" ".join(pred))
    refs.append(" ".join(marked))
  return preds, refs


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("zero_division", [0.0, 1.0, float("nan")])
def test_matches_reference_loop(seed, zero_division):
  preds, refs = random_examples(seed)
  ours = wm.word_metrics(preds, refs, zero_division=zero_division)
  expected = reference_loop(preds, refs, zero_division=zero_division)
  for key in ("precision", "recall", "f1"):
    assert ours[key] == pytest.approx(expected[key], abs=1e-12)
  assert ours["num_examples"] == len(refs)


@pytest.mark.parametrize("seed", [0, 1])
def test_gt_positive_means_match_the_loop_on_that_subset(seed):
  preds, refs = random_examples(seed)
  keep = [i for i, r in enumerate(refs) if any(w.endswith("_0") for w in r.split())]
  assert 0 < len(keep) < len(refs)
  ours = wm.word_metrics(preds, refs)
  expected = reference_loop([preds[i] for i in keep], [refs[i] for i in keep])
  for key in ("precision", "recall", "f1"):
    assert ours[f"{key}_gt_positive"] == pytest.approx(expected[key], abs=1e-12)
  assert ours["num_without_reference_positive"] == len(refs) - len(keep)


def test_hand_worked_examples():
  cases = [
    # (prediction, reference, precision, recall, f1)
    ("a yellow_0 cat", "a yellow_0 cat", 1.0, 1.0, 1.0),
    ("a yellow cat", "a yellow_0 cat", 0.0, 0.0, 0.0),  # fn 1, no predicted positive
    ("a yellow_0 cat_0", "a yellow_0 cat", 0.5, 1.0, 2 / 3),  # tp 1, fp 1
    ("a blue_0 cat", "a yellow_0 cat", 0.0, 0.0, 0.0),  # wrong word: not a positive
    ("a yellow_0", "a yellow_0 cat_0", 1.0, 0.5, 2 / 3),  # short: padded with ""
    ("a yellow_0 cat_0 on_0 mat_0", "a yellow_0 cat_0", 1.0, 1.0, 1.0),  # extra ignored
    ("  a   yellow_0\tcat ", "a yellow_0 cat", 1.0, 1.0, 1.0),  # whitespace split
    (b"a yellow_0 cat", b"a yellow_0 cat_0", 1.0, 0.5, 2 / 3),  # UTF-8 bytes
  ]
  for pred, ref, p, r, f in cases:
    out = wm.example_word_metrics(pred, ref)
    assert (out["precision"], out["recall"]) == pytest.approx((p, r)), (pred, ref)
    assert out["f1"] == pytest.approx(f), (pred, ref)


def test_zero_division_cases_follow_sklearn_zero_division():
  # No positive reference word and no predicted positive: all undefined ratios.
  clean = ("a black cat", "a black cat")
  assert wm.example_word_metrics(*clean) == {
    "precision": 0.0,
    "recall": 0.0,
    "f1": 0.0,
    "num_reference_positive": 0,
    "num_predicted_positive": 0,
    "num_reference_words": 3,
  }
  one = wm.example_word_metrics(*clean, zero_division=1.0)
  assert (one["precision"], one["recall"], one["f1"]) == (1.0, 1.0, 1.0)
  # A false positive on a clean prompt: precision 0 (defined), recall undefined.
  fp = wm.example_word_metrics("a black_0 cat", "a black cat", zero_division=1.0)
  assert (fp["precision"], fp["recall"], fp["f1"]) == (0.0, 1.0, 0.0)
  out = wm.word_metrics(["a black cat", "a yellow_0 cat"], ["a black cat", "a yellow_0 cat"])
  assert out["precision"] == pytest.approx(0.5) and out["f1"] == pytest.approx(0.5)
  assert out["num_without_reference_positive"] == 1
  assert out["num_without_predicted_positive"] == 1
  nan = wm.word_metrics(
    ["a black cat", "a yellow_0 cat"], ["a black cat", "a yellow_0 cat"], float("nan")
  )
  assert nan["precision"] == 1.0 and nan["f1"] == 1.0


def test_empty_prompt_and_empty_prediction():
  out = wm.word_metrics(["", "a dog"], ["", ""])
  assert out == {
    "precision": 0.0,
    "recall": 0.0,
    "f1": 0.0,
    "precision_gt_positive": None,  # no example has a misaligned word
    "recall_gt_positive": None,
    "f1_gt_positive": None,
    "num_examples": 2,
    "num_without_reference_positive": 2,
    "num_without_predicted_positive": 2,
    "num_empty_reference": 2,
  }
  out = wm.example_word_metrics("", "a red_0 dog_0")
  assert (out["precision"], out["recall"], out["f1"]) == (0.0, 0.0, 0.0)
  assert wm.word_metrics([], [], float("nan"))["f1"] is None


def test_errors():
  with pytest.raises(ValueError, match="must pair"):
    wm.word_metrics(["a"], ["a", "b"])
  with pytest.raises(ValueError, match="lists of prompts"):
    wm.word_metrics("a b", "a b")
  with pytest.raises(ValueError, match="zero_division"):
    wm.word_metrics(["a"], ["a"], zero_division=0.5)
