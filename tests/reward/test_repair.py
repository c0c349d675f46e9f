"""The repair loop: it inpaints where the heatmap points, keeps a round only when the score rises,
goes on from the best image, and stops at an empty mask, at no gain or after k rounds."""

import numpy as np
import pytest
from scipy import ndimage

from rahf_jax.reward import ScoreResult, opencv_inpainter, repair, repair_many

BACKGROUND = (90, 140, 200)
FLAW = (slice(10, 26), slice(30, 46))  # a 16 x 16 noise patch


def _flawed_image(seed=0):
  image = np.empty((64, 64, 3), np.uint8)
  image[:] = BACKGROUND
  image[FLAW] = np.random.default_rng(seed).integers(0, 256, (16, 16, 3))
  return image


class NoiseScorer:
  """A stand-in RAHF: the heatmap marks noisy pixels (far from their 5 x 5 median), plausibility
  is one minus 16 times their share. Records the size of every call."""

  def __init__(self):
    self.calls = []

  def score(self, images, prompts, heatmaps=False):
    assert heatmaps and len(images) == len(prompts)
    self.calls.append(len(images))
    out = []
    for image in images:
      image = image.astype(np.float32)
      median = ndimage.median_filter(image, size=(5, 5, 1))
      noisy = (np.abs(image - median).max(-1) > 30).astype(np.float32)
      heat = ndimage.uniform_filter(noisy, 5)
      p = float(np.clip(1 - 16 * noisy.mean(), 0, 1))
      out.append(ScoreResult(p, 0.5, 0.5, 0.5, implausibility_heatmap=heat))
    return out


def test_repair_inpaints_the_marked_flaw_and_nothing_else():
  image = _flawed_image()
  fixed = repair(image, "a blue picture", NoiseScorer(), threshold=0.3, rounds=3)
  assert fixed.best_round == 1 and fixed.stop_reason == "empty mask"
  assert [r.round for r in fixed.history] == [0, 1] and fixed.history[1].kept
  assert fixed.history[0].reward < 0.1 and fixed.reward_gain > 0.9
  # The mask covers the flaw and little else; the flaw is now background, the rest untouched.
  painted = fixed.painted
  assert painted[FLAW].all() and painted.mean() < 3 * 16 * 16 / 64**2
  np.testing.assert_array_equal(fixed.image[~painted], image[~painted])
  assert np.abs(fixed.image[FLAW].astype(int) - BACKGROUND).max() <= 4
  assert fixed.result is fixed.history[1].result


def test_a_round_that_does_not_raise_the_score_is_not_kept():
  def worse(image, mask):  # paints noise into the mask
    out = image.copy()
    out[mask] = np.random.default_rng(1).integers(0, 256, (int(mask.sum()), 3))
    return out

  image = _flawed_image()
  fixed = repair(image, "a blue picture", NoiseScorer(), inpaint=worse, rounds=3)
  assert fixed.best_round == 0 and fixed.stop_reason == "no gain"
  assert len(fixed.history) == 2 and not fixed.history[1].kept
  np.testing.assert_array_equal(fixed.image, image)
  assert not fixed.painted.any() and fixed.reward_gain == 0


class BrightnessScorer:
  """Plausibility = mean brightness; the heatmap marks the left half."""

  def __init__(self):
    self.calls = []

  def score(self, images, prompts, heatmaps=False):
    self.calls.append(len(images))
    out = []
    for image in images:
      heat = np.zeros(image.shape[:2], np.float32)
      heat[:, : image.shape[1] // 2] = 1.0
      p = float(image.mean() / 255)
      out.append(ScoreResult(p, 0.0, 0.0, 0.0, implausibility_heatmap=heat))
    return out


def test_each_round_starts_from_the_best_image_and_k_bounds_the_rounds():
  def brighten(image, mask):
    out = image.astype(np.int32)
    out[mask] += 10
    return np.clip(out, 0, 255).astype(np.uint8)

  dark = np.full((8, 8, 3), 20, np.uint8)
  bright = np.full((8, 8, 3), 255, np.uint8)  # cannot get brighter: no gain
  scorer = BrightnessScorer()
  fixed, stuck = repair_many(
    [dark, bright], ["x", "y"], scorer, inpaint=brighten, rounds=4, dilation=0, min_area=1
  )
  assert fixed.best_round == 4 and fixed.stop_reason == "rounds" and len(fixed.history) == 5
  assert fixed.image[:, :4].min() == 60 and fixed.image[:, 4:].max() == 20
  rewards = [r.reward for r in fixed.history]
  assert rewards == sorted(rewards) and rewards[-1] > rewards[0]
  assert stuck.best_round == 0 and stuck.stop_reason == "no gain"
  # Round 0 scores both; round 1 both; afterwards only the image still improving.
  assert scorer.calls == [2, 2, 1, 1, 1]
  # min_gain: a gain of 10/255/2 per round is not enough.
  assert repair(dark, "x", BrightnessScorer(), inpaint=brighten, min_gain=0.05).best_round == 0


def test_opencv_inpainter_fills_only_the_mask():
  image = _flawed_image()
  mask = np.zeros(image.shape[:2], bool)
  mask[8:28, 28:48] = True
  out = opencv_inpainter()(image, mask)
  np.testing.assert_array_equal(out[~mask], image[~mask])
  assert np.abs(out[FLAW].astype(int) - BACKGROUND).max() <= 4


def test_bad_inpainters_and_arguments_get_one_line_errors():
  image = _flawed_image()
  with pytest.raises(ValueError, match=r"inpaint returned a float64 array of shape \(64, 64, 3\)"):
    repair(image, "x", NoiseScorer(), inpaint=lambda im, m: im / 255.0)
  with pytest.raises(ValueError, match="OpenCV inpainting method 'fast' unknown"):
    opencv_inpainter(method="fast")
  with pytest.raises(ValueError, match="1 images but 2 prompts"):
    repair_many([image], ["x", "y"], NoiseScorer())
