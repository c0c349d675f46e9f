"""`repair`: inpaint the regions RAHF marks implausible, round by round, while the score improves.

  from rahf_jax.reward import Scorer, repair
  scorer = Scorer.from_workdir("demo_out/workdir")
  fixed = repair(image, "a red circle on a blue background", scorer, rounds=3)
  fixed.image, fixed.best_round, [(r.round, r.reward, r.kept) for r in fixed.history]

Each round takes the best image so far, makes a mask from its predicted implausibility heatmap
(`inpainting_mask`: threshold, drop specks, dilate), calls `inpaint(image, mask)` and scores the
new image. The new image is kept when its reward (the weighted mix of the four scores given by
`weights`, default plausibility alone; rahf_jax.reward.ranking.combined_score) beats the best so
far by more than `min_gain`. The loop stops at the first round that is not kept, at an empty
mask, or after `rounds` rounds. `history` holds round 0 (the input) and every round tried, kept
or not; `image` is the best one (the input itself when no round helped).

An inpainter is any callable (image uint8 [H, W, 3], mask bool [H, W], True: repaint) ->
image [H, W, 3] (uint8 array or PIL image). The default, `opencv_inpainter()`, is OpenCV's
`cv2.inpaint` (Telea's fast-marching method): a classical inpainter that fills the mask from the
colours around it and leaves every other pixel as it was. A diffusion inpainter plugs in the
same way, e.g. with diffusers' StableDiffusionInpaintPipeline `pipe`:

  def diffusion_inpaint(image, mask):
    out = pipe(prompt=prompt, image=Image.fromarray(image),
               mask_image=Image.fromarray(mask.astype(np.uint8) * 255)).images[0]
    return np.asarray(out.resize(image.shape[1::-1]))

`repair_many` runs the loop for many images at once, scoring each round's images in one call.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rahf_jax.reward import ranking
from rahf_jax.reward.image_inputs import load_image
from rahf_jax.reward.inpainting import DEFAULT_THRESHOLD, inpainting_mask

REPAIR_WEIGHTS: Mapping[str, float] = {"plausibility": 1.0}
DEFAULT_ROUNDS = 3
OPENCV_METHODS = ("telea", "ns")

Inpainter = Callable[[np.ndarray, np.ndarray], Any]
MaskFn = Callable[[np.ndarray, Any], np.ndarray]


def opencv_inpainter(radius: int = 3, method: str = "telea") -> Inpainter:
  """OpenCV's cv2.inpaint as an inpainter: `method` "telea" (fast marching, the default) or
  "ns" (Navier-Stokes); `radius` is the neighbourhood, in pixels, each filled pixel draws on."""
  try:
    import cv2  # noqa: PLC0415 (only the default inpainter needs OpenCV)
  except ImportError as e:
    raise ImportError(
      "the default inpainter needs OpenCV: pip install opencv-python-headless (setup.py pins "
      "it), or pass inpaint=your_function(image, mask) -> image."
    ) from e
  if method not in OPENCV_METHODS:
    raise ValueError(f"OpenCV inpainting method {method!r} unknown; use one of {OPENCV_METHODS}.")
  flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS

  def inpaint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask8 = np.asarray(mask, bool).astype(np.uint8) * 255
    return cv2.inpaint(np.ascontiguousarray(image, np.uint8), mask8, float(radius), flag)

  return inpaint


@dataclasses.dataclass(frozen=True, eq=False)
class RepairRound:
  """One round of a repair: round 0 is the input image.

  Attributes:
    round: 0 for the input, then 1, 2, ...
    image: uint8 [H, W, 3], the image this round made (round 0: the input).
    result: its ScoreResult (scores and heatmaps).
    reward: its combined score under the repair's weights.
    mask: bool [H, W], the mask inpainted to make it (None for round 0).
    kept: whether it beat the best so far (round 0 is kept).
  """

  round: int
  image: np.ndarray
  result: Any
  reward: float
  mask: np.ndarray | None
  kept: bool


@dataclasses.dataclass(frozen=True, eq=False)
class RepairResult:
  """A repair's outcome: the best image, which round made it, every round, why it stopped."""

  image: np.ndarray
  best_round: int
  history: list[RepairRound]
  stop_reason: str  # "no gain", "empty mask" or "rounds"

  @property
  def result(self) -> Any:
    """The ScoreResult of the returned image."""
    return self.history[self.best_round].result

  @property
  def reward_gain(self) -> float:
    """The returned image's reward minus the input's."""
    return self.history[self.best_round].reward - self.history[0].reward

  @property
  def painted(self) -> np.ndarray:
    """bool [H, W]: every pixel the kept rounds repainted (the union of their masks)."""
    out = np.zeros(self.image.shape[:2], bool)
    for r in self.history[1 : self.best_round + 1]:
      out |= r.mask
    return out


def heatmap_mask_fn(threshold: float = DEFAULT_THRESHOLD, **mask_kw) -> MaskFn:
  """The default mask: `inpainting_mask` of the image's predicted implausibility heatmap."""

  def mask_fn(image: np.ndarray, result: Any) -> np.ndarray:
    heat = result.implausibility_heatmap
    if heat is None:
      raise ValueError("the scorer returned no implausibility heatmap; score with heatmaps=True.")
    return inpainting_mask(heat, threshold, size=image.shape[:2], **mask_kw)

  return mask_fn


def _inpainted(inpaint: Inpainter, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  out = np.asarray(inpaint(image.copy(), mask.copy()))
  if out.dtype != np.uint8 or out.shape != image.shape:
    raise ValueError(
      f"inpaint returned a {out.dtype} array of shape {out.shape}; it must return uint8 "
      f"{image.shape} like the image it was given."
    )
  return out


def repair_many(
  images: Sequence[Any],
  prompts: str | Sequence[str],
  scorer: Any,
  inpaint: Inpainter | None = None,
  rounds: int = DEFAULT_ROUNDS,
  weights: Mapping[str, float] | None = None,
  mask_fn: MaskFn | None = None,
  min_gain: float = 0.0,
  threshold: float = DEFAULT_THRESHOLD,
  **mask_kw,
) -> list[RepairResult]:
  """`repair` of each (image, prompt) pair; each round scores all pairs still going in one call.

  Args:
    images: anything rahf_jax.reward.load_image reads (arrays, PIL images, paths).
    prompts: one prompt per image, or one for all.
    scorer: a Scorer (or any object with `score(images, prompts, heatmaps=True)` returning
      results with `.scores` and `.implausibility_heatmap`).
    inpaint: the inpainter (default: opencv_inpainter()).
    rounds: at most this many inpainting rounds (k).
    weights: the reward's mix of scores (default REPAIR_WEIGHTS: plausibility alone).
    mask_fn: (image, its ScoreResult) -> bool mask [H, W] (default: heatmap_mask_fn with
      `threshold` and `mask_kw`, inpainting_mask's dilation and min_area).
    min_gain: a round is kept when its reward exceeds the best so far by more than this.
  """
  if int(rounds) < 0:
    raise ValueError(f"rounds must be >= 0, got {rounds}.")
  weights = ranking.check_weights(REPAIR_WEIGHTS if weights is None else weights)
  images = [load_image(im) for im in images]
  prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
  if len(images) != len(prompts):
    raise ValueError(f"{len(images)} images but {len(prompts)} prompts; pass one prompt each.")
  inpaint = inpaint or opencv_inpainter()
  mask_fn = mask_fn or heatmap_mask_fn(threshold, **mask_kw)

  def scored(idx, imgs):
    results = scorer.score(imgs, [prompts[i] for i in idx], heatmaps=True) if idx else []
    return [(r, ranking.combined_score(r, weights)) for r in results]

  histories = [
    [RepairRound(0, im, r, w, None, True)]
    for im, (r, w) in zip(images, scored(range(len(images)), images), strict=True)
  ]
  best = [0] * len(images)
  stop = ["rounds"] * len(images)
  active = list(range(len(images)))
  for k in range(1, int(rounds) + 1):
    todo, new_images, masks = [], [], []
    for i in active:
      current = histories[i][best[i]]
      mask = np.asarray(mask_fn(current.image, current.result), bool)
      if mask.shape != current.image.shape[:2]:
        raise ValueError(
          f"mask_fn returned shape {mask.shape}; the image is {current.image.shape[:2]}."
        )
      if not mask.any():
        stop[i] = "empty mask"
        continue
      todo.append(i)
      masks.append(mask)
      new_images.append(_inpainted(inpaint, current.image, mask))
    active = []
    for i, im, mask, (r, w) in zip(todo, new_images, masks, scored(todo, new_images), strict=True):
      kept = w > histories[i][best[i]].reward + min_gain
      histories[i].append(RepairRound(k, im, r, w, mask, kept))
      if kept:
        best[i] = k
        active.append(i)
      else:
        stop[i] = "no gain"
  return [RepairResult(h[b].image, b, h, s) for h, b, s in zip(histories, best, stop, strict=True)]


def repair(image: Any, prompt: str, scorer: Any, **kw) -> RepairResult:
  """Heatmap-guided inpainting of one image (see the module docstring; `kw` as repair_many)."""
  return repair_many([image], [prompt], scorer, **kw)[0]


__all__ = [
  "REPAIR_WEIGHTS",
  "RepairResult",
  "RepairRound",
  "heatmap_mask_fn",
  "opencv_inpainter",
  "repair",
  "repair_many",
]
