"""Heatmap overlays as PNG: image | predicted heatmaps | ground-truth heatmaps.

Each heatmap is drawn as a colour map (jet: blue for low, red for high) blended over
the image with an opacity proportional to the heat (0.65 at the top of the scale), so
cold pixels show the image unchanged and hot ones stand out. By default every heatmap
panel has its own scale, 0 to the map's maximum (at least MIN_SCALE_MAX), so a weak map
(a maximum of 0.05, say) is as visible as a strong one; the range is written under the
panel beside a colour bar ("0-0.050"). `normalize=False` draws every map on the fixed
scale 0-1. Every panel has a small label above it, and an optional title runs across the
top. Pure numpy + Pillow.
"""

import os
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_ALPHA = 0.65
MIN_SCALE_MAX = 0.01  # a map whose maximum is below this is drawn on 0-MIN_SCALE_MAX
MIN_PANEL_HEIGHT = 160  # small images are upscaled so the labels stay readable
LABEL_HEIGHT = 18
SCALE_HEIGHT = 18  # the strip under each heatmap panel: its range and a colour bar
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


def scale_max(heatmap) -> float:
  """The top of a map's own colour scale: its maximum, at least MIN_SCALE_MAX, at most 1."""
  heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
  top = float(heat.max()) if heat.size else 0.0
  return float(np.clip(top, MIN_SCALE_MAX, 1.0))


def scale_label(vmax: float) -> str:
  """The range text written under a heatmap panel, e.g. "0-0.050"."""
  return f"0-{vmax:.3f}" if vmax < 1.0 else "0-1"


def blend_heatmap(image_u8: np.ndarray, heatmap, vmax: float = 1.0) -> np.ndarray:
  """The heatmap (resized bilinearly to the image) blended over the image, uint8 RGB.

  Heat is drawn on the scale 0-`vmax`: values at or above vmax get the top colour.
  """
  if not vmax > 0:
    raise ValueError(f"vmax must be positive, got {vmax}.")
  h, w = image_u8.shape[:2]
  heat = np.asarray(heatmap, dtype=np.float32)
  if heat.ndim == 3 and heat.shape[-1] == 1:
    heat = heat[..., 0]
  if heat.ndim != 2:
    raise ValueError(f"a heatmap must be [H, W], got shape {heat.shape}.")
  if heat.shape != (h, w):
    heat = np.asarray(Image.fromarray(np.ascontiguousarray(heat)).resize((w, h), Image.BILINEAR))
  heat = np.clip(np.nan_to_num(heat) / np.float32(vmax), 0.0, 1.0)
  alpha = (MAX_ALPHA * heat)[..., None]
  out = image_u8.astype(np.float32) * (1.0 - alpha) + 255.0 * jet(heat) * alpha
  return np.round(out).astype(np.uint8)


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow without scalable default font
    return ImageFont.load_default()


def _draw_scale(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, vmax: float, font) -> None:
  """The range text and a jet colour bar in the strip of SCALE_HEIGHT rows at (x, y)."""
  text = scale_label(vmax)
  draw.text((x, y + 2), text, fill=TEXT, font=font)
  left = x + int(draw.textlength(text, font=font)) + GAP
  bar = max(0, x + width - left)
  for i in range(bar):
    colour = jet(np.float32(i / max(bar - 1, 1)))
    draw.line([(left + i, y + 5), (left + i, y + SCALE_HEIGHT - 5)],
              fill=tuple(int(round(255 * c)) for c in colour))  # fmt: skip


def compose_overlay(
  image,
  pred_heatmaps: Mapping[str, np.ndarray],
  gt_heatmaps: Mapping[str, np.ndarray] | None = None,
  title: str | None = None,
  normalize: bool = True,
) -> Image.Image:
  """The overlay strip as a PIL image (see `save_overlay`)."""
  base = to_uint8_image(image)
  h, w = base.shape[:2]
  if h < MIN_PANEL_HEIGHT:
    scale = MIN_PANEL_HEIGHT / h
    w, h = max(1, round(w * scale)), MIN_PANEL_HEIGHT
    base = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
  maps = [(f"pred: {k}", v) for k, v in pred_heatmaps.items()]
  maps += [(f"GT: {k}", v) for k, v in (gt_heatmaps or {}).items()]
  panels = [("image", base, None)]
  for label, heat in maps:
    vmax = scale_max(heat) if normalize else 1.0
    panels.append((label, blend_heatmap(base, heat, vmax), vmax))
  title_h = LABEL_HEIGHT + GAP if title else 0
  scale_h = SCALE_HEIGHT if maps else 0
  width = len(panels) * w + (len(panels) + 1) * GAP
  height = title_h + LABEL_HEIGHT + h + scale_h + 2 * GAP
  canvas = Image.new("RGB", (width, height), BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  font = _font(12)
  if title:
    draw.text((GAP, GAP), title, fill=TEXT, font=font)
  for i, (label, pixels, vmax) in enumerate(panels):
    x = GAP + i * (w + GAP)
    top = title_h + GAP + LABEL_HEIGHT
    draw.text((x, title_h + GAP), label, fill=TEXT, font=font)
    canvas.paste(Image.fromarray(pixels), (x, top))
    if vmax is not None:
      _draw_scale(draw, x, top + h, w, vmax, font)
  return canvas


def save_overlay(
  path: str,
  image,
  pred_heatmaps: Mapping[str, np.ndarray],
  gt_heatmaps: Mapping[str, np.ndarray] | None = None,
  title: str | None = None,
  normalize: bool = True,
) -> Image.Image:
  """Writes a PNG: image | predicted heatmaps | ground-truth heatmaps, side by side.

  Under each heatmap panel: its colour scale (range text and colour bar).

  Args:
    path: output PNG path (parent folders are created).
    image: [H, W, 3] uint8, or float in [0, 1] or [-1, 1].
    pred_heatmaps: {heatmap type: [h, w] map in [0, 1]}; resized to the image.
    gt_heatmaps: the ground truth, same form, or None to leave it out.
    title: an optional line of text across the top (e.g. the prompt).
    normalize: draw each map on 0-its own maximum (`scale_max`); False: on 0-1.

  Returns:
    The composed image that was written.
  """
  canvas = compose_overlay(image, pred_heatmaps, gt_heatmaps, title, normalize)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  canvas.save(path, format="PNG")
  return canvas
