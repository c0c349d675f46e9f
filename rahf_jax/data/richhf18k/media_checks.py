"""Validation of the images and heatmaps that go into a RichHF-18K example.

Each check returns the bytes to store (as given whenever possible) and what was
wrong, so the builder can count it; none raises on bad data.
"""

import io

import numpy as np
from PIL import Image

HEATMAP_SIZE = 512
# Formats tf.image.decode_image reads; anything else PIL decodes is re-encoded as PNG.
TF_IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _encode_png(image: Image.Image) -> bytes:
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  return buf.getvalue()


def check_image(data: bytes) -> tuple[bytes | None, str | None]:
  """Returns (bytes to store, issue): issue None (as given), "reencoded_image" or
  "undecodable_image" (bytes None)."""
  if not data:
    return None, "undecodable_image"
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      if image.width < 1 or image.height < 1:
        return None, "undecodable_image"
      if image.format in TF_IMAGE_FORMATS:
        return data, None
      return _encode_png(image.convert("RGB")), "reencoded_image"
  except Exception:  # pylint: disable=broad-except  # any decoder failure is bad data
    return None, "undecodable_image"


def check_heatmap(data: bytes) -> tuple[bytes | None, str | None]:
  """Returns (PNG bytes, 512x512 single channel, to store, issue).

  issue is None (stored as given), "heatmap_resized" (not 512x512: converted to grey,
  bilinear-resized, re-encoded PNG), "heatmap_reencoded" (512x512 but not a single-channel
  PNG: converted to grey, re-encoded PNG) or "undecodable_heatmap" (bytes None).
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      ok_format = data.startswith(_PNG_SIGNATURE) and image.mode == "L"
      if ok_format and image.size == (HEATMAP_SIZE, HEATMAP_SIZE):
        return data, None
      grey = image.convert("L")
  except Exception:  # pylint: disable=broad-except
    return None, "undecodable_heatmap"
  if grey.size != (HEATMAP_SIZE, HEATMAP_SIZE):
    grey = grey.resize((HEATMAP_SIZE, HEATMAP_SIZE), Image.Resampling.BILINEAR)
    return _encode_png(grey), "heatmap_resized"
  return _encode_png(grey), "heatmap_reencoded"


def decode_grey(data: bytes) -> np.ndarray:
  """Decodes a single-channel image to a uint8 [H, W] array (for tests and tools)."""
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("L"), dtype=np.uint8)
