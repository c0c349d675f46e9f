"""inpainting_mask on hand-built heatmaps: exact masks for threshold, min_area, dilation, size."""

import numpy as np
import pytest

from rahf_jax.reward import inpainting_mask


def _map():
  heat = np.zeros((8, 8), np.float32)
  heat[1:4, 1:4] = 0.9  # a 3x3 region (area 9)
  heat[6, 6] = 0.5  # a single hot pixel (area 1)
  heat[6, 1] = 0.29  # just under the default threshold
  return heat


def test_threshold_only():
  mask = inpainting_mask(_map(), threshold=0.3, dilation=0, min_area=1)
  expected = np.zeros((8, 8), bool)
  expected[1:4, 1:4] = True
  expected[6, 6] = True
  np.testing.assert_array_equal(mask, expected)
  assert inpainting_mask(_map(), threshold=0.95, dilation=0, min_area=1).sum() == 0


def test_small_components_are_dropped():
  mask = inpainting_mask(_map(), threshold=0.3, dilation=0, min_area=2)
  expected = np.zeros((8, 8), bool)
  expected[1:4, 1:4] = True
  np.testing.assert_array_equal(mask, expected)
  # Exactly min_area pixels stays; one more drops the region too.
  assert inpainting_mask(_map(), 0.3, dilation=0, min_area=9).sum() == 9
  assert inpainting_mask(_map(), 0.3, dilation=0, min_area=10).sum() == 0


def test_dilation_grows_by_a_cross_per_step():
  mask = inpainting_mask(_map(), threshold=0.3, dilation=1, min_area=2)
  expected = np.zeros((8, 8), bool)
  expected[0:5, 1:4] = True  # the 3x3 block grown by one pixel up/down ...
  expected[1:4, 0:5] = True  # ... and left/right (cross structuring element: no corners)
  np.testing.assert_array_equal(mask, expected)
  # k steps of the cross: every pixel within L1 distance k of the region (clipped at the border).
  rows, cols = np.mgrid[0:8, 0:8]
  dist = np.minimum.reduce(
    [np.abs(rows - r) + np.abs(cols - c) for r in (1, 2, 3) for c in (1, 2, 3)]
  )
  np.testing.assert_array_equal(inpainting_mask(_map(), 0.3, dilation=2, min_area=2), dist <= 2)


def test_resized_to_the_image_by_nearest_pixel_centres():
  mask = inpainting_mask(_map(), threshold=0.3, dilation=0, min_area=2, size=(16, 24))
  small = inpainting_mask(_map(), threshold=0.3, dilation=0, min_area=2)
  assert mask.shape == (16, 24) and mask.dtype == bool
  np.testing.assert_array_equal(mask, np.kron(small, np.ones((2, 3), bool)))
  odd = inpainting_mask(np.eye(2), threshold=0.5, dilation=0, min_area=1, size=(3, 3))
  # Output pixel centres 0.5, 1.5, 2.5 map to source rows/cols 0.33, 1.0, 1.67 -> 0, 1, 1.
  np.testing.assert_array_equal(odd, [[1, 0, 0], [0, 1, 1], [0, 1, 1]])


def test_defaults_scale_with_the_map():
  heat = np.zeros((100, 100), np.float32)
  heat[40:60, 40:60] = 1.0  # 400 px, kept
  heat[5:8, 5:8] = 1.0  # 9 px < round(0.001 * 100 * 100) = 10: dropped
  mask = inpainting_mask(heat)
  # dilation default round(0.02 * 100) = 2 steps of the cross: a 20x20 square gains two rows on
  # each side (4 * 2 * 20) and the one corner pixel at L1 distance 2 (4 * 1).
  assert mask.sum() == 400 + 4 * 2 * 20 + 4 and not mask[:10, :10].any()


@pytest.mark.parametrize("heat", [np.zeros((2, 2, 3)), np.zeros((0, 4))])
def test_bad_maps_raise(heat):
  with pytest.raises(ValueError, match="heatmap must be"):
    inpainting_mask(heat)
