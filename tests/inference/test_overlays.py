"""Overlay PNGs: size, hot pixels differ from the image, cold pixels do not."""

import numpy as np
import pytest
from PIL import Image

from rahf_jax.inference import overlays


def test_jet_end_points():
  np.testing.assert_allclose(
    overlays.jet(np.array([0.0, 0.5, 1.0])),
    [
      [0.0, 0.0, 0.5],  # dark blue
      [0.5, 1.0, 0.5],  # green-ish middle
      [0.5, 0.0, 0.0],  # dark red
    ],
  )


def test_blend_hand_worked_pixel():
  image = np.full((2, 2, 3), 100, np.uint8)
  heat = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
  out = overlays.blend_heatmap(image, heat)
  np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # zero heat: unchanged
  # heat 1: alpha .65, jet(1) = (.5, 0, 0): 100 * .35 + 255 * (.5, 0, 0) * .65.
  np.testing.assert_array_equal(out[0, 1], np.round([35 + 82.875, 35, 35]))


def test_save_overlay_layout_and_pixels(tmp_path):
  h, w = 64, 48
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  pred = {"implausibility": np.zeros((16, 12), np.float32), "misalignment": np.zeros((16, 12))}
  pred["implausibility"][:4, :3] = 1.0  # top-left corner hot
  gt = {"implausibility": np.zeros((32, 24)), "misalignment": np.zeros((32, 24))}
  path = tmp_path / "sub" / "overlay.png"
  canvas = overlays.save_overlay(str(path), image, pred, gt, title="a yellow_0 cat")
  written = np.asarray(Image.open(path).convert("RGB"))
  np.testing.assert_array_equal(written, np.asarray(canvas))
  # Panels are upscaled to MIN_PANEL_HEIGHT rows; five panels side by side.
  ph = overlays.MIN_PANEL_HEIGHT
  pw = round(w * ph / h)
  g = overlays.GAP
  top = overlays.LABEL_HEIGHT + g + g + overlays.LABEL_HEIGHT
  assert written.shape == (top + ph + g, 5 * pw + 6 * g, 3)
  panel = lambda i: written[top : top + ph, g + i * (pw + g) : g + i * (pw + g) + pw]
  base = panel(0)
  hot = panel(1)
  # The hot corner (top-left quarter of the first predicted map) differs strongly ...
  corner = (slice(0, ph // 8), slice(0, pw // 8))
  assert np.abs(hot[corner].astype(int) - base[corner].astype(int)).mean() > 40
  # ... and the rest, where the heat is 0, is the image itself.
  np.testing.assert_array_equal(hot[ph // 2 :, pw // 2 :], base[ph // 2 :, pw // 2 :])
  for i in (2, 3, 4):  # all-zero maps leave the image unchanged
    np.testing.assert_array_equal(panel(i), base)
  # The labels were drawn: dark text pixels in the label strip above each panel.
  assert (written[g : top - g, g : g + pw] < 128).any()


def test_float_images_and_no_ground_truth(tmp_path):
  image = np.linspace(-1, 1, 200 * 100 * 3, dtype=np.float32).reshape(200, 100, 3)
  heat = {"misalignment": np.ones((200, 100), np.float32)}
  canvas = overlays.save_overlay(str(tmp_path / "o.png"), image, heat)
  g = overlays.GAP
  assert canvas.size == (2 * 100 + 3 * g, overlays.LABEL_HEIGHT + 200 + 2 * g)
  np.testing.assert_array_equal(overlays.to_uint8_image(np.zeros((2, 2, 3))), 0)
  np.testing.assert_array_equal(overlays.to_uint8_image(-np.ones((2, 2, 3))), 0)
  np.testing.assert_array_equal(overlays.to_uint8_image(np.ones((2, 2))), 255)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="image must be"):
    overlays.to_uint8_image(np.zeros((4, 4, 5)))
  with pytest.raises(ValueError, match="heatmap must be"):
    overlays.blend_heatmap(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4, 4)))
