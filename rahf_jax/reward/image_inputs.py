"""Any image a user has -> uint8 RGB [H, W, 3]: PIL images, numpy arrays, file paths.

Accepted:
  PIL.Image.Image of any mode (converted to RGB; an alpha channel is dropped)
  numpy uint8 [H, W] (grey), [H, W, 1], [H, W, 3] (RGB) or [H, W, 4] (RGBA, alpha dropped)
  numpy float [H, W(, C)] in [0, 1] (scaled by 255 and rounded)
  str / os.PathLike: an image file Pillow can read (PNG, JPEG, WebP, ...)
Anything else raises ImageInputError (a ValueError) naming the input and what to pass.
"""

import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageInputError(ValueError):
  """An image that is missing, unreadable or of an unsupported shape or type."""


def _describe(image: Any) -> str:
  if isinstance(image, str | os.PathLike):
    return f"image {os.fspath(image)!r}"
  if isinstance(image, np.ndarray):
    return f"image array of shape {image.shape} and dtype {image.dtype}"
  return f"image of type {type(image).__name__}"


def _from_array(arr: np.ndarray) -> np.ndarray:
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  if arr.ndim == 2:
    arr = np.repeat(arr[..., None], 3, axis=-1)
  if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or 0 in arr.shape:
    raise ImageInputError(
      f"{_describe(arr)} is not an image; pass uint8 [H, W], [H, W, 3] or [H, W, 4]."
    )
  arr = arr[..., :3]
  if arr.dtype == np.uint8:
    return np.ascontiguousarray(arr)
  if np.issubdtype(arr.dtype, np.floating):
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
      raise ImageInputError(
        f"{_describe(arr)} has values outside [0, 1]; pass floats in [0, 1] or uint8."
      )
    return np.round(arr * 255.0).astype(np.uint8)
  raise ImageInputError(
    f"{_describe(arr)} has an unsupported dtype; pass uint8 or floats in [0, 1]."
  )


def load_image(image: Any) -> np.ndarray:
  """uint8 RGB [H, W, 3] of a PIL image, a numpy array or an image file path (module docstring)."""
  if isinstance(image, str | os.PathLike):
    path = os.fspath(image)
    if not os.path.isfile(path):
      raise ImageInputError(f"image {path!r} not found; pass an existing image file.")
    try:
      with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
      raise ImageInputError(
        f"image {path!r} is not a readable image ({e}); pass a PNG or JPEG."
      ) from e
  if isinstance(image, Image.Image):
    return np.asarray(image.convert("RGB"))
  if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
    return _from_array(np.asarray(image))
  raise ImageInputError(
    f"{_describe(image)} is not an image; pass a PIL image, an array or a path."
  )
