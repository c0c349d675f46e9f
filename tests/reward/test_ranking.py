"""Weighted score mixes, rank order, and the misaligned prompt words read from decoded text."""

import pytest

from rahf_jax.reward import DEFAULT_WEIGHTS, ScoreResult, combined_score, rank_results
from rahf_jax.reward.ranking import parse_weights
from rahf_jax.reward.score_result import misaligned_prompt_words


def _result(p, a, ae, o):
  return ScoreResult(plausibility=p, alignment=a, aesthetics=ae, overall=o)


def test_combined_score_is_the_weighted_mean():
  r = _result(0.2, 0.4, 0.6, 0.8)
  assert DEFAULT_WEIGHTS == {"overall": 1.0}
  assert combined_score(r) == pytest.approx(0.8)
  assert combined_score(r, {"plausibility": 1, "aesthetics": 3}) == pytest.approx(0.5)
  assert combined_score(r.scores, {"alignment": 2, "overall": -1}) == pytest.approx(0.0 / 3)


def test_rank_orders_best_first_and_keeps_input_order_on_ties():
  results = [_result(0.9, 0, 0, 0.1), _result(0.1, 0, 0, 0.7), _result(0.5, 0, 0, 0.7)]
  ranked = rank_results(results)
  assert [(c.rank, c.index) for c in ranked] == [(1, 1), (2, 2), (3, 0)]
  by_plausibility = rank_results(results, {"plausibility": 1})
  assert [c.index for c in by_plausibility] == [0, 2, 1]
  assert by_plausibility[0].reward == pytest.approx(0.9) and by_plausibility[0].result is results[0]


def test_weights_are_checked():
  assert parse_weights("overall=1, aesthetics=0.5") == {"aesthetics": 0.5, "overall": 1.0}
  with pytest.raises(ValueError, match=r"unknown score types \['beauty'\]"):
    parse_weights("beauty=1")
  with pytest.raises(ValueError, match="is not NAME=NUMBER"):
    parse_weights("overall")
  with pytest.raises(ValueError, match="weights are all zero"):
    combined_score(_result(0, 0, 0, 0), {"overall": 0})


def test_misaligned_words_are_prompt_words():
  prompt = "A cat, a dog and a red hat."
  # The decoder reproduced the words: marks are read by position.
  marked = "A cat a_0 dog_0 and a red hat_0"
  assert misaligned_prompt_words(prompt, marked) == ["a", "dog", "hat"]
  # Otherwise by word, each marked occurrence matching one prompt occurrence; others dropped.
  assert misaligned_prompt_words(prompt, "cat red_0 zebra_0 hat_0 hat_0") == ["red", "hat"]
  assert misaligned_prompt_words(prompt, "") == []
