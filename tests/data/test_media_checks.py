"""media_checks on heatmaps whose encoding differs from the official 8-bit single-channel PNG."""

import io

import numpy as np
from PIL import Image

from rahf_jax.data.richhf18k import media_checks


def _png16(values: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(values.astype(np.uint16)).save(buf, format="PNG")
  return buf.getvalue()


def test_16bit_heatmap_is_scaled_to_8_bits_not_clipped():
  values = np.arange(512 * 512, dtype=np.int64).reshape(512, 512) % 65536
  values[0, :6] = [0, 128, 129, 257, 32767, 65535]
  data = _png16(values)
  with Image.open(io.BytesIO(data)) as image:
    assert image.mode.startswith("I")  # read back as a 16-bit image
  stored, issue = media_checks.check_heatmap(data)
  assert issue == "heatmap_reencoded" and stored.startswith(b"\x89PNG")
  got = media_checks.decode_grey(stored)
  expected = np.floor(values * 255 / 65535 + 0.5).astype(np.uint8)  # no ties: v / 257 + 0.5
  np.testing.assert_array_equal(got, expected)
  assert got[0, :6].tolist() == [0, 0, 1, 1, 127, 255]
  assert got.max() == 255 and (got < 255).mean() > 0.99  # scaled, not clipped to 255


def test_16bit_heatmap_of_another_size_is_scaled_then_resized():
  values = np.full((256, 256), 100 * 257, np.int64)  # 100 in 8 bits (65535 = 255 * 257)
  stored, issue = media_checks.check_heatmap(_png16(values))
  assert issue == "heatmap_resized"
  got = media_checks.decode_grey(stored)
  assert got.shape == (512, 512) and np.all(got == 100)
