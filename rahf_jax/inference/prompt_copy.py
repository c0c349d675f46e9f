"""What constrained decoding may write: the prompt's own words, in order, each optionally `_0`.

`copy_plan(prompts, tokenizer, length)` tokenises each prompt's words (the RichHF-18K split,
joined by single spaces: exactly the decoder target without its marks) and finds the places
where the mark may go: after the last token of a word. The mark's own tokens are those that
`tokenizer` appends to a word for "_0" (one piece, "_0", in the demo vocabulary). A word whose
marked form is not its own tokens followed by the mark's (a merge across the boundary) cannot
be marked; such words are counted in `CopyPlan.unmarkable_words`.

rahf_jax.models.decoding.constrained_decode follows the plan: at each step it either copies the
next token or, at a word end, writes the mark, whichever the decoder scores higher.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from rahf_jax import features as F


@dataclasses.dataclass(frozen=True)
class CopyPlan:
  """Arrays for `constrained_decode` (B prompts, L = length).

  Attributes:
    copy_ids: int32 [B, L] the unmarked words' tokens, then EOS, then PAD.
    can_mark: bool [B, L] True where the mark may be written before copy_ids[:, j] (j > 0 and
      copy_ids[:, j - 1] ends a markable word).
    mark_ids: int32 [M] the mark's tokens.
    unmarkable_words: words (over all prompts) whose marked form does not split as word + mark.
    truncated: prompts whose words (plus EOS) did not fit in `length` tokens.
  """

  copy_ids: np.ndarray
  can_mark: np.ndarray
  mark_ids: np.ndarray
  unmarkable_words: int
  truncated: int


def _encode(tokenizer, text: str) -> list[int]:
  return list(tokenizer.encode(text))


def mark_tokens(tokenizer) -> list[int]:
  """The tokens that the mark "_0" adds after a word (probed on a plain word)."""
  word = _encode(tokenizer, "a")
  marked = _encode(tokenizer, "a" + F.MISALIGNED_SUFFIX)
  if marked[: len(word)] != word or len(marked) == len(word):
    raise ValueError(
      f"the vocabulary does not write the {F.MISALIGNED_SUFFIX!r} mark as its own tokens after a "
      "word; use free decoding (decoding='free') with this vocabulary."
    )
  return marked[len(word) :]


def copy_plan(prompts: Sequence[str], tokenizer, length: int) -> CopyPlan:
  """The CopyPlan of `prompts` for targets of `length` tokens (see the module docstring)."""
  mark = mark_tokens(tokenizer)
  copy_ids = np.full((len(prompts), length), F.PAD_ID, np.int32)
  can_mark = np.zeros((len(prompts), length), bool)
  unmarkable = truncated = 0
  for b, prompt in enumerate(prompts):
    ids: list[int] = []
    ends: list[int] = []  # index of the token after each markable word
    for word in F.split_prompt_words(prompt):
      tokens = _encode(tokenizer, word)
      if _encode(tokenizer, word + F.MISALIGNED_SUFFIX) == tokens + mark:
        ends.append(len(ids) + len(tokens))
      else:
        unmarkable += 1
      ids += tokens
    ids.append(F.EOS_ID)
    if len(ids) > length:
      truncated += 1
      ids = ids[: length - 1] + [F.EOS_ID]
    copy_ids[b, : len(ids)] = ids
    for j in ends:
      if j < len(ids):
        can_mark[b, j] = True
  return CopyPlan(copy_ids, can_mark, np.asarray(mark, np.int32), unmarkable, truncated)


def prompts_from_ids(prompt_ids: np.ndarray, tokenizer) -> list[str]:
  """The prompt texts behind encoder ids (EOS/PAD dropped; an augmented prompt's type prefix,
  "<prefix> | ", removed)."""
  prefixes = tuple(p + " | " for p in F.AUGMENTED_PROMPT_PREFIXES.values())
  out = []
  for row in np.asarray(prompt_ids):
    ids = [int(i) for i in row if i not in (F.PAD_ID, F.EOS_ID)]
    text = tokenizer.decode(ids)
    for prefix in prefixes:
      if text.startswith(prefix):
        text = text[len(prefix) :]
        break
    out.append(text)
  return out
