"""load_image: every accepted input gives the same uint8 RGB pixels; bad input, one clear error."""

import numpy as np
import pytest
from PIL import Image

from rahf_jax.reward.image_inputs import ImageInputError, load_image

RGB = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


def test_every_form_gives_the_same_rgb_pixels(tmp_path):
  Image.fromarray(RGB).save(tmp_path / "a.png")
  rgba = np.concatenate([RGB, np.full((4, 5, 1), 7, np.uint8)], axis=-1)
  for image in (
    RGB,
    rgba,
    Image.fromarray(RGB),
    Image.fromarray(rgba),
    tmp_path / "a.png",
    str(tmp_path / "a.png"),
    RGB / 255.0,
  ):
    out = load_image(image)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, RGB)


def test_grey_images_are_repeated_over_three_channels():
  grey = np.array([[0, 100], [200, 255]], np.uint8)
  for image in (grey, grey[..., None], Image.fromarray(grey)):
    out = load_image(image)
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=-1))


@pytest.mark.parametrize(
  "make, message",
  [
    (lambda p: str(p / "missing.png"), "not found; pass an existing image file"),
    (
      lambda p: (p / "bad.png").write_bytes(b"no image") and str(p / "bad.png"),
      "is not a readable image",
    ),
    (lambda p: np.zeros((4, 5, 2), np.uint8), "is not an image; pass uint8"),
    (lambda p: np.full((4, 5, 3), 2.0), "values outside [0, 1]"),
    (lambda p: np.zeros((4, 5, 3), np.int64), "unsupported dtype"),
    (lambda p: {"not": "an image"}, "image of type dict is not an image"),
  ],
)
def test_bad_input_raises_one_clear_error(tmp_path, make, message):
  with pytest.raises(ImageInputError) as e:
    load_image(make(tmp_path))
  assert message in str(e.value)
  assert isinstance(e.value, ValueError)
