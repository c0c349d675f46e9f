"""Heatmap metrics: hand-worked cases, a direct-loop AUC-Judd, aggregates, edge cases."""

import json
import math

import numpy as np
import pytest

from rahf_jax.evaluation import heatmap_metrics as hm


def auc_judd_loop(pred, gt, rng, reproduction_offset=False):
  """AUC-Judd written directly from the definition, one threshold at a time."""
  s = np.asarray(pred, dtype=np.float64).flatten()
  s = s + rng.random(s.size) * 1e-7
  s = (s - s.min()) / (s.max() - s.min())
  f = np.asarray(gt).flatten() > 0
  n_fix, n_pix = int(f.sum()), s.size
  thresholds = sorted(s[f].tolist(), reverse=True)
  tp, fp = [0.0], [0.0]
  for i in range(1, n_fix + 1):
    t = thresholds[i - 1]
    count_above = 0
    for v in s:
      if v >= t:
        count_above += 1
    tp.append(i / n_fix)
    fp.append((count_above - (i - 1 if reproduction_offset else i)) / (n_pix - n_fix))
  tp.append(1.0)
  fp.append(1.0)
  area = 0.0
  for k in range(1, len(tp)):
    area += (fp[k] - fp[k - 1]) * (tp[k] + tp[k - 1]) / 2
  return area


P_A = np.array([[0.5, 0.5], [0.0, 0.0]])
G_A = np.array([[1.0, 0.0], [0.0, 0.0]])


def test_hand_worked_case_a():
  # Sum-normalised: P = [.5, .5, 0, 0], G = [1, 0, 0, 0].
  # SIM = min(.5, 1) = 0.5; KLD = 1 * log(1 / .5) = log 2.
  assert hm.sim(P_A, G_A) == pytest.approx(0.5, abs=1e-7)
  assert hm.kld(P_A, G_A) == pytest.approx(math.log(2), abs=1e-6)
  # Centred: p' = [.25, .25, -.25, -.25], g' = [.75, -.25, -.25, -.25]; p'.g' = .25,
  # |p'| = .5, |g'| = sqrt(.75): CC = .25 / (.5 sqrt(.75)) = 1 / sqrt(3).
  assert hm.cc(P_A, G_A) == pytest.approx(1 / math.sqrt(3), abs=1e-7)
  # Unbiased std of p: sqrt(.25 / 3); z at the fixation = .25 / sqrt(1/12) = sqrt(3) / 2.
  assert hm.nss(P_A, G_A) == pytest.approx(math.sqrt(3) / 2, abs=1e-6)
  # MSE = (.25 + .25 + 0 + 0) / 4.
  assert hm.mse(P_A, G_A) == pytest.approx(0.125)


def test_hand_worked_fractional_ground_truth():
  p = np.array([[1.0, 0.0], [0.0, 0.0]])
  g = np.array([[0.5, 0.5], [0.0, 0.0]])
  # G = [.5, .5, 0, 0], P = [1, 0, 0, 0]: SIM = .5;
  # KLD = .5 log(.5 / 1) + .5 log(.5 / 1e-8) = .5 (log .5 + log 5e7).
  assert hm.sim(p, g) == pytest.approx(0.5, abs=1e-7)
  assert hm.kld(p, g) == pytest.approx(0.5 * (math.log(0.5) + math.log(5e7)), abs=1e-5)
  # NSS: z of p = [1.5, -.5, -.5, -.5] (mean .25, std .5); fixations 0 and 1: (1.5 - .5) / 2.
  assert hm.nss(p, g) == pytest.approx(0.5, abs=1e-6)


def test_all_zero_prediction():
  zero = np.zeros((2, 2))
  assert hm.sim(zero, G_A) == 0.0
  assert hm.cc(zero, G_A) == 0.0
  assert hm.nss(zero, G_A) == 0.0
  # P = 0 everywhere: KLD = log(1 / 1e-8 + 1e-8) = log(1e8) (up to the 1e-8 in G's norm).
  assert hm.kld(zero, G_A) == pytest.approx(math.log(1e8), abs=1e-6)


def test_constant_prediction():
  const = np.full((2, 2), 0.3)
  assert hm.cc(const, G_A) == pytest.approx(0.0, abs=1e-12)
  assert hm.nss(const, G_A) == pytest.approx(0.0, abs=1e-6)
  # Uniform P = .25: SIM = .25, KLD = log(1 / .25) = log 4.
  assert hm.sim(const, G_A) == pytest.approx(0.25, abs=1e-7)
  assert hm.kld(const, G_A) == pytest.approx(math.log(4), abs=1e-6)


def test_auc_judd_hand_worked():
  g = np.array([[1.0, 1.0], [0.0, 0.0]])
  rng = np.random.default_rng(0)
  # Perfect ranking: every threshold has only fixations above it, fp = 0 until (1, 1).
  assert hm.auc_judd_single(g, g, rng) == pytest.approx(1.0)
  # Inverted ranking: both thresholds have every non-fixation above, fp = 1:
  # curve (0,0) -> (1,.5) -> (1,1) -> (1,1), area = 1 * .5 / 2 = .25.
  assert hm.auc_judd_single(1 - g, g, rng) == pytest.approx(0.25)


@pytest.mark.parametrize("offset", [False, True])
def test_auc_judd_matches_direct_loop(offset):
  rng = np.random.default_rng(7)
  cases = []
  for _ in range(4):
    pred = rng.random((12, 10))
    gt = (rng.random((12, 10)) > 0.7) * rng.random((12, 10))
    cases.append((pred, gt))
  # Ties: quantised prediction, and an all-zero prediction (ordered by the jitter alone).
  cases.append((np.round(rng.random((12, 10)) * 3) / 3, (rng.random((12, 10)) > 0.5) * 1.0))
  cases.append((np.zeros((12, 10)), (rng.random((12, 10)) > 0.8) * 1.0))
  for pred, gt in cases:
    fast = hm.auc_judd_single(pred, gt, np.random.default_rng(11), offset)
    slow = auc_judd_loop(pred, gt, np.random.default_rng(11), offset)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert 0.0 <= fast <= 1.0


def test_auc_judd_stack_uses_one_generator_in_order():
  rng = np.random.default_rng(1)
  pred = rng.random((3, 6, 6))
  gt = (rng.random((3, 6, 6)) > 0.6) * 1.0
  loop_rng = np.random.default_rng(5)
  expected = [auc_judd_loop(p, g, loop_rng) for p, g in zip(pred, gt, strict=True)]
  np.testing.assert_allclose(hm.auc_judd(pred, gt, seed=5), expected, atol=1e-12)


def test_auc_judd_undefined_cases_are_nan():
  rng = np.random.default_rng(0)
  assert math.isnan(hm.auc_judd_single(np.ones((3, 3)), np.zeros((3, 3)), rng))
  assert math.isnan(hm.auc_judd_single(np.ones((3, 3)), np.ones((3, 3)), rng))


def test_vectorised_functions_equal_per_map():
  rng = np.random.default_rng(2)
  pred = rng.random((4, 8, 8))
  gt = (rng.random((4, 8, 8)) > 0.7) * rng.random((4, 8, 8))
  for fn in (hm.mse, hm.cc, hm.kld, hm.sim, hm.nss):
    np.testing.assert_allclose(
      fn(pred, gt), [fn(p, g) for p, g in zip(pred, gt, strict=True)], rtol=1e-12
    )


def test_aggregate_splits_gt_zero_and_positive_maps():
  rng = np.random.default_rng(3)
  pred = rng.random((5, 8, 8)).astype(np.float32)
  gt = ((rng.random((5, 8, 8)) > 0.7) * rng.random((5, 8, 8))).astype(np.float32)
  gt[[1, 3]] = 0.0
  out = hm.heatmap_metrics(pred, gt, seed=4)
  p64, g64 = pred.astype(np.float64), gt.astype(np.float64)
  pos = [0, 2, 4]
  assert out["num_maps"] == 5 and out["num_gt0"] == 2 and out["num_gt_positive"] == 3
  assert out["num_auc_judd_undefined"] == 0
  assert out["mse_all"] == pytest.approx(np.mean((p64 - g64) ** 2))
  assert out["mse_gt0"] == pytest.approx(np.mean(p64[[1, 3]] ** 2))
  for name, fn in (("cc", hm.cc), ("kld", hm.kld), ("sim", hm.sim), ("nss", hm.nss)):
    assert out[name] == pytest.approx(np.mean(fn(p64[pos], g64[pos])))
  loop_rng = np.random.default_rng(4)
  expected_auc = np.mean([auc_judd_loop(p64[i], g64[i], loop_rng) for i in pos])
  assert out["auc_judd"] == pytest.approx(expected_auc, abs=1e-12)


def test_aggregate_edge_cases_are_nan_free_and_json_clean():
  zeros = np.zeros((3, 6, 6), np.float32)
  const = np.full((3, 6, 6), 0.4, np.float32)
  gt = zeros.copy()
  gt[0, :2, :2] = 1.0
  gt[1] = 1.0  # every pixel positive: AUC-Judd undefined, counted.
  for pred in (zeros, const):
    out = hm.heatmap_metrics(pred, gt)
    json.dumps(out, allow_nan=False)
    assert out["num_auc_judd_undefined"] == 1
    assert out["cc"] == pytest.approx(0.0, abs=1e-9)
    assert out["nss"] == pytest.approx(0.0, abs=1e-6)
  # Only GT=0 maps: the GT>0 metrics are None.
  out = hm.heatmap_metrics(const, zeros)
  assert out["cc"] is None and out["auc_judd"] is None and out["num_gt_positive"] == 0
  assert out["mse_gt0"] == pytest.approx(0.16) and out["mse_all"] == pytest.approx(0.16)
  json.dumps(out, allow_nan=False)


def test_ground_truth_is_resized_to_the_prediction():
  rng = np.random.default_rng(5)
  pred = rng.random((2, 6, 6)).astype(np.float32)
  gt = np.zeros((2, 12, 12), np.float32)
  gt[0, :6, :6] = 0.8
  resized = hm.resize_heatmaps(gt, (6, 6))
  assert resized.shape == (2, 6, 6)
  # Constant regions stay constant away from the edge; mass is preserved (4x fewer pixels).
  assert resized[0, 0, 0] == pytest.approx(0.8, abs=1e-6)
  assert resized[0, 5, 5] == pytest.approx(0.0, abs=1e-6)
  assert resized[0].sum() * 4 == pytest.approx(gt[0].sum(), rel=1e-5)
  assert np.all(resized[1] == 0)
  np.testing.assert_allclose(hm.resize_heatmaps(np.full((5, 7), 0.3), (9, 4)), 0.3, atol=1e-6)
  out_direct = hm.heatmap_metrics(pred, gt)
  out_resized = hm.heatmap_metrics(pred, resized)
  assert out_direct == out_resized


def test_input_errors_name_the_fix():
  pred = np.zeros((2, 4, 4), np.float32)
  with pytest.raises(ValueError, match="divide uint8 maps by 255"):
    hm.heatmap_metrics(pred, np.full((2, 4, 4), 255.0))
  with pytest.raises(ValueError, match="NaN"):
    hm.heatmap_metrics(np.full((2, 4, 4), np.nan), pred)
  with pytest.raises(ValueError, match="same N"):
    hm.heatmap_metrics(pred, pred[:1])
  with pytest.raises(ValueError, match="resize_heatmaps"):
    hm.cc(np.zeros((4, 4)), np.zeros((3, 3)))
