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
# PIL modes of 16-bit single-channel images (PNG bit depth 16 reads as one of these).
_MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")


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
  bilinear-resized, re-encoded PNG), "heatmap_reencoded" (512x512 but not an 8-bit
  single-channel PNG: converted to grey, re-encoded PNG) or "undecodable_heatmap" (bytes
  None). A 16-bit map is scaled to 8 bits (v * 255 / 65535, rounded), not clipped.
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      ok_format = data.startswith(_PNG_SIGNATURE) and image.mode == "L"
      if ok_format and image.size == (HEATMAP_SIZE, HEATMAP_SIZE):
        return data, None
      grey = _to_grey(image)
  except Exception:  # pylint: disable=broad-except
    return None, "undecodable_heatmap"
  if grey.size != (HEATMAP_SIZE, HEATMAP_SIZE):
    grey = grey.resize((HEATMAP_SIZE, HEATMAP_SIZE), Image.Resampling.BILINEAR)
    return _encode_png(grey), "heatmap_resized"
  return _encode_png(grey), "heatmap_reencoded"


def _to_grey(image: Image.Image) -> Image.Image:
  """An 8-bit grey copy of `image`; 16-bit values are scaled (v * 255 / 65535, rounded).

  PIL's own convert("L") clips 16-bit values to 255 instead of scaling them. A PNG opened as
  mode "I" is 16-bit too (PNG stores at most 16 bits per sample).
  """
  if image.mode in _MODES_16BIT or (image.mode == "I" and image.format == "PNG"):
    values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
    scaled = (values * 510 + 65535) // 131070  # round(v * 255 / 65535), exact in integers
    return Image.fromarray(scaled.astype(np.uint8), mode="L")
  return image.convert("L")


def decode_grey(data: bytes) -> np.ndarray:
  """Decodes a single-channel image to a uint8 [H, W] array (for tests and tools)."""
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("L"), dtype=np.uint8)
