"""rahf_jax.data.words against hand-worked examples (RichHF-18K's splitting rule)."""

import os
import subprocess
import sys

import pytest

from rahf_jax.data import words


@pytest.mark.parametrize(
  "prompt, expected",
  [
    ("a red circle", ["a", "red", "circle"]),
    ('A "quoted" word, here.', ["A", "quoted", "word", "here"]),
    ("wow!!! what?? yes...no", ["wow", "what", "yes", "no"]),
    ('a:b;c,d.e?f!g"h i', ["a", "b", "c", "d", "e", "f", "g", "h", "i"]),
    ("  double  spaces  ", ["double", "spaces"]),
    ("café; naïve: 東京 tower", ["café", "naïve", "東京", "tower"]),
    ("“curly” quotes", ["“curly”", "quotes"]),  # typographic quotes are not delimiters
    ("it's a dog-like (cat)", ["it's", "a", "dog-like", "(cat)"]),
    ("tab\tinside\nline", ["tab\tinside\nline"]),  # only the space is a delimiter
    ("", []),
    (' ,.?!":; ', []),
  ],
)
def test_split_prompt_words(prompt, expected):
  assert words.split_prompt_words(prompt) == expected


def test_parse_labels():
  assert words.parse_labels("1 0 1") == [1, 0, 1]
  assert words.parse_labels(b"0  1\n") == [0, 1]
  assert words.parse_labels("") == []
  assert words.parse_labels("1 x") is None


def test_pair_marks_misaligned_words():
  paired = words.pair_words_and_labels("a yellow cat.", "1 0 1")
  assert paired.words == ["a", "yellow", "cat"]
  assert paired.labels == [1, 0, 1]
  assert paired.valid
  assert paired.target == "a yellow_0 cat"


def test_pair_with_quotes_and_non_ascii():
  paired = words.pair_words_and_labels('a "naïve" café, at noon!', b"1 0 1 1 0")
  assert paired.target == "a naïve_0 café at noon_0"


def test_pair_all_misaligned_and_punctuation_runs():
  paired = words.pair_words_and_labels("dog,,, cat!!", "0 0")
  assert paired.target == "dog_0 cat_0"


def test_label_count_mismatch_policy():
  paired = words.pair_words_and_labels("a yellow cat", "1 0")
  assert not paired.valid
  assert paired.labels == [1, 0]  # kept as given
  assert paired.target == "a yellow cat"  # no marks when labels cannot be trusted
  too_many = words.pair_words_and_labels("a cat", "1 1 0")
  assert not too_many.valid and too_many.labels == [1, 1, 0]


def test_unparseable_labels_are_invalid():
  paired = words.pair_words_and_labels("a cat", "1 z")
  assert not paired.valid and paired.labels == [] and paired.target == "a cat"


def test_empty_prompt():
  paired = words.pair_words_and_labels("", "")
  assert paired.valid and paired.words == [] and paired.target == ""


def test_mark_words_and_labels_to_string():
  assert words.mark_words(["x", "y"], [0, 1]) == "x_0 y"
  assert words.labels_to_string([1, 0, 1]) == "1 0 1"
  with pytest.raises(ValueError, match="2 words but 1 labels"):
    words.mark_words(["x", "y"], [0])


def test_words_imports_without_tensorflow():
  """words.py is pure Python: it imports where no TensorFlow/TFDS is installed."""
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  code = (
    "import sys; sys.path = [p for p in sys.path if 'site-packages' not in p]; "
    "from rahf_jax.data import words; "
    "assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules; "
    "print(words.pair_words_and_labels('a b', '0 1').target)"
  )
  out = subprocess.run(
    [sys.executable, "-S", "-c", code], cwd=repo, capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == "a_0 b"
