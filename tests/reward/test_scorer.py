"""Scorer: the same numbers as Predictor.predict, at each image's resolution, compiled once.

The input-form and padding checks compare scores within TOL (float32 rounding of the same
computation). They would also pass if the scorer answered every image alike, which a model
trained for 8 steps nearly does: each check also shows that the same call's other images score
more than GAP_FACTOR x TOL apart, so that the tolerance is far below what telling two images
apart takes (measured on a 2-core AMD EPYC: the closest pairs are 3.7e-3 and 1.2e-4 apart, and
an RGBA image read one grey level off moves the score by 4e-4).
"""

import itertools

import jax
import numpy as np
import pytest
from PIL import Image

from rahf_jax import features as F
from rahf_jax.reward.scorer import resize_heatmap

PROMPT = "a red circle and a blue square"
TOL = 1e-6
GAP_FACTOR = 30


def _closest_pair(values) -> float:
  """The smallest |a - b| over pairs of `values` (the scores of different images)."""
  return min(abs(a - b) for a, b in itertools.combinations(values, 2))


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, (40 + 3 * i, 56 - 2 * i, 3), np.uint8) for i in range(n)]


def test_scores_heatmaps_and_words_match_the_predictor(scorer):
  images = _images(5)
  prompts = [PROMPT, "a cat", "two dogs on a bench", PROMPT, "a blue square"]
  results = scorer.score(images, prompts, heatmaps=True, words=True)
  preds = scorer.predictor.predict(images, prompts)
  assert len(results) == 5
  for image, result, pred in zip(images, results, preds, strict=True):
    for s in F.SCORE_TYPES:
      assert getattr(result, s) == pytest.approx(pred["scores"][s], abs=1e-5)
      assert 0.0 <= getattr(result, s) <= 1.0
    for h in F.HEATMAP_TYPES:
      heat = getattr(result, f"{h}_heatmap")
      assert heat.shape == image.shape[:2] and heat.dtype == np.float32
      np.testing.assert_allclose(
        heat, resize_heatmap(pred["heatmaps"][h], *image.shape[:2]), atol=1e-5
      )
    assert result.marked_prompt == pred["misaligned_words"]
    assert isinstance(result.misaligned_words, list)


def test_every_input_form_scores_the_same(scorer, tmp_path):
  rgb = _images(1)[0]
  others = [_images(1, seed=s)[0] for s in (1, 2, 3)]  # the same size, other pixels
  Image.fromarray(rgb).save(tmp_path / "a.png")
  rgba = np.concatenate([rgb, np.zeros(rgb.shape[:2] + (1,), np.uint8)], axis=-1)
  forms = [rgb, rgba, Image.fromarray(rgb), str(tmp_path / "a.png")]
  results = scorer.score(forms + others, PROMPT)
  overall = [r.overall for r in results]
  assert overall[:4] == pytest.approx([overall[0]] * 4, abs=TOL)
  assert _closest_pair([overall[0], *overall[4:]]) > GAP_FACTOR * TOL
  assert results[0].implausibility_heatmap is None and results[0].misaligned_words is None


def test_ragged_calls_compile_the_heads_once(workdir):
  from rahf_jax.reward import Scorer

  scorer = Scorer.from_workdir(workdir, batch_size=4)
  compiles = []

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    lengths = (3, 9, 1, 4)
    outs = [scorer.score(_images(n, seed=n), PROMPT) for n in lengths]
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert [len(o) for o in outs] == list(lengths)
  assert len(compiles) == 1  # one program for buckets of 4 pairs, however long each call is
  # Padding a bucket does not change a pair's numbers, while the call's images differ.
  alone = scorer.score(_images(9, seed=9)[8:], PROMPT)[0]
  assert alone.overall == pytest.approx(outs[1][8].overall, abs=TOL)
  assert _closest_pair([r.overall for r in outs[1]]) > GAP_FACTOR * TOL


def test_rank_and_best_of_n(scorer):
  images = _images(6)
  results = scorer.score(images, PROMPT)
  ranked = scorer.rank(PROMPT, images, weights={"aesthetics": 1, "plausibility": 1})
  mixes = [(r.aesthetics + r.plausibility) / 2 for r in results]
  assert [c.index for c in ranked] == sorted(range(6), key=lambda i: -mixes[i])
  assert [c.rank for c in ranked] == [1, 2, 3, 4, 5, 6]
  best = scorer.best_of_n(PROMPT, images)
  assert best.index == int(np.argmax([r.overall for r in results]))
  assert best.reward == pytest.approx(max(r.overall for r in results), abs=1e-6)


def test_mismatched_lengths_raise(scorer):
  with pytest.raises(ValueError, match="2 images but 3 prompts"):
    scorer.score(_images(2), ["a", "b", "c"])


def test_augmented_variant_matches_its_predictor(augmented_scorer):
  images = _images(3)
  prompts = [PROMPT, "a cat", "a blue square"]
  results = augmented_scorer.score(images, prompts, heatmaps=True, words=True)
  preds = augmented_scorer.predictor.predict(images, prompts)
  for image, result, pred in zip(images, results, preds, strict=True):
    for s in F.SCORE_TYPES:
      assert getattr(result, s) == pytest.approx(pred["scores"][s], abs=1e-5)
    for h in F.HEATMAP_TYPES:
      expected = resize_heatmap(pred["heatmaps"][h], *image.shape[:2])
      np.testing.assert_allclose(getattr(result, f"{h}_heatmap"), expected, atol=1e-5)
    assert result.marked_prompt == pred["misaligned_words"]
  # Each score comes from its own prefixed prompt: the four differ (untrained model or not).
  assert len({round(v, 7) for v in results[0].scores.values()}) == 4
