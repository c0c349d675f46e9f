"""compute_all_metrics against the per-module functions; the markdown tables."""

import json

import numpy as np
import pytest
from scipy import stats

from rahf_jax import features
from rahf_jax.evaluation import heatmap_metrics, tables, word_metrics


def _example_data(n=6, seed=0):
  rng = np.random.default_rng(seed)
  ref, pred = {}, {}
  for s in features.SCORE_TYPES:
    ref[s] = rng.random(n)
    pred[s] = np.clip(ref[s] + 0.2 * rng.standard_normal(n), 0, 1)
  for h in features.HEATMAP_TYPES:
    gt = ((rng.random((n, 16, 16)) > 0.8) * rng.random((n, 16, 16))).astype(np.float32)
    gt[::2] = 0.0
    ref[h] = gt
    pred[h] = rng.random((n, 8, 8)).astype(np.float32)  # the model's lower resolution
  ref[features.WORDS_TYPE] = ["a yellow_0 cat", "two dogs", "a red_0 car_0"] * (n // 3)
  pred[features.WORDS_TYPE] = ["a yellow_0 cat", "two dogs_0", "a red_0 car"] * (n // 3)
  return pred, ref


def test_compute_all_metrics_matches_the_modules():
  pred, ref = _example_data()
  out = tables.compute_all_metrics(pred, ref, seed=3)
  json.dumps(out, allow_nan=False)
  assert list(out["scores"]) == list(features.SCORE_TYPES)
  for s in features.SCORE_TYPES:
    assert out["scores"][s]["plcc"] == pytest.approx(stats.pearsonr(pred[s], ref[s])[0])
    assert out["scores"][s]["srcc"] == pytest.approx(stats.spearmanr(pred[s], ref[s])[0])
  for h in features.HEATMAP_TYPES:
    expected = heatmap_metrics.heatmap_metrics(
      pred[h], heatmap_metrics.resize_heatmaps(ref[h], (8, 8)), seed=3
    )
    assert out["heatmaps"][h] == expected
    assert out["heatmaps"][h]["num_gt0"] == 3
  # Hand count: example 1 P=R=F1=1; 2 (fp on a clean prompt) 0; 3 tp 1, fn 1: P 1, R .5.
  assert out["words"]["precision"] == pytest.approx(2 / 3)
  assert out["words"]["recall"] == pytest.approx(0.5)
  assert out["words"]["f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
  assert out["words"] == word_metrics.word_metrics(
    pred[features.WORDS_TYPE], ref[features.WORDS_TYPE]
  )


def test_model_feature_names_are_accepted_and_sections_optional():
  pred, ref = _example_data()
  by_feature = lambda d: {f"score_{s}": d[s] for s in ("plausibility", "overall")}
  out = tables.compute_all_metrics(by_feature(pred), by_feature(ref))
  assert set(out) == {"protocol", "scores", "baselines"}
  assert list(out["scores"]) == ["plausibility", "overall"]
  assert list(out["baselines"]["scores"]) == ["plausibility", "overall"]
  with pytest.raises(ValueError, match="unknown output 'beauty'"):
    tables.compute_all_metrics({"beauty": [1]}, {"beauty": [1]})
  with pytest.raises(ValueError, match="pass the same"):
    tables.compute_all_metrics({"overall": [1, 2]}, {"plausibility": [1, 2]})


def _table_rows(markdown, heading):
  block = markdown.split(heading, 1)[1].split("###", 1)[0]
  return [line for line in block.splitlines() if line.startswith("|")]


def test_markdown_tables_have_our_numbers_and_reference_numbers_on_request():
  pred, ref = _example_data()
  metrics = tables.compute_all_metrics(pred, ref)
  plain = tables.metrics_to_markdown(metrics)
  with_ref = tables.metrics_to_markdown(metrics, reference=True)
  for md in (plain, with_ref):
    for heading in ("### Scores", "### Heatmaps", "### Misaligned words"):
      rows = _table_rows(md, heading)
      assert len({row.count("|") for row in rows}) == 1, heading  # rectangular table
  plcc = metrics["scores"]["plausibility"]["plcc"]
  assert f"| plausibility | {tables.OURS} | {plcc:.3f} |" in plain
  cc = metrics["heatmaps"]["implausibility"]["cc"]
  assert f"| {cc:.3f} |" in plain
  f1 = 100 * metrics["words"]["f1"]
  assert f"| {f1:.1f} |" in _table_rows(plain, "### Misaligned words")[2]
  assert "0.739" not in plain and tables.REPRODUCTION not in plain
  # The reproduction's plausibility PLCC/SRCC, implausibility AUC-Judd and words F1.
  assert f"| plausibility | {tables.REPRODUCTION} | 0.739 | 0.726 |" in with_ref
  assert "| 0.00724 | 0.00078 | 0.525 | 1.649 | 0.339 | 2.029 | 0.905 |" in with_ref
  assert f"| {tables.REPRODUCTION} | 56.5 | 45.2 | 47.5 |" in with_ref
  assert f"| alignment | {tables.PAPER_AUGMENTED} | 0.474 | — |" in with_ref


def test_markdown_shows_missing_values_as_dashes():
  metrics = {
    "heatmaps": {
      "misalignment": {
        "mse_all": 0.01,
        "mse_gt0": 0.01,
        "cc": None,
        "num_maps": 2,
        "num_gt_positive": 0,
      },
    }
  }
  md = tables.metrics_to_markdown(metrics)
  assert "### Scores" not in md and "### Misaligned words" not in md
  row = _table_rows(md, "### Heatmaps")[2]
  assert row.endswith("| 0.01000 | 0.01000 | — | — | — | — | — |")
