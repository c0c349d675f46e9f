"""PLCC/SRCC against scipy.stats.pearsonr / spearmanr."""

import numpy as np
import pytest
from scipy import stats

from rahf_jax.evaluation import score_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_and_spearman_match_scipy(seed):
  rng = np.random.default_rng(seed)
  target = rng.random(50)
  pred = 0.5 * target + 0.3 * rng.random(50)
  # Rounding creates ties, which exercises the average-rank rule of SRCC.
  pred_tied, target_tied = np.round(pred, 1), np.round(target, 1)
  for p, t in ((pred, target), (pred_tied, target_tied)):
    np.testing.assert_allclose(score_metrics.pearson(p, t), stats.pearsonr(p, t)[0], atol=1e-12)
    np.testing.assert_allclose(score_metrics.spearman(p, t), stats.spearmanr(p, t)[0], atol=1e-12)


def test_hand_worked_perfect_and_inverse():
  t = [0.1, 0.4, 0.2, 0.9]
  assert score_metrics.pearson(t, t) == pytest.approx(1.0)
  assert score_metrics.pearson([-x for x in t], t) == pytest.approx(-1.0)
  # Monotone but non-linear: SRCC 1, PLCC below 1.
  cubed = [x**3 for x in t]
  assert score_metrics.spearman(cubed, t) == pytest.approx(1.0)
  assert score_metrics.pearson(cubed, t) < 0.999


def test_constant_prediction_gives_zero_not_nan():
  t = np.linspace(0, 1, 10)
  assert score_metrics.pearson(np.full(10, 0.5), t) == 0.0
  assert score_metrics.spearman(np.full(10, 0.5), t) == 0.0
  assert score_metrics.pearson([0.3], [0.2]) == 0.0


def test_column_vectors_are_accepted():
  rng = np.random.default_rng(3)
  p, t = rng.random((20, 1)), rng.random(20)
  np.testing.assert_allclose(score_metrics.pearson(p, t), stats.pearsonr(p[:, 0], t)[0])


def test_all_score_metrics_in_paper_order():
  rng = np.random.default_rng(4)
  names = ("overall", "plausibility")
  pred = {s: rng.random(8) for s in names}
  ref = {s: rng.random(8) for s in names}
  out = score_metrics.all_score_metrics(pred, ref)
  assert list(out) == ["plausibility", "overall"]
  for s in names:
    assert out[s]["plcc"] == pytest.approx(stats.pearsonr(pred[s], ref[s])[0])
    assert out[s]["srcc"] == pytest.approx(stats.spearmanr(pred[s], ref[s])[0])
    assert out[s]["num_examples"] == 8


def test_errors_name_the_problem():
  with pytest.raises(ValueError, match="unknown score types"):
    score_metrics.all_score_metrics({"beauty": [1.0]}, {"beauty": [1.0]})
  with pytest.raises(ValueError, match="NaN"):
    score_metrics.pearson([0.1, float("nan")], [0.1, 0.2])
  with pytest.raises(ValueError, match="differ in length"):
    score_metrics.pearson([0.1, 0.2, 0.3], [0.1, 0.2])
