"""Heatmap overlays as PNG: image | predicted heatmaps | ground-truth heatmaps.

Each heatmap is drawn as a colour map (jet: blue for low, red for high) blended over
the image with an opacity proportional to the heat (0.65 at heat 1), so cold pixels
show the image unchanged and hot ones stand out. Every panel has a small label above
it, and an optional title runs across the top. Pure numpy + Pillow.
"""

import os
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_ALPHA = 0.65
MIN_PANEL_HEIGHT = 160  # small images are upscaled so the labels stay readable
LABEL_HEIGHT = 18
GAP = 4
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def to_uint8_image(image) -> np.ndarray:
  """An RGB uint8 [H, W, 3] copy of `image`.

  Accepts uint8 [H, W, 3] or [H, W]; floats in [-1, 1] (the model's image feature:
  taken as such when the minimum is below 0) or in [0, 1].
  """
  arr = np.asarray(image)
  if arr.ndim == 2:
    arr = np.repeat(arr[..., None], 3, axis=-1)
  if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
    raise ValueError(f"image must be [H, W, 3] (RGB), got shape {arr.shape}.")
  arr = arr[..., :3]
  if arr.dtype == np.uint8:
    return arr.copy()
  arr = arr.astype(np.float32)
  if arr.min() < 0:
    arr = (arr + 1.0) / 2.0
  return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def jet(heat: np.ndarray) -> np.ndarray:
  """Jet colour map of values in [0, 1] -> float RGB in [0, 1], shape [..., 3]."""
  x = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)[..., None]
  centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue
  return np.clip(1.5 - np.abs(4.0 * x - centres), 0.0, 1.0)


def blend_heatmap(image_u8: np.ndarray, heatmap) -> np.ndarray:
  """The heatmap (resized bilinearly to the image) blended over the image, uint8 RGB."""
  h, w = image_u8.shape[:2]
  heat = np.asarray(heatmap, dtype=np.float32)
  if heat.ndim == 3 and heat.shape[-1] == 1:
    heat = heat[..., 0]
  if heat.ndim != 2:
    raise ValueError(f"a heatmap must be [H, W], got shape {heat.shape}.")
  if heat.shape != (h, w):
    heat = np.asarray(Image.fromarray(np.ascontiguousarray(heat)).resize((w, h), Image.BILINEAR))
  heat = np.clip(np.nan_to_num(heat), 0.0, 1.0)
  alpha = (MAX_ALPHA * heat)[..., None]
  out = image_u8.astype(np.float32) * (1.0 - alpha) + 255.0 * jet(heat) * alpha
  return np.round(out).astype(np.uint8)


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow without scalable default font
    return ImageFont.load_default()


def compose_overlay(
  image,
  pred_heatmaps: Mapping[str, np.ndarray],
  gt_heatmaps: Mapping[str, np.ndarray] | None = None,
  title: str | None = None,
) -> Image.Image:
  """The overlay strip as a PIL image (see `save_overlay`)."""
  base = to_uint8_image(image)
  h, w = base.shape[:2]
  if h < MIN_PANEL_HEIGHT:
    scale = MIN_PANEL_HEIGHT / h
    w, h = max(1, round(w * scale)), MIN_PANEL_HEIGHT
    base = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
  panels = [("image", base)]
  panels += [(f"pred: {k}", blend_heatmap(base, v)) for k, v in pred_heatmaps.items()]
  panels += [(f"GT: {k}", blend_heatmap(base, v)) for k, v in (gt_heatmaps or {}).items()]
  title_h = LABEL_HEIGHT + GAP if title else 0
  width = len(panels) * w + (len(panels) + 1) * GAP
  height = title_h + LABEL_HEIGHT + h + 2 * GAP
  canvas = Image.new("RGB", (width, height), BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  font = _font(12)
  if title:
    draw.text((GAP, GAP), title, fill=TEXT, font=font)
  for i, (label, pixels) in enumerate(panels):
    x = GAP + i * (w + GAP)
    draw.text((x, title_h + GAP), label, fill=TEXT, font=font)
    canvas.paste(Image.fromarray(pixels), (x, title_h + GAP + LABEL_HEIGHT))
  return canvas


def save_overlay(
  path: str,
  image,
  pred_heatmaps: Mapping[str, np.ndarray],
  gt_heatmaps: Mapping[str, np.ndarray] | None = None,
  title: str | None = None,
) -> Image.Image:
  """Writes a PNG: image | predicted heatmaps | ground-truth heatmaps, side by side.

  Args:
    path: output PNG path (parent folders are created).
    image: [H, W, 3] uint8, or float in [0, 1] or [-1, 1].
    pred_heatmaps: {heatmap type: [h, w] map in [0, 1]}; resized to the image.
    gt_heatmaps: the ground truth, same form, or None to leave it out.
    title: an optional line of text across the top (e.g. the prompt).

  Returns:
    The composed image that was written.
  """
  canvas = compose_overlay(image, pred_heatmaps, gt_heatmaps, title)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  canvas.save(path, format="PNG")
  return canvas
