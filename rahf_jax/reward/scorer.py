"""`Scorer`: a trained RAHF checkpoint as a scoring function for many (image, prompt) pairs.

  scorer = Scorer.from_workdir("demo_out/workdir", batch_size=16)
  results = scorer.score(images, prompts)                     # scores only: heads, no decoder
  results = scorer.score(images, prompts, heatmaps=True, words=True)

Pairs run in buckets of exactly `batch_size` pairs (the last one padded with copies of its
last pair), so every call, whatever its length, reuses one compiled program per output set
(heads; heads + decoder for words). The model's heads run alone unless words are asked for.
The augmented-prompt variant runs one encoder pass per output type (the type written in front
of the prompt): the four score types, plus the two heatmap types when heatmaps are asked for,
plus the words type when words are asked for.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from rahf_jax import features as F
from rahf_jax.inference import postprocess
from rahf_jax.inference.predictor import Predictor, preprocess_image
from rahf_jax.reward import ranking
from rahf_jax.reward.image_inputs import load_image
from rahf_jax.reward.score_result import ScoreResult, misaligned_prompt_words

DEFAULT_BATCH_SIZE = 16
DEFAULT_DECODE_LENGTH = 64


def resize_heatmap(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
  """float32 [h, w] -> [height, width] (bilinear), clipped to [0, 1]."""
  heat = np.ascontiguousarray(np.asarray(heatmap, np.float32))
  if heat.shape != (height, width):
    heat = np.asarray(Image.fromarray(heat, mode="F").resize((width, height), Image.BILINEAR))
  return np.clip(heat, 0.0, 1.0)


def _pad_rows(rows: Sequence[Any], size: int) -> list[Any]:
  return list(rows) + [rows[-1]] * (size - len(rows))


class Scorer:
  """Scores (image, prompt) pairs with a restored RAHF model (see module docstring)."""

  def __init__(self, predictor: Predictor, batch_size: int = DEFAULT_BATCH_SIZE):
    if int(batch_size) < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    self.predictor = predictor
    self.batch_size = int(batch_size)

  @classmethod
  def from_workdir(
    cls,
    workdir: str,
    best: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    compute_dtype: str | None = None,
  ) -> "Scorer":
    """A workdir's checkpoint as `Predictor.from_workdir` opens it: the best where the run keeps
    one, else the newest (`best=False`: the newest); with its calibrated mark bias; float32
    compute on a CPU backend, the config's dtype on GPU/TPU (`compute_dtype` chooses)."""
    predictor = Predictor.from_workdir(workdir, best=best, compute_dtype=compute_dtype)
    return cls(predictor, batch_size)

  @property
  def params(self) -> Any:
    return self.predictor.params

  @property
  def variant(self) -> str:
    return self.predictor.variant

  @property
  def image_size(self) -> int:
    return int(self.predictor.model_config.image_size)

  @property
  def decode_length(self) -> int:
    """Decoded tokens per example: the run's target_len (DEFAULT_DECODE_LENGTH if unknown)."""
    config = getattr(self.predictor.setup, "config", None)
    try:
      return int(config.data.target_len)
    except (AttributeError, KeyError, TypeError):
      return DEFAULT_DECODE_LENGTH

  def encode_prompts(self, prompts: Sequence[str]) -> np.ndarray:
    """Plain prompts -> int32 [B, prompt_len] ids (the input of `reward_fn`'s function)."""
    return self.predictor.encode_prompts(list(prompts))

  # Scoring.

  def score(
    self,
    images: Sequence[Any],
    prompts: str | Sequence[str],
    batch_size: int | None = None,
    heatmaps: bool = False,
    words: bool = False,
  ) -> list[ScoreResult]:
    """One ScoreResult per (image, prompt) pair, in input order.

    Args:
      images: PIL images, uint8 arrays ([H, W], [H, W, 3], [H, W, 4]) or image paths, of any
        size (rahf_jax.reward.image_inputs).
      prompts: one prompt per image, or one string for all of them.
      batch_size: pairs per model call (default: the scorer's); each new value compiles anew.
      heatmaps: also return the two heatmaps, resized to each image's resolution.
      words: also decode the misaligned words (runs the decoder; slower).
    """
    images = list(images)
    prompts = [prompts] * len(images) if isinstance(prompts, str) else list(prompts)
    if len(images) != len(prompts):
      raise ValueError(f"{len(images)} images but {len(prompts)} prompts; pass one prompt each.")
    bucket = self.batch_size if batch_size is None else int(batch_size)
    if bucket < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    results: list[ScoreResult] = []
    for start in range(0, len(images), bucket):
      pixels = [load_image(im) for im in images[start : start + bucket]]
      results += self._score_bucket(
        pixels, prompts[start : start + bucket], bucket, heatmaps, words
      )
    return results

  def _score_bucket(self, pixels, prompts, bucket, heatmaps, words) -> list[ScoreResult]:
    n = len(pixels)
    size = self.image_size
    batch = np.stack([preprocess_image(p, size) for p in _pad_rows(pixels, bucket)])
    padded_prompts = _pad_rows(prompts, bucket)
    if self.variant == F.MULTI_HEAD:
      arrays = self.predictor.heads(batch, self.encode_prompts(padded_prompts))
      scores = {s: arrays[f"score_{s}"] for s in F.SCORE_TYPES}
      maps = {h: arrays[f"heatmap_{h}"] for h in F.HEATMAP_TYPES} if heatmaps else {}
      word_prompts = padded_prompts
    elif self.variant == F.AUGMENTED_PROMPT:
      types = F.SCORE_TYPES + (F.HEATMAP_TYPES if heatmaps else ())
      ids = self.encode_prompts([F.augmented_prompt(t, p) for p in padded_prompts for t in types])
      arrays = self.predictor.heads(np.repeat(batch, len(types), axis=0), ids)
      score = np.asarray(arrays["score"]).reshape(bucket, len(types))
      scores = {s: score[:, types.index(s)] for s in F.SCORE_TYPES}
      heat = np.asarray(arrays["heatmap"]).reshape(bucket, len(types), *arrays["heatmap"].shape[1:])
      maps = {h: heat[:, types.index(h)] for h in F.HEATMAP_TYPES} if heatmaps else {}
      word_prompts = [F.augmented_prompt(F.WORDS_TYPE, p) for p in padded_prompts]
    else:
      raise ValueError(f"model variant {self.variant!r} unknown; use one of {F.VARIANTS}.")
    texts = None
    if words:
      # Copy the prompts' own text, as Predictor.predict does: text read back from the ids would
      # lack the words that prompt_len (less an augmented prefix) cut off.
      ids = self.predictor.decode(
        batch, self.encode_prompts(word_prompts), self.decode_length, prompts=padded_prompts
      )
      texts = postprocess.decode_texts(ids, self.predictor.tokenizer)
    out = []
    for i in range(n):
      h, w = pixels[i].shape[:2]
      fields: dict[str, Any] = {s: float(scores[s][i]) for s in F.SCORE_TYPES}
      for name, m in maps.items():
        fields[f"{name}_heatmap"] = resize_heatmap(m[i], h, w)
      if texts is not None:
        fields["marked_prompt"] = texts[i]
        fields["misaligned_words"] = misaligned_prompt_words(prompts[i], texts[i])
      out.append(ScoreResult(**fields))
    return out

  # Ranking.

  def rank(
    self, prompt: str, images: Sequence[Any], weights: Mapping[str, float] | None = None, **kw
  ) -> list[ranking.RankedCandidate]:
    """The candidate images for one prompt, best first by a weighted mix of the scores.

    `weights` ({score type: weight}) defaults to ranking.DEFAULT_WEIGHTS, the overall score
    alone; `kw` goes to `score` (heatmaps, words, batch_size).
    """
    return ranking.rank_results(self.score(images, prompt, **kw), weights)

  def best_of_n(
    self, prompt: str, images: Sequence[Any], weights: Mapping[str, float] | None = None, **kw
  ) -> ranking.RankedCandidate:
    """The best of n candidate images for one prompt (`rank(...)[0]`)."""
    if not len(images):
      raise ValueError("best_of_n needs at least one candidate image.")
    return self.rank(prompt, images, weights, **kw)[0]

  # The differentiable reward.

  def reward_fn(self, weights: Mapping[str, float] | None = None, logical_rules=None, **dense):
    """A pure JAX reward (params, images [B, H, W, 3] in [0, 1], prompt_ids [B, L]) -> [B].

    Call it with `scorer.params` and `scorer.encode_prompts(prompts)`; `dense=True` (with
    heatmap_weights=, dense_size=) gives the per-pixel map [B, H, W] instead; see
    rahf_jax.reward.differentiable.reward_fn.
    """
    from rahf_jax.reward.differentiable import reward_fn  # noqa: PLC0415

    return reward_fn(
      self.predictor.setup.model,
      weights,
      tokenizer=self.predictor.tokenizer,
      logical_rules=logical_rules,
      **dense,
    )
