"""`ScoreResult`: what RAHF says about one (image, prompt) pair, and the misaligned prompt words.

Prompt words are split as RichHF-18K splits them (rahf_jax.features.split_prompt_words: on the
characters `,.?!":;` and on spaces).
"""

import dataclasses
from typing import Any

import numpy as np

from rahf_jax import features as F
from rahf_jax.inference.postprocess import misaligned_prompt_words  # noqa: F401 (re-exported)

prompt_words = F.split_prompt_words


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreResult:
  """RAHF's output for one (image, prompt) pair.

  Attributes:
    plausibility, alignment, aesthetics, overall: the four scores, each in [0, 1] (higher is
      better: fewer artifacts, better prompt alignment, more aesthetic, better overall).
    implausibility_heatmap, misalignment_heatmap: float32 [H, W] in [0, 1] at the image's own
      resolution (bilinear from the model's heatmap size), or None when not asked for.
    misaligned_words: the prompt words RAHF marks as not shown in the image, in prompt order,
      or None when not asked for.
    marked_prompt: the decoder's text (the prompt with `_0` after each misaligned word), or
      None when words were not asked for.
  """

  plausibility: float
  alignment: float
  aesthetics: float
  overall: float
  implausibility_heatmap: np.ndarray | None = None
  misalignment_heatmap: np.ndarray | None = None
  misaligned_words: list[str] | None = None
  marked_prompt: str | None = None

  @property
  def scores(self) -> dict[str, float]:
    """{score type: value} in features.SCORE_TYPES order."""
    return {s: float(getattr(self, s)) for s in F.SCORE_TYPES}

  @property
  def heatmaps(self) -> dict[str, np.ndarray]:
    """{heatmap type: map} of the heatmaps present."""
    maps = {h: getattr(self, f"{h}_heatmap") for h in F.HEATMAP_TYPES}
    return {h: m for h, m in maps.items() if m is not None}

  def to_json(self) -> dict[str, Any]:
    """The JSON-able part: scores, and the words when present (heatmaps are left out)."""
    out: dict[str, Any] = {"scores": self.scores}
    if self.misaligned_words is not None:
      out["misaligned_words"] = list(self.misaligned_words)
      out["marked_prompt"] = self.marked_prompt
    return out
