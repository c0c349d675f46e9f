"""The copy plan of constrained decoding, on the shipped demo vocabulary."""

import numpy as np
import pytest

from rahf_jax import features as F
from rahf_jax.inference import prompt_copy
from rahf_jax.inference.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def sp():
  return load_tokenizer("demo")


def test_plan_copies_the_words_and_allows_marks_at_word_ends(sp):
  prompt = "an image showing a pink circle, a blue star. green background"
  plan = prompt_copy.copy_plan([prompt, "a cat"], sp, 24)
  words = F.split_prompt_words(prompt)
  expected = sp.encode(" ".join(words)) + [F.EOS_ID]
  np.testing.assert_array_equal(plan.copy_ids[0, : len(expected)], expected)
  assert (plan.copy_ids[0, len(expected) :] == F.PAD_ID).all()
  np.testing.assert_array_equal(plan.mark_ids, sp.encode("a_0")[1:])
  ends = np.cumsum([len(sp.encode(w)) for w in words])  # the index after each word
  assert set(np.flatnonzero(plan.can_mark[0])) == set(ends.tolist())
  # Writing the mark at each allowed place is the tokenisation of the fully marked target.
  marked = []
  for j, token in enumerate(expected):
    if plan.can_mark[0, j]:
      marked += plan.mark_ids.tolist()
    marked.append(token)
  assert sp.decode(marked[:-1]) == " ".join(w + F.MISALIGNED_SUFFIX for w in words)
  assert plan.unmarkable_words == 0 and plan.truncated == 0


def test_too_long_prompt_is_cut_and_counted(sp):
  plan = prompt_copy.copy_plan(["a red circle on a blue background"], sp, 4)
  assert plan.truncated == 1 and plan.copy_ids[0, -1] == F.EOS_ID


def test_prompts_from_ids_strip_eos_pad_and_the_augmented_prefix(sp):
  prompt = "a red circle on a blue background"
  rows = []
  for text in (prompt, F.augmented_prompt(F.WORDS_TYPE, prompt)):
    ids = sp.encode(text) + [F.EOS_ID]
    rows.append(ids + [F.PAD_ID] * (40 - len(ids)))
  assert prompt_copy.prompts_from_ids(np.array(rows), sp) == [prompt, prompt]
