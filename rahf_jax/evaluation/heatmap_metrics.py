"""Heatmap metrics of the paper (Liang et al., CVPR 2024), exact and vectorised.

Per heatmap type, predictions and ground truth are maps in [0, 1] compared at one
resolution. The ground truth is resized to the prediction's resolution (as the
PyTorch reproduction does: it resizes the 512x512 label maps to the 384x384 model
output) by `resize_heatmaps`: PIL bilinear resampling of the float map (PIL's
bilinear filter widens its support when it shrinks an image, i.e. it antialiases,
as torchvision's `Resize` on a PIL image does). The reproduction resizes the uint8
map and then divides by 255; resizing the float map differs only by that uint8
rounding (at most 0.5/255 per pixel).

Aggregates over a set of maps:
  mse_all   mean over all maps of the per-map pixel MSE ("All data")
  mse_gt0   the same over the maps whose ground truth is all zero ("GT=0")
  and over the maps whose ground truth has a positive pixel ("GT>0") only, the
  mean of the per-map cc, kld, sim, nss and auc_judd.
An aggregate over an empty subset is None (JSON null), never NaN. (The reproduction's
"All data" MSE is the mean of per-batch MSEs, which equals this per-map mean when every
batch is full; its other aggregates are per-map means as here.) With
`protocol="reproduction"` (rahf_jax.evaluation.protocols) mse_all is that mean of per-batch
means (`mean_of_batch_means`, batches of protocols.REPRODUCTION_BATCH_SIZE maps in the order
given) and AUC-Judd is the reproduction's variant; the ground truth for it is made by
`resize_uint8_heatmaps_pil` from the uint8 maps.

Per-map definitions (every function takes [H, W] maps or [N, H, W] stacks; the
statistics are per map, over the last two axes):
  cc        sum((p - mean p)(g - mean g)) / (||p - mean p|| * ||g - mean g|| + 1e-8)
            (Pearson correlation of the pixels; the 1e-8 keeps a constant map at 0)
  kld       p, g normalised to sum 1 (x / (sum x + 1e-8));
            sum g * log(g / (p + 1e-8) + 1e-8)
  sim       p, g normalised to sum 1 as above; sum min(p, g)
  nss       z = (p - mean p) / (std_unbiased p + 1e-8); mean of z where g > 0
  auc_judd  see `auc_judd`.
"""

from collections.abc import Sequence

import numpy as np
from PIL import Image

from rahf_jax.evaluation import protocols

EPS = 1e-8
AUC_JITTER = 1e-7
_CHUNK = 64  # maps per vectorised chunk (bounds float64 memory on 384x384 maps)


def resize_heatmaps(maps, size: Sequence[int]) -> np.ndarray:
  """Bilinear (antialiased when shrinking) resize of [N, H, W] or [H, W] maps to `size`.

  Args:
    maps: float maps in [0, 1].
    size: (height, width) of the output.

  Returns:
    float32 maps of shape [N, *size] (or [*size] for a single map), clipped to [0, 1].
  """
  arr = np.asarray(maps, dtype=np.float32)
  single = arr.ndim == 2
  stack = arr[None] if single else arr
  h, w = int(size[0]), int(size[1])
  if stack.shape[1:] == (h, w):
    out = stack.copy()
  else:
    out = np.stack(
      [
        np.asarray(Image.fromarray(np.ascontiguousarray(m)).resize((w, h), Image.BILINEAR))
        for m in stack
      ]
    )
    out = np.clip(out, 0.0, 1.0)
  return out[0] if single else out


def resize_uint8_heatmaps_pil(maps, size: Sequence[int]) -> np.ndarray:
  """The reproduction's ground truth: uint8 maps resized by PIL bilinear, then / 255.

  train.py's `HuggingFaceDataset.preprocess_heatmap` opens the uint8 map with PIL and applies
  torchvision `Resize((s, s))` (PIL `resize(..., BILINEAR)` on the uint8 image, so the result
  is rounded to uint8) and `ToTensor` (/ 255).

  Args:
    maps: uint8 [N, H, W] or [H, W] (a trailing channel axis of 1 is dropped).
    size: (height, width) of the output, the model's heatmap size.

  Returns:
    float32 maps of shape [N, *size] (or [*size]) in [0, 1], multiples of 1/255.
  """
  arr = np.asarray(maps)
  if arr.dtype != np.uint8:
    raise ValueError(f"resize_uint8_heatmaps_pil takes uint8 maps, got {arr.dtype}.")
  if arr.ndim >= 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  single = arr.ndim == 2
  stack = arr[None] if single else arr
  h, w = int(size[0]), int(size[1])
  out = np.stack(
    [
      np.asarray(Image.fromarray(np.ascontiguousarray(m), mode="L").resize((w, h), Image.BILINEAR))
      for m in stack
    ]
  ).astype(np.float32) / np.float32(255.0)
  return out[0] if single else out


def mean_of_batch_means(per_map: Sequence[float], batch_size: int) -> float | None:
  """The mean over consecutive batches of `batch_size` maps of each batch's mean.

  With equal-sized maps a batch's `nn.MSELoss` is the mean of its per-map MSEs; train.py
  averages those per-batch values with `np.mean`, so a last, smaller batch weighs as much as a
  full one. None for no maps.
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  values = np.asarray(per_map, dtype=np.float64)
  if values.size == 0:
    return None
  means = [values[i : i + batch_size].mean() for i in range(0, values.size, batch_size)]
  return float(np.mean(means))


def _stack(x) -> np.ndarray:
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim not in (2, 3):
    raise ValueError(f"heatmaps must be [H, W] or [N, H, W], got shape {arr.shape}.")
  return arr


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
  p, g = _stack(pred), _stack(gt)
  if p.shape != g.shape:
    raise ValueError(
      f"prediction {p.shape} and ground truth {g.shape} differ; resize the ground truth "
      "with resize_heatmaps first."
    )
  return p, g


def mse(pred, gt) -> np.ndarray:
  """Per-map mean squared error over pixels."""
  p, g = _pair(pred, gt)
  return np.mean((p - g) ** 2, axis=(-2, -1))


def cc(pred, gt) -> np.ndarray:
  """Per-map Pearson correlation of the pixels (denominator + 1e-8)."""
  p, g = _pair(pred, gt)
  pc = p - p.mean(axis=(-2, -1), keepdims=True)
  gc = g - g.mean(axis=(-2, -1), keepdims=True)
  num = np.sum(pc * gc, axis=(-2, -1))
  den = np.sqrt(np.sum(pc**2, axis=(-2, -1))) * np.sqrt(np.sum(gc**2, axis=(-2, -1)))
  return num / (den + EPS)


def _to_distribution(x: np.ndarray) -> np.ndarray:
  return x / (np.sum(x, axis=(-2, -1), keepdims=True) + EPS)


def kld(pred, gt) -> np.ndarray:
  """Per-map KL divergence of the ground truth from the prediction, both as distributions."""
  p, g = _pair(pred, gt)
  p, g = _to_distribution(p), _to_distribution(g)
  return np.sum(g * np.log(g / (p + EPS) + EPS), axis=(-2, -1))


def sim(pred, gt) -> np.ndarray:
  """Per-map similarity (histogram intersection) of the two maps as distributions."""
  p, g = _pair(pred, gt)
  return np.sum(np.minimum(_to_distribution(p), _to_distribution(g)), axis=(-2, -1))


def nss(pred, gt) -> np.ndarray:
  """Per-map normalised scanpath saliency: mean z-scored prediction where gt > 0.

  A map with no positive ground-truth pixel gives 0 (the aggregate never uses it).
  """
  p, g = _pair(pred, gt)
  n = p.shape[-1] * p.shape[-2]
  mean = p.mean(axis=(-2, -1), keepdims=True)
  std = p.std(axis=(-2, -1), keepdims=True, ddof=1) if n > 1 else np.zeros_like(mean)
  z = (p - mean) / (std + EPS)
  fix = g > 0
  count = fix.sum(axis=(-2, -1))
  return np.sum(np.where(fix, z, 0.0), axis=(-2, -1)) / np.maximum(count, 1)


def auc_judd_single(
  pred, gt, rng: np.random.Generator, match_pytorch_reproduction: bool = False
) -> float:
  """AUC-Judd of one map, exact (the paper's choice; Judd et al.'s MATLAB definition).

  Fixations are the pixels with gt > 0. The prediction (as float64) gets a jitter
  `rng.random(shape) * 1e-7` and is min-max normalised to S. The thresholds are the
  values of S at the fixations, in descending order t_1 >= ... >= t_F; for i = 1..F
      tp_i = i / F,   fp_i = (#{S >= t_i} - i) / (N_pix - F),
  and the score is the trapezoid area under (fp, tp) with (0, 0) and (1, 1) added.

  The PyTorch reproduction's Python port uses (#{S >= t_i} - (i - 1)) for fp_i, an
  off-by-one from the definition that raises fp_i by 1 / (N_pix - F) (an AUC change
  below 1e-5 at 384x384); `match_pytorch_reproduction=True` selects that variant.

  Args:
    pred: [H, W] prediction.
    gt: [H, W] ground truth.
    rng: the seeded numpy Generator that draws the jitter (H * W uniforms per call).
    match_pytorch_reproduction: use the reproduction's fp_i (see above).

  Returns:
    The area in [0, 1]; NaN when undefined: no fixation, no non-fixation pixel, or a
    constant map after the jitter (possible only for a one-pixel map).
  """
  p, g = _pair(pred, gt)
  if p.ndim != 2:
    raise ValueError(f"auc_judd_single takes one [H, W] map, got shape {p.shape}.")
  s = p.ravel() + rng.random(p.size) * AUC_JITTER
  fix = g.ravel() > 0
  n_fix, n_pix = int(fix.sum()), s.size
  lo, hi = s.min(), s.max()
  if n_fix == 0 or n_fix == n_pix or not hi > lo:
    return float("nan")
  s = (s - lo) / (hi - lo)
  thresholds = np.sort(s[fix])[::-1]
  # #{S >= t} for every threshold, by binary search in the ascending sort of S.
  above = n_pix - np.searchsorted(np.sort(s), thresholds, side="left")
  i = np.arange(1, n_fix + 1)
  offset = i - 1 if match_pytorch_reproduction else i
  tp = np.concatenate([[0.0], i / n_fix, [1.0]])
  fp = np.concatenate([[0.0], (above - offset) / (n_pix - n_fix), [1.0]])
  return float(np.trapezoid(tp, x=fp))


def auc_judd(pred, gt, seed: int = 0, match_pytorch_reproduction: bool = False) -> np.ndarray:
  """AUC-Judd per map of an [N, H, W] stack (or one [H, W] map), jitter from `seed`.

  One `np.random.default_rng(seed)` draws every map's jitter in map order, so the
  result depends only on the seed and the maps.
  """
  p, g = _pair(pred, gt)
  rng = np.random.default_rng(seed)
  if p.ndim == 2:
    return np.asarray(auc_judd_single(p, g, rng, match_pytorch_reproduction))
  return np.array(
    [auc_judd_single(a, b, rng, match_pytorch_reproduction) for a, b in zip(p, g, strict=True)]
  )


def _check_range(x: np.ndarray, name: str) -> None:
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contain NaN or Inf; fix the model output or the labels.")
  if x.size and (x.min() < -1e-6 or x.max() > 1 + 1e-6):
    raise ValueError(
      f"{name} must lie in [0, 1], found [{x.min():.4g}, {x.max():.4g}]; divide uint8 maps by 255."
    )


def _mean_or_none(values: list[float]) -> float | None:
  return float(np.mean(values)) if values else None


def heatmap_metrics(
  pred,
  gt,
  seed: int = 0,
  match_pytorch_reproduction: bool = False,
  protocol: str = protocols.PAPER,
  batch_size: int | None = None,
  with_auc_judd: bool = True,
) -> dict:
  """The paper's heatmap metrics over a set of maps of one heatmap type.

  Args:
    pred: [N, H, W] predicted maps in [0, 1].
    gt: [N, H', W'] ground-truth maps in [0, 1]; resized to (H, W) if they differ. Under the
      reproduction protocol pass maps already made by `resize_uint8_heatmaps_pil`.
    seed: seed of the AUC-Judd jitter generator.
    match_pytorch_reproduction: AUC-Judd variant, see `auc_judd_single` (implied by
      protocol="reproduction").
    protocol: "paper" or "reproduction" (rahf_jax.evaluation.protocols): the latter makes
      mse_all `mean_of_batch_means(per-map MSEs, batch_size)` and uses the reproduction's
      AUC-Judd; every other figure is defined the same way.
    batch_size: the reproduction's evaluation batch size (maps per batch, in the given order);
      None: protocols.REPRODUCTION_BATCH_SIZE.
    with_auc_judd: False skips AUC-Judd (then None), e.g. for a constant map.

  Returns:
    {"mse_all", "mse_gt0", "cc", "kld", "sim", "nss", "auc_judd": float or None,
     "num_maps", "num_gt0", "num_gt_positive", "num_auc_judd_undefined": int}.
    AUC-Judd is averaged over the GT>0 maps where it is defined; the others are
    counted in num_auc_judd_undefined (maps where every pixel is positive).
  """
  p = np.asarray(pred, dtype=np.float32)
  g = np.asarray(gt, dtype=np.float32)
  if p.ndim != 3 or g.ndim != 3 or p.shape[0] != g.shape[0]:
    raise ValueError(
      f"expected [N, H, W] predictions and ground truth with the same N, got {p.shape} and "
      f"{g.shape}."
    )
  if protocols.check_protocol(protocol) == protocols.REPRODUCTION:
    match_pytorch_reproduction = True
  _check_range(p, "predicted heatmaps")
  _check_range(g, "ground-truth heatmaps")
  g = resize_heatmaps(g, p.shape[1:])
  rng = np.random.default_rng(seed)
  per_map = {k: [] for k in ("mse_all", "mse_gt0", "cc", "kld", "sim", "nss", "auc_judd")}
  undefined_auc = 0
  for start in range(0, p.shape[0], _CHUNK):
    pc = p[start : start + _CHUNK].astype(np.float64)
    gc = g[start : start + _CHUNK].astype(np.float64)
    errors = mse(pc, gc)
    positive = gc.reshape(gc.shape[0], -1).max(axis=1) > 0
    per_map["mse_all"].extend(errors.tolist())
    per_map["mse_gt0"].extend(errors[~positive].tolist())
    if positive.any():
      pp, gp = pc[positive], gc[positive]
      for name, fn in (("cc", cc), ("kld", kld), ("sim", sim), ("nss", nss)):
        per_map[name].extend(fn(pp, gp).tolist())
      for a, b in zip(pp, gp, strict=True) if with_auc_judd else ():
        value = auc_judd_single(a, b, rng, match_pytorch_reproduction)
        if np.isnan(value):
          undefined_auc += 1
        else:
          per_map["auc_judd"].append(value)
  out = {k: _mean_or_none(v) for k, v in per_map.items()}
  if protocol == protocols.REPRODUCTION:
    size = protocols.REPRODUCTION_BATCH_SIZE if batch_size is None else batch_size
    out["mse_all"] = mean_of_batch_means(per_map["mse_all"], size)
  out.update(
    num_maps=int(p.shape[0]),
    num_gt0=len(per_map["mse_gt0"]),
    num_gt_positive=len(per_map["cc"]),
    num_auc_judd_undefined=undefined_auc,
  )
  return out
