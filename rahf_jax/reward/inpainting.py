"""`inpainting_mask`: the region to repaint, from a predicted implausibility heatmap.

The paper's region-inpainting use of RAHF: threshold the predicted implausibility map, keep the
connected regions large enough to matter, grow them a little so the inpainting model also
repaints their border, and hand the mask (at the image's resolution) to an inpainting model.
"""

import numpy as np
from scipy import ndimage

DEFAULT_THRESHOLD = 0.3


def inpainting_mask(
  heatmap,
  threshold: float = DEFAULT_THRESHOLD,
  dilation: int | None = None,
  min_area: int | None = None,
  size: tuple[int, int] | None = None,
) -> np.ndarray:
  """A boolean mask [H, W] (True: repaint) from a heatmap [h, w] with values in [0, 1].

  Steps, all at the heatmap's own resolution: pixels with heat >= `threshold` -> connected
  components (4-connectivity, scipy.ndimage.label) with fewer than `min_area` pixels dropped ->
  `dilation` steps of binary dilation (3x3 cross, scipy.ndimage.binary_dilation) -> resized to
  `size` by nearest neighbour (pixel centres).

  Args:
    heatmap: float [h, w] (e.g. ScoreResult.implausibility_heatmap), values in [0, 1].
    threshold: default 0.3. Heat is in [0, 1] and the RichHF-18K target maps average the
      annotators' marks, so high heat means many annotators would mark the pixel; 0.3 keeps
      the clearly hot regions and leaves out the low heat a map spreads elsewhere. Lower it
      for a weakly trained model (the tiny demo model's maps rarely pass 0.3).
    dilation: dilation steps in heatmap pixels; default round(2% of the map's longer side),
      at least 1: a thin border around each region, so the repainted patch blends in.
    min_area: smallest component kept, in heatmap pixels; default round(0.1% of the map's
      area), at least 1: isolated specks are noise, not artifacts worth repainting.
    size: (H, W) of the returned mask; default the heatmap's own size.
  """
  heat = np.asarray(heatmap, np.float64)
  if heat.ndim == 3 and heat.shape[-1] == 1:
    heat = heat[..., 0]
  if heat.ndim != 2 or 0 in heat.shape:
    raise ValueError(f"heatmap must be [H, W], got shape {heat.shape}.")
  h, w = heat.shape
  if dilation is None:
    dilation = max(1, round(0.02 * max(h, w)))
  if min_area is None:
    min_area = max(1, round(0.001 * h * w))
  if dilation < 0 or min_area < 0:
    raise ValueError(f"dilation and min_area must be >= 0, got {dilation} and {min_area}.")
  mask = np.nan_to_num(heat) >= threshold
  labels, count = ndimage.label(mask)
  if count and min_area > 1:
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    keep = areas >= min_area
    keep[0] = False
    mask = keep[labels]
  if dilation and mask.any():
    mask = ndimage.binary_dilation(mask, iterations=int(dilation))
  if size is None:
    return mask
  height, width = (int(s) for s in size)
  if height < 1 or width < 1:
    raise ValueError(f"size must be (H, W) with positive H and W, got {size}.")
  rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
  cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
  return mask[rows][:, cols]


def mask_fraction(mask: np.ndarray) -> float:
  """Share of True pixels (0 for an empty mask)."""
  mask = np.asarray(mask, bool)
  return float(mask.mean()) if mask.size else 0.0


__all__ = ["DEFAULT_THRESHOLD", "inpainting_mask", "mask_fraction"]
