"""Overlay PNGs: size, hot pixels differ from the image, cold pixels do not, colour scales."""

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
  assert written.shape == (top + ph + overlays.SCALE_HEIGHT + g, 5 * pw + 6 * g, 3)
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
  assert canvas.size == (
    2 * 100 + 3 * g,
    overlays.LABEL_HEIGHT + 200 + overlays.SCALE_HEIGHT + 2 * g,
  )
  np.testing.assert_array_equal(overlays.to_uint8_image(np.zeros((2, 2, 3))), 0)
  np.testing.assert_array_equal(overlays.to_uint8_image(-np.ones((2, 2, 3))), 0)
  np.testing.assert_array_equal(overlays.to_uint8_image(np.ones((2, 2))), 255)


def _panels(canvas, n, h, w):
  """The pixels of the n panels and of the scale strips under them (no title)."""
  arr = np.asarray(canvas).astype(int)
  g, top = overlays.GAP, overlays.GAP + overlays.LABEL_HEIGHT
  xs = [g + i * (w + g) for i in range(n)]
  panels = [arr[top : top + h, x : x + w] for x in xs]
  strips = [arr[top + h : top + h + overlays.SCALE_HEIGHT, x : x + w] for x in xs]
  return panels, strips


def test_weak_map_is_visible_on_its_own_scale():
  h = w = overlays.MIN_PANEL_HEIGHT
  image = np.full((h, w, 3), 128, np.uint8)
  weak = np.zeros((h, w), np.float32)
  weak[: h // 2] = 0.05  # the top half at 0.05, the map's maximum
  canvas = overlays.compose_overlay(image, {"implausibility": weak})
  (base, shown), (_, strip) = _panels(canvas, 2, h, w)
  # On its own scale 0-0.05 the weak half gets the top colour: alpha .65, jet(1) = (.5, 0, 0).
  diff = np.abs(shown[: h // 2] - base[: h // 2]).mean()
  assert diff > 40
  np.testing.assert_array_equal(shown[h // 2 + 2 :], base[h // 2 + 2 :])  # zero heat: unchanged
  top = np.round(128 * 0.35 + np.array([82.875, 0, 0]))
  np.testing.assert_array_equal(shown[h // 4, w // 2], top)
  # On the fixed scale 0-1 the same map barely shows.
  fixed = overlays.compose_overlay(image, {"implausibility": weak}, normalize=False)
  (_, faint), _ = _panels(fixed, 2, h, w)
  assert np.abs(faint[: h // 2] - base[: h // 2]).mean() < 10
  # The range is written under the panel: dark text pixels at the left of the scale strip,
  # a colour bar (red at its right end) beside it.
  assert overlays.scale_label(overlays.scale_max(weak)) == "0-0.050"
  assert (strip[:, :30] < 100).all(axis=-1).any()
  right = strip[overlays.SCALE_HEIGHT // 2, w - 2]
  assert right[0] > 100 and right[1] < 50 and right[2] < 50


def test_scale_ends():
  assert overlays.scale_max(np.zeros((4, 4))) == overlays.MIN_SCALE_MAX
  assert overlays.scale_max(np.full((4, 4), 0.3)) == pytest.approx(0.3)
  assert overlays.scale_max(np.full((4, 4), 1.0)) == 1.0
  assert overlays.scale_label(1.0) == "0-1"
  with pytest.raises(ValueError, match="vmax"):
    overlays.blend_heatmap(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)), vmax=0.0)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="image must be"):
    overlays.to_uint8_image(np.zeros((4, 4, 5)))
  with pytest.raises(ValueError, match="heatmap must be"):
    overlays.blend_heatmap(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4, 4)))
