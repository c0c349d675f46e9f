"""Weighted mixes of the four scores, and candidates ordered by them (rank, best-of-n).

The default mix, DEFAULT_WEIGHTS = {"overall": 1.0}, is RAHF's overall score alone: it is the
rating the annotators gave for the image as a whole given its prompt, so it already weighs
artifacts, alignment and aesthetics as people do. Pass other weights to favour one aspect,
e.g. {"plausibility": 1, "alignment": 1} to pick the candidate with fewest artifacts and
best prompt alignment. A mix is the weighted mean sum(w_s * score_s) / sum(|w_s|), so with
non-negative weights it stays in [0, 1].
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from rahf_jax import features as F

DEFAULT_WEIGHTS: Mapping[str, float] = {"overall": 1.0}


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
  """Validated weights ({score type: weight}, DEFAULT_WEIGHTS for None), zero entries dropped."""
  weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
  unknown = sorted(set(weights) - set(F.SCORE_TYPES))
  if unknown:
    raise ValueError(f"unknown score types {unknown} in weights; use any of {F.SCORE_TYPES}.")
  weights = {s: float(w) for s, w in weights.items() if float(w) != 0.0}
  if not weights:
    raise ValueError(f"weights are all zero; give at least one of {F.SCORE_TYPES} a weight.")
  return {s: weights[s] for s in F.SCORE_TYPES if s in weights}


def parse_weights(text: str) -> dict[str, float]:
  """ "overall=1,aesthetics=0.5" -> {"overall": 1.0, "aesthetics": 0.5} (validated)."""
  weights = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    name, sep, value = part.partition("=")
    try:
      weights[name.strip()] = float(value)
    except ValueError:
      sep = ""
    if not sep:
      raise ValueError(f"weights entry {part!r} is not NAME=NUMBER; e.g. overall=1,aesthetics=0.5.")
  return check_weights(weights)


def combined_score(scores: Mapping[str, float] | Any, weights: Mapping[str, float] | None = None):
  """The weighted mean of `scores` ({type: value} or a ScoreResult) under `weights`."""
  weights = check_weights(weights)
  if not isinstance(scores, Mapping):
    scores = scores.scores
  total = sum(abs(w) for w in weights.values())
  return sum(w * float(scores[s]) for s, w in weights.items()) / total


@dataclasses.dataclass(frozen=True, eq=False)
class RankedCandidate:
  """One candidate in a ranking: rank 1 is the best; `index` is its position in the input."""

  rank: int
  index: int
  reward: float
  result: Any


def rank_results(
  results: Sequence[Any], weights: Mapping[str, float] | None = None
) -> list[RankedCandidate]:
  """Candidates best first by `combined_score` (ties keep input order)."""
  rewards = [combined_score(r, weights) for r in results]
  order = sorted(range(len(results)), key=lambda i: (-rewards[i], i))
  return [RankedCandidate(rank + 1, i, rewards[i], results[i]) for rank, i in enumerate(order)]
