"""Prompt words, per-word misalignment labels and the `_0`-marked decoder target.

Pure Python (no TensorFlow), shared by the TFDS builder, the SeqIO tasks and the
evaluation. The splitting rule is RichHF-18K's own (google-research/richhf_18k,
match_label_to_token.py): split the prompt on each of the characters `,.?!":;`
and on the space character, and drop empty pieces. Nothing else is a delimiter
(tabs, newlines and other punctuation such as `'` or `-` stay inside words).

Labels follow the official convention: one integer per word, 0 = misaligned,
1 = aligned, stored as a space-separated string.

Label-count mismatch policy (this happens in the real data): the example is kept
for its scores and heatmaps, its labels are stored exactly as given, and it is
flagged `valid=False`; its target carries no `_0` marks (the marks cannot be
trusted) and the SeqIO layer zeroes the decoder loss for it. Builds count it.
"""

import dataclasses

from rahf_jax import features

DELIMITERS = features.WORD_DELIMITERS
split_prompt_words = features.split_prompt_words

MISALIGNED = 0
ALIGNED = 1


def parse_labels(label_string: str | bytes) -> list[int] | None:
  """Parses a `prompt_misalignment_label` string ("1 0 1") into ints.

  Returns None when a piece is not an integer (the caller treats that like a
  count mismatch: labels unusable). An empty or blank string gives [].
  """
  if isinstance(label_string, bytes):
    label_string = label_string.decode("utf-8", errors="replace")
  try:
    return [int(piece) for piece in label_string.split()]
  except ValueError:
    return None


def mark_words(words: list[str], labels: list[int]) -> str:
  """Joins `words` with single spaces, suffixing each word labelled 0 with `_0`."""
  if len(words) != len(labels):
    raise ValueError(f"mark_words: {len(words)} words but {len(labels)} labels; pair them first.")
  return " ".join(
    w + features.MISALIGNED_SUFFIX if label == MISALIGNED else w
    for w, label in zip(words, labels, strict=True)
  )


@dataclasses.dataclass(frozen=True)
class PromptWords:
  """A prompt's words paired with its labels.

  Attributes:
    words: the prompt's words (`split_prompt_words`).
    labels: the labels as given in the label string (may differ in length from
      `words`; empty if unparseable).
    valid: True when every word has exactly one parseable label.
    target: the decoder target: words joined by single spaces, misaligned words
      suffixed `_0`; for invalid labels the words without any marks.
  """

  words: list[str]
  labels: list[int]
  valid: bool
  target: str


def pair_words_and_labels(prompt: str, label_string: str | bytes) -> PromptWords:
  """Splits `prompt`, parses `label_string` and applies the mismatch policy."""
  words = split_prompt_words(prompt)
  labels = parse_labels(label_string)
  if labels is None or len(labels) != len(words):
    return PromptWords(words=words, labels=labels or [], valid=False, target=" ".join(words))
  return PromptWords(words=words, labels=labels, valid=True, target=mark_words(words, labels))


def labels_to_string(labels: list[int]) -> str:
  """The official label string for `labels` ("1 0 1")."""
  return " ".join(str(int(label)) for label in labels)
