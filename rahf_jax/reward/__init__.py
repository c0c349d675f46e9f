"""RAHF as a reward: scoring at scale, ranking, a differentiable JAX reward, inpainting masks.

  from rahf_jax.reward import Scorer, inpainting_mask

  scorer = Scorer.from_workdir("demo_out/workdir")
  results = scorer.score(images, prompts, heatmaps=True, words=True)   # list[ScoreResult]
  best = scorer.best_of_n("a red cube", candidates)                     # by DEFAULT_WEIGHTS
  reward = scorer.reward_fn()          # pure JAX: (params, images [B,H,W,3] in [0,1], ids) -> [B]
  dense = scorer.reward_fn(dense=True) # ... -> [B, H, W]: R * (1 - implausibility heatmap)
  mask = inpainting_mask(results[0].implausibility_heatmap)
  fixed = repair(image, "a red cube", scorer)  # inpaint what it marks while plausibility rises

Modules: `scorer` (bucketed batch scoring on top of rahf_jax.inference.predictor), `score_result`
(the typed result, misaligned prompt words), `image_inputs` (any image -> uint8 RGB), `ranking`
(weighted mixes of the scores, rank, best-of-n), `differentiable` (`reward_fn`, scalar or dense),
`inpainting` (`inpainting_mask`), `repair_loop` (`repair`, the heatmap-guided inpainting loop,
OpenCV's inpainter by default); `synthetic_truth` and `applications` (best-of-n and repair measured
against the synthetic generator's truth, `rahf-jax demo --applications`; they import the data
layer); the `rahf-jax score` command: `score_cli` (flags, the run), `score_rows` (manifest /
image folder -> rows), `results_file` (resumable JSONL), `gallery` (static HTML); the
`rahf-jax serve` reward server: `server` (aiohttp app), `server_io` (wire format),
`server_batching` (queue, dynamic batching), `serve_cli` (flags), and `client`.

Names are imported on first use, so `import rahf_jax.reward` (and the CLI) stays light.
"""

import importlib

_EXPORTS = {
  "Scorer": "scorer",
  "ScoreResult": "score_result",
  "load_image": "image_inputs",
  "ImageInputError": "image_inputs",
  "DEFAULT_WEIGHTS": "ranking",
  "RankedCandidate": "ranking",
  "combined_score": "ranking",
  "rank_results": "ranking",
  "reward_fn": "differentiable",
  "augmented_prefix_ids": "differentiable",
  "dense_reward_map": "differentiable",
  "inpainting_mask": "inpainting",
  "repair": "repair_loop",
  "repair_many": "repair_loop",
  "RepairResult": "repair_loop",
  "opencv_inpainter": "repair_loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module 'rahf_jax.reward' has no attribute {name!r}")
  module = importlib.import_module(f"rahf_jax.reward.{_EXPORTS[name]}")
  return getattr(module, name)
