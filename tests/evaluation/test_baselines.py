"""Trivial baselines against hand-computed values, and their rows in the tables."""

import json

import numpy as np
import pytest

from rahf_jax import features
from rahf_jax.evaluation import baselines, heatmap_metrics, protocols, tables


def test_mean_and_train_mean_score():
  ref = {"plausibility": [0.0, 0.5, 1.0, 0.5]}
  out = baselines.score_baselines(ref, train_means={"plausibility": 0.25})["plausibility"]
  mean = out[baselines.MEAN_SCORE]
  assert mean["value"] == 0.5
  assert mean["mse"] == pytest.approx((0.25 + 0 + 0.25 + 0) / 4)  # the variance
  assert mean["plcc"] is None and mean["srcc"] is None
  assert set(mean["undefined"]) == {"plcc", "srcc"}
  train = out[baselines.TRAIN_MEAN_SCORE]
  assert train["value"] == 0.25
  assert train["mse"] == pytest.approx((0.0625 + 0.0625 + 0.5625 + 0.0625) / 4)


def _maps():
  hot = np.zeros((2, 2), np.float32)
  hot[0, 0] = 1.0
  return np.stack([hot, np.zeros((2, 2), np.float32)])  # one GT>0 map, one GT=0 map


def test_all_zeros_map():
  out = baselines.heatmap_baselines(_maps(), (2, 2))[baselines.ALL_ZEROS]
  assert out["mse_all"] == pytest.approx((0.25 + 0.0) / 2)
  assert out["mse_gt0"] == 0.0
  for k in ("cc", "kld", "sim", "nss", "auc_judd"):
    assert out[k] is None and k in out["undefined"]
  assert out["num_maps"] == 2 and out["num_gt0"] == 1 and out["num_gt_positive"] == 1


def test_mean_gt_map():
  # The mean map is [[.5, 0], [0, 0]]: MSE .25 / 4 against either map.
  out = baselines.heatmap_baselines(_maps(), (2, 2))[baselines.MEAN_GT_MAP]
  assert out["undefined"] == {}
  assert out["mse_all"] == pytest.approx(0.0625)
  assert out["mse_gt0"] == pytest.approx(0.0625)
  # Against the GT>0 map [[1, 0], [0, 0]]: the same shape, so CC 1, KLD 0, SIM 1, AUC 1;
  # NSS: mean .125, unbiased std sqrt(.1875 / 3) = .25, z at the fixation (.5 - .125) / .25.
  assert out["cc"] == pytest.approx(1.0, abs=1e-6)
  assert out["kld"] == pytest.approx(0.0, abs=1e-6)
  assert out["sim"] == pytest.approx(1.0, abs=1e-6)
  assert out["nss"] == pytest.approx(1.5, abs=1e-6)
  assert out["auc_judd"] == pytest.approx(1.0)


def test_mean_gt_map_at_the_prediction_resolution_and_reproduction_mse(monkeypatch):
  gt = np.zeros((3, 4, 4), np.float32)
  gt[0] = 1.0  # a constant map resizes to itself
  out = baselines.heatmap_baselines(gt, (2, 2))[baselines.MEAN_GT_MAP]
  # The mean map is 1/3 everywhere (constant): CC, NSS, AUC-Judd undefined; KLD and SIM not.
  assert set(out["undefined"]) == {"cc", "nss", "auc_judd"}
  per_map = [(2 / 3) ** 2, (1 / 3) ** 2, (1 / 3) ** 2]
  assert out["mse_all"] == pytest.approx(np.mean(per_map))
  assert out["sim"] == pytest.approx(1.0, abs=1e-6)
  monkeypatch.setattr(protocols, "REPRODUCTION_BATCH_SIZE", 2)
  repro = baselines.heatmap_baselines(gt, (2, 2), protocol=protocols.REPRODUCTION)
  expected = (np.mean(per_map[:2]) + per_map[2]) / 2  # batches of 2: (map 0, map 1), (map 2)
  assert repro[baselines.MEAN_GT_MAP]["mse_all"] == pytest.approx(expected)


def test_word_baselines():
  assert baselines.unmark("a yellow_0 cat_0") == "a yellow cat"
  assert baselines.unmark(b"two dogs") == "two dogs"
  assert baselines.mark_all("a yellow_0 cat") == "a_0 yellow_0 cat_0"
  out = baselines.word_baselines(["a yellow_0 cat", "two dogs"])
  unmarked = out[baselines.UNMARKED_PROMPT]
  assert (unmarked["precision"], unmarked["recall"], unmarked["f1"]) == (0.0, 0.0, 0.0)
  # Every word marked: example 1 tp 1, fp 2: P 1/3, R 1, F1 2/4; example 2 fp 2: all 0.
  marked = out[baselines.ALL_MARKED]
  assert marked["precision"] == pytest.approx(1 / 6)
  assert marked["recall"] == pytest.approx(0.5)
  assert marked["f1"] == pytest.approx(0.25)


def _metrics():
  rng = np.random.default_rng(0)
  ref = {s: rng.random(6) for s in features.SCORE_TYPES}
  pred = {s: rng.random(6) for s in features.SCORE_TYPES}
  for h in features.HEATMAP_TYPES:
    gt = np.zeros((6, 8, 8), np.float32)
    gt[:3, 2:4, 2:4] = 1.0
    ref[h], pred[h] = gt, rng.random((6, 4, 4)).astype(np.float32)
  ref[features.WORDS_TYPE] = ["a yellow_0 cat", "two dogs"] * 3
  pred[features.WORDS_TYPE] = ["a yellow_0 cat", "two dogs"] * 3
  return pred, ref, tables.compute_all_metrics(pred, ref)


def test_compute_all_metrics_scores_the_baselines_on_the_same_ground_truth():
  pred, ref, metrics = _metrics()
  json.dumps(metrics, allow_nan=False)
  b = metrics["baselines"]
  for s in features.SCORE_TYPES:
    assert b["scores"][s][baselines.MEAN_SCORE]["mse"] == pytest.approx(np.var(ref[s]))
    assert metrics["scores"][s]["mse"] == pytest.approx(np.mean((pred[s] - ref[s]) ** 2))
  for h in features.HEATMAP_TYPES:
    # Compared at the prediction's 4x4, as the model: the ground truth resized to it.
    g = heatmap_metrics.resize_heatmaps(ref[h], (4, 4)).astype(np.float64)
    zeros = b["heatmaps"][h][baselines.ALL_ZEROS]
    assert zeros["num_maps"] == 6 and zeros["mse_all"] == pytest.approx(np.mean(g**2))
    mean_map = b["heatmaps"][h][baselines.MEAN_GT_MAP]
    assert mean_map["mse_all"] == pytest.approx(np.mean((g - g.mean(axis=0)) ** 2), rel=1e-5)
  assert b["words"][baselines.UNMARKED_PROMPT]["f1"] == 0.0
  assert tables.compute_all_metrics(pred, ref, baselines=False).keys() == metrics.keys() - {
    "baselines"
  }


def _rows(markdown, heading):
  block = markdown.split(heading, 1)[1].split("###", 1)[0]
  return [line for line in block.splitlines() if line.startswith("|")]


def test_baseline_rows_in_the_tables():
  _, ref, metrics = _metrics()
  md = tables.metrics_to_markdown(metrics, reference=True)
  for heading in ("### Scores", "### Heatmaps", "### Misaligned words"):
    rows = _rows(md, heading)
    assert len({row.count("|") for row in rows}) == 1, heading
  mean = metrics["baselines"]["scores"]["plausibility"][baselines.MEAN_SCORE]
  label = f"baseline: mean score ({np.mean(ref['plausibility']):.3f})"
  assert f"| plausibility | {label} | n/a | n/a | {mean['mse']:.4f} |" in md
  zeros = metrics["baselines"]["heatmaps"]["implausibility"][baselines.ALL_ZEROS]
  assert (
    f"| implausibility | baseline: all zeros | {zeros['mse_all']:.5f} | 0.00000 | n/a | n/a | "
    "n/a | n/a | n/a |" in md
  )
  assert "| implausibility | baseline: mean GT map |" in md
  assert "| baseline: unmarked prompt | 0.0 | 0.0 | 0.0 |" in md
  assert "| baseline: every word marked |" in md
  assert "n/a: PLCC and SRCC of a constant prediction are undefined" in md
  assert "n/a: CC, NSS and AUC-Judd are undefined for a constant map" in md
  # The published rows stay, with "—" for the MSE they do not publish.
  assert f"| plausibility | {tables.REPRODUCTION} | 0.739 | 0.726 | — |" in md


def test_checkpoint_line():
  best = {"kind": "best", "step": 1000, "best_metric": "dev/loss", "best_value": 0.25}
  assert tables.checkpoint_line(best) == (
    "Checkpoint: step 1000, the best by dev/loss = 0.25 (the best checkpoint kept in training)."
  )
  assert tables.checkpoint_line({"kind": "newest", "step": 7}) == (
    "Checkpoint: step 7, the newest of the run."
  )
  md = tables.metrics_to_markdown({"checkpoint": best})
  assert "Checkpoint: step 1000" in md
