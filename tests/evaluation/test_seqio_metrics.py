"""seqio-style metric functions give the same numbers as the metric modules."""

import numpy as np
import pytest
from scipy import stats

from rahf_jax.evaluation import heatmap_metrics, seqio_metrics, word_metrics


def test_score_metric_fn_with_dicts_and_bound_type():
  rng = np.random.default_rng(0)
  t, p = rng.random(10), rng.random(10)
  targets = [{"aesthetics": float(x)} for x in t]
  predictions = [{"aesthetics": float(x)} for x in p]
  out = seqio_metrics.score_metric_fn(targets, predictions)
  assert out == {
    "aesthetics/plcc": pytest.approx(stats.pearsonr(p, t)[0]),
    "aesthetics/srcc": pytest.approx(stats.spearmanr(p, t)[0]),
    "aesthetics/mse": pytest.approx(np.mean((p - t) ** 2)),
  }
  bound = seqio_metrics.score_metric_fn_for("aesthetics")
  assert bound(list(t), list(p)) == out
  with pytest.raises(ValueError, match="unknown score type"):
    seqio_metrics.score_metric_fn_for("beauty")


def test_heatmap_metric_fn_drops_undefined_and_matches_module():
  rng = np.random.default_rng(1)
  gt = [(rng.random((8, 8)) > 0.7).astype(np.float32) for _ in range(3)]
  pred = [rng.random((8, 8)).astype(np.float32) for _ in range(3)]
  out = seqio_metrics.heatmap_metric_fn_for("implausibility")(gt, pred)
  expected = heatmap_metrics.heatmap_metrics(np.stack(pred), np.stack(gt))
  assert "implausibility/mse_gt0" not in out  # no GT=0 map: undefined, left out
  assert out["implausibility/auc_judd"] == pytest.approx(expected["auc_judd"])
  assert out["implausibility/cc"] == pytest.approx(expected["cc"])
  assert all(isinstance(v, float) for v in out.values())


def test_words_metric_fn_decodes_bytes():
  targets = [b"a yellow_0 cat", "two dogs_0"]
  predictions = [b"a yellow_0 cat", "two dogs"]
  out = seqio_metrics.misaligned_words_metric_fn(targets, predictions)
  expected = word_metrics.word_metrics(
    ["a yellow_0 cat", "two dogs"], ["a yellow_0 cat", "two dogs_0"]
  )
  keys = [f"{k}{s}" for k in ("precision", "recall", "f1") for s in ("", "_gt_positive")]
  assert out == {f"misaligned_words/{k}": expected[k] for k in keys}
  assert out["misaligned_words/f1"] == pytest.approx(0.5)
