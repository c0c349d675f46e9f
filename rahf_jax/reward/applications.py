"""RAHF's uses measured against the synthetic generator's truth: best-of-n and the repair loop.

  rahf-jax demo --applications --out demo_out   # after `make demo`: APPLICATIONS.md + .json

Both use the first `num_prompts` scenes of the demo's synthetic test split (regenerated from
their seeds; synthetic_truth), and images as the demo's data stores them (JPEG at the data's
quality), scored by the demo's model.

Best-of-n. Each prompt gets CANDIDATES candidate images (synthetic_truth.candidate_scene, drawn
from the generator seeded [seed, CANDIDATE_STREAM, index, j]: the same prompt, its flaws drawn
afresh with the generator's own probabilities), scored once. For n in NS the first n candidates
are ranked by a mix of the predicted scores (ranking.rank_results, what Scorer.best_of_n does)
and three picks are compared by the TRUE (noiseless) value of the same mix, and by flaw count:
  RAHF    the candidate ranked first;
  random  the mean over the n candidates (the expected value of a uniformly random pick);
  oracle  the candidate with the highest true value.
gap closed = (RAHF - random) / (oracle - random) of the means over prompts, with a 95% interval
from BOOTSTRAP resamples of the prompts.

Repair. Each test image goes through repair_many (OpenCV inpainting, up to `rounds` rounds while
the predicted plausibility rises), its masks from the predicted implausibility heatmap at a
threshold chosen on the dev split (the one whose mask best overlaps, by IoU, the mask of the
annotators' heatmap; choose_threshold). Beside it, each applied once: RAHF's first-round mask;
the mask of the ground-truth (annotators') heatmap at inpainting_mask's default threshold (the
upper bound); and RAHF's first-round mask moved by a uniformly random cyclic shift (same area,
same shapes, random place: the baseline). Per mask, by the truth (synthetic_truth): the share of
true flaw pixels painted, the share of clean pixels painted, the share of artifacts repaired (at
least half their pixels painted), the predicted plausibility of the result, and its true
plausibility (make_scene's formula over the artifacts not repaired).
"""

import io
import time
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from rahf_jax.reward import ranking
from rahf_jax.reward.inpainting import DEFAULT_THRESHOLD, inpainting_mask
from rahf_jax.reward.repair_loop import opencv_inpainter, repair_many

NS = (1, 2, 4, 8, 16)
CANDIDATES = max(NS)
RANKINGS: Mapping[str, Mapping[str, float]] = {
  "overall": {"overall": 1.0},
  "plausibility": {"plausibility": 1.0},
  "alignment": {"alignment": 1.0},
}
CANDIDATE_STREAM = 100  # generator streams beside rahf_jax.data.synthetic's (0-2, 7-9)
RANDOM_MASK_STREAM = 101
BOOTSTRAP = 1000
THRESHOLD_GRID = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
DEV_SCENES = 48
ROUNDS = 3
CHUNK = 32  # images held at once (with their heatmaps)


def stored_image(image: np.ndarray, quality: int) -> np.ndarray:
  """The image as the synthetic data stores it: JPEG at `quality`, decoded."""
  from rahf_jax.data import synthetic_scenes  # noqa: PLC0415 (the data layer)

  data = synthetic_scenes.encode_jpeg(image, quality)
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def gap_closed(rahf, random, oracle, bootstrap: int = BOOTSTRAP, seed: int = 0):
  """(RAHF - random) / (oracle - random) of the means over prompts, and its 95% bootstrap
  interval (None where the oracle does not beat random, e.g. n = 1)."""
  rahf, random, oracle = (np.asarray(a, np.float64) for a in (rahf, random, oracle))
  den = oracle.mean() - random.mean()
  if den <= 1e-12:
    return None, None
  idx = np.random.default_rng(seed).integers(0, len(rahf), (bootstrap, len(rahf)))
  dens = oracle[idx].mean(1) - random[idx].mean(1)
  ratios = (rahf[idx].mean(1) - random[idx].mean(1)) / np.where(dens > 1e-12, dens, np.nan)
  lo, hi = np.nanpercentile(ratios, [2.5, 97.5])
  return float((rahf.mean() - random.mean()) / den), [float(lo), float(hi)]


def _true_mix(true: Mapping[str, float], weights: Mapping[str, float]) -> float:
  return ranking.combined_score(true, weights)


def best_of_n_study(scorer, scenes, indices, seed: int, quality: int, ns=NS, rankings=RANKINGS):
  """The best-of-n figures (see the module docstring) for `scenes` (test scene objects) at their
  split `indices`; returns {ranking name: {"weights", "rows": [one dict per n]}}."""
  from rahf_jax.reward import synthetic_truth as T  # noqa: PLC0415 (the data layer)

  count = max(ns)
  per_prompt = []  # (predicted results, true scores, flaw counts) per prompt
  group = max(1, CHUNK // count)
  for start in range(0, len(scenes), group):
    cands, images, prompts = [], [], []
    for scene, index in zip(
      scenes[start : start + group], indices[start : start + group], strict=True
    ):
      mine = [T.candidate_scene(scene, np.random.default_rng([seed, CANDIDATE_STREAM, index, j]))
              for j in range(count)]  # fmt: skip
      cands.append(mine)
      images += [stored_image(c.image, quality) for c in mine]
      prompts += [scene.prompt] * count
    results = scorer.score(images, prompts)
    for k, mine in enumerate(cands):
      per_prompt.append((
        results[k * count : (k + 1) * count],
        [T.true_scores(c) for c in mine],
        np.array([T.flaw_count(c) for c in mine]),
      ))  # fmt: skip
  out = {}
  for name, weights in rankings.items():
    rows = []
    for n in ns:
      rahf, rnd, orc, f_rahf, f_rnd, f_orc = ([] for _ in range(6))
      for results, true, flaws in per_prompt:
        values = np.array([_true_mix(t, weights) for t in true[:n]])
        pick = ranking.rank_results(results[:n], weights)[0].index
        best = int(np.argmax(values))
        rahf.append(values[pick])
        rnd.append(values.mean())
        orc.append(values[best])
        f_rahf.append(flaws[pick])
        f_rnd.append(flaws[:n].mean())
        f_orc.append(flaws[best])
      gap, interval = gap_closed(rahf, rnd, orc)
      rows.append(dict(
        n=n, rahf=float(np.mean(rahf)), random=float(np.mean(rnd)), oracle=float(np.mean(orc)),
        gap_closed=gap, gap_closed_95=interval, flaws_rahf=float(np.mean(f_rahf)),
        flaws_random=float(np.mean(f_rnd)), flaws_oracle=float(np.mean(f_orc)),
      ))  # fmt: skip
    out[name] = {"weights": dict(weights), "rows": rows}
  return out


def _mask_iou_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
  return int((pred & truth).sum()), int((pred | truth).sum())


def truth_heatmap_mask(scene) -> np.ndarray:
  """The mask of the annotators' implausibility map (inpainting_mask's default threshold)."""
  size = scene.image.shape[:2]
  return inpainting_mask(scene.artifact_map / 255.0, DEFAULT_THRESHOLD, size=size)


def choose_threshold(scorer, scenes, quality: int, grid=THRESHOLD_GRID) -> dict:
  """The grid threshold whose predicted-heatmap masks best overlap (pooled IoU) the masks of the
  annotators' heatmaps over `scenes` (the dev split); returns {"threshold", "iou_by_threshold"}."""
  images = [stored_image(s.image, quality) for s in scenes]
  results = scorer.score(images, [s.prompt for s in scenes], heatmaps=True)
  truths = [truth_heatmap_mask(s) for s in scenes]
  ious = {}
  for t in grid:
    inter = union = 0
    for r, truth in zip(results, truths, strict=True):
      i, u = _mask_iou_counts(inpainting_mask(r.implausibility_heatmap, t), truth)
      inter, union = inter + i, union + u
    ious[t] = inter / union if union else 0.0
  best = max(grid, key=lambda t: (ious[t], -t))
  return {"threshold": best, "iou_by_threshold": {f"{t:g}": v for t, v in ious.items()}}


class _Tally:
  """Pooled counts of one repair row over the split."""

  def __init__(self):
    self.flaw = self.flaw_painted = self.clean = self.clean_painted = 0
    self.artifacts = self.repaired = 0
    self.pred, self.true, self.true_flawed, self.area = [], [], [], []

  def add(self, scene, painted, predicted_plausibility):
    from rahf_jax.reward import synthetic_truth as T  # noqa: PLC0415

    flaw = T.flaw_mask(scene)
    truth = T.repaired_truth(scene, painted)
    self.flaw += int(flaw.sum())
    self.flaw_painted += int((painted & flaw).sum())
    self.clean += int((~flaw).sum())
    self.clean_painted += int((painted & ~flaw).sum())
    self.artifacts += len(truth["repaired"])
    self.repaired += sum(truth["repaired"])
    self.pred.append(predicted_plausibility)
    self.true.append(truth["plausibility"])
    if truth["repaired"]:
      self.true_flawed.append(truth["plausibility"])
    self.area.append(float(painted.mean()))

  def row(self) -> dict:
    return dict(
      flaw_pixels_painted=self.flaw_painted / max(self.flaw, 1),
      clean_pixels_painted=self.clean_painted / max(self.clean, 1),
      artifacts_repaired=self.repaired / max(self.artifacts, 1),
      mask_area=float(np.mean(self.area)),
      predicted_plausibility=float(np.mean(self.pred)),
      true_plausibility=float(np.mean(self.true)),
      true_plausibility_flawed=float(np.mean(self.true_flawed)) if self.true_flawed else None,
    )


REPAIR_ROWS = ("input", "rahf_loop", "rahf_one_round", "ground_truth_heatmap", "random_mask")


def repair_study(scorer, scenes, indices, seed: int, quality: int, threshold: float,
                 rounds: int = ROUNDS, inpaint=None) -> dict:  # fmt: skip
  """The repair figures (see the module docstring): {row name: figures} for REPAIR_ROWS, plus
  the loop's kept rounds and stop reasons."""
  inpaint = inpaint or opencv_inpainter()
  tallies = {name: _Tally() for name in REPAIR_ROWS}
  kept_rounds, stops = [], {}
  for start in range(0, len(scenes), CHUNK):
    chunk, idx = scenes[start : start + CHUNK], indices[start : start + CHUNK]
    images = [stored_image(s.image, quality) for s in chunk]
    prompts = [s.prompt for s in chunk]
    loop = repair_many(images, prompts, scorer, inpaint, rounds=rounds, threshold=threshold)
    extra_masks = {"ground_truth_heatmap": [], "random_mask": []}
    for scene, index, image, res in zip(chunk, idx, images, loop, strict=True):
      h0 = res.history[0]
      none = np.zeros(image.shape[:2], bool)
      tallies["input"].add(scene, none, h0.result.plausibility)
      tallies["rahf_loop"].add(scene, res.painted, res.result.plausibility)
      first = res.history[1] if len(res.history) > 1 else h0
      one = first.mask if first.mask is not None else none
      tallies["rahf_one_round"].add(scene, one, first.result.plausibility)
      kept_rounds.append(res.best_round)
      stops[res.stop_reason] = stops.get(res.stop_reason, 0) + 1
      shift = np.random.default_rng([seed, RANDOM_MASK_STREAM, index]).integers(0, image.shape[:2])
      extra_masks["random_mask"].append(np.roll(one, tuple(int(s) for s in shift), axis=(0, 1)))
      extra_masks["ground_truth_heatmap"].append(truth_heatmap_mask(scene))
    for name, masks in extra_masks.items():
      painted = [inpaint(im, m) if m.any() else im for im, m in zip(images, masks, strict=True)]
      results = scorer.score(painted, prompts)
      for scene, m, r in zip(chunk, masks, results, strict=True):
        tallies[name].add(scene, m, r.plausibility)
  out = {name: t.row() for name, t in tallies.items()}
  out["rahf_loop"]["mean_rounds_kept"] = float(np.mean(kept_rounds))
  out["rahf_loop"]["stop_reasons"] = stops
  return out


def run_applications(scorer, data_config: Mapping, num_prompts: int, rounds: int = ROUNDS,
                     dev_scenes: int = DEV_SCENES, ns: Sequence[int] = NS) -> dict:  # fmt: skip
  """Both studies on the first `num_prompts` test scenes of the synthetic data written with
  `data_config` (its manifest's "config"); returns the figures (JSON-able)."""
  from rahf_jax.reward import synthetic_truth as T  # noqa: PLC0415 (the data layer)

  seed, size = int(data_config["seed"]), int(data_config["image_size"])
  quality = int(data_config.get("jpeg_quality", 90))
  num_prompts = min(int(num_prompts), int(data_config["num_test"]))
  dev_scenes = min(int(dev_scenes), int(data_config["num_dev"]))
  if num_prompts < 1:
    raise ValueError(f"num_prompts must be >= 1, got {num_prompts}.")
  timings = {}
  start = time.time()
  indices = list(range(num_prompts))
  scenes = [T.split_scene(seed, "test", i, size) for i in indices]
  dev = [T.split_scene(seed, "dev", i, size) for i in range(dev_scenes)]
  best_of_n = best_of_n_study(scorer, scenes, indices, seed, quality, tuple(ns))
  timings["best_of_n"] = time.time() - start
  start = time.time()
  chosen = choose_threshold(scorer, dev, quality)
  repair = repair_study(scorer, scenes, indices, seed, quality, chosen["threshold"], rounds)
  timings["repair"] = time.time() - start
  return {
    "num_prompts": num_prompts,
    "candidates_per_prompt": max(ns),
    "dev_scenes": dev_scenes,
    "rounds": rounds,
    "mask_threshold": chosen,
    "best_of_n": best_of_n,
    "repair": repair,
    "timings_s": timings,
  }
