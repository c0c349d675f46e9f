"""The evaluator's collection of predictions and references, per output type, both variants."""

import numpy as np

from rahf_jax import features as F
from rahf_jax.evaluation import evaluator


class _Tokenizer:
  """ids -> words: id k is the word f"w{k}" (stands in for SentencePiece)."""

  def decode(self, ids):
    return " ".join(f"w{i}" for i in ids)


def _ids(*rows):
  out = np.zeros((len(rows), 4), np.int32)
  for r, row in enumerate(rows):
    out[r, : len(row)] = row
  return out


def test_augmented_rows_go_to_their_output_type():
  types = [
    F.AUGMENTED_OUTPUT_TYPES.index(t)
    for t in ("aesthetics", "implausibility", F.WORDS_TYPE, F.WORDS_TYPE, "overall")
  ]
  n = len(types)
  batch = {
    "output_type": np.asarray(types, np.int32),
    "score": np.arange(n, dtype=np.float32) / 10,
    "heatmap": np.full((n, 2, 2), 0.5, np.float32),
    "image": np.zeros((n, 4, 4, 3), np.float32),
    "decoder_target_ids": _ids([], [], [5, 6, F.EOS_ID], [7, F.EOS_ID], []),
    "decoder_loss_weights": np.asarray([[0] * 4, [0] * 4, [1, 1, 1, 0], [0] * 4, [0] * 4]),
  }  # the second words row has invalid labels (no decoder weight): it is not scored
  arrays = {
    "score": np.asarray([0.9, 0.8, 0.7, 0.6, 0.5], np.float32),
    "heatmap": np.full((n, 2, 2), 0.25, np.float32),
    "output_type": batch["output_type"],
    "decoded_ids": _ids([], [], [5, 3, F.EOS_ID], [7, F.EOS_ID], []),
  }
  keep = np.asarray([True, True, True, True, False])  # the last row is batch padding
  c = evaluator._Collector()
  evaluator._collect_augmented(c, batch, arrays, keep, _Tokenizer())
  pred, ref = c.as_arrays()
  assert set(pred) == {"aesthetics", "implausibility", F.WORDS_TYPE}
  np.testing.assert_allclose(pred["aesthetics"], [0.9])
  np.testing.assert_allclose(ref["aesthetics"], [0.0])
  np.testing.assert_allclose(pred["implausibility"], np.full((1, 2, 2), 0.25))
  assert pred[F.WORDS_TYPE] == ["w5 w3"] and ref[F.WORDS_TYPE] == ["w5 w6"]


def test_multihead_rows_fill_every_type_and_skip_invalid_words():
  n = 3
  batch = {f"score_{s}": np.full((n,), 0.1 * k, np.float32) for k, s in enumerate(F.SCORE_TYPES)}
  batch.update({f"heatmap_{h}": np.zeros((n, 2, 2), np.float32) for h in F.HEATMAP_TYPES})
  batch.update(
    image=np.zeros((n, 4, 4, 3), np.float32),
    decoder_target_ids=_ids([4, F.EOS_ID], [8, F.EOS_ID], [9, F.EOS_ID]),
    decoder_loss_weights=np.asarray([[1, 1, 0, 0], [0] * 4, [1, 1, 0, 0]], np.float32),
  )
  arrays = {f"score_{s}": np.full((n,), 0.5, np.float32) for s in F.SCORE_TYPES}
  arrays.update({f"heatmap_{h}": np.ones((n, 2, 2), np.float32) for h in F.HEATMAP_TYPES})
  arrays["decoded_ids"] = _ids([4, F.EOS_ID], [8, F.EOS_ID], [1])
  c = evaluator._Collector()
  evaluator._collect_multihead(c, batch, arrays, np.asarray([True, True, False]), _Tokenizer())
  pred, ref = c.as_arrays()
  for k, s in enumerate(F.SCORE_TYPES):
    np.testing.assert_allclose(ref[s], [0.1 * k] * 2)
  assert pred[F.WORDS_TYPE] == ["w4"] and ref[F.WORDS_TYPE] == ["w4"]  # row 1: invalid labels
  assert len(c.examples) == 2
