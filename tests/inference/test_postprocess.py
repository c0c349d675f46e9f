"""Tests of rahf_jax.inference.postprocess against hand-made values and numpy references."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from rahf_jax import features as F
from rahf_jax.evaluation import seqio_metrics
from rahf_jax.inference import postprocess as pp

H = 6  # heatmap side


class _Vocab:
  """Decodes id i to the word w<i> (what SentencePieceVocabulary.decode does, in spirit)."""

  def __init__(self):
    self.calls = []

  def decode(self, ids):
    self.calls.append(list(ids))
    return " ".join(f"w{i}" for i in ids)


def _multihead_outputs(rng, b):
  return {
    "heatmaps": {h: rng.uniform(0, 1, (b, H, H)).astype(np.float32) for h in F.HEATMAP_TYPES},
    "scores": {s: rng.uniform(0, 1, (b,)).astype(np.float32) for s in F.SCORE_TYPES},
    "decoder_logits": np.zeros((b, 3, 5), np.float32),
  }


def test_output_arrays_and_prediction_dicts_multihead():
  rng = np.random.default_rng(0)
  out = _multihead_outputs(rng, 3)
  arrays = pp.output_arrays(out, F.MULTI_HEAD)
  assert set(arrays) == {f"score_{s}" for s in F.SCORE_TYPES} | {
    f"heatmap_{h}" for h in F.HEATMAP_TYPES
  }
  preds = pp.prediction_dicts(arrays, ["a b_0", "c", "d_0"], F.MULTI_HEAD)
  assert len(preds) == 3
  for i, p in enumerate(preds):
    for s in F.SCORE_TYPES:
      assert p["scores"][s] == pytest.approx(float(out["scores"][s][i]))
    for h in F.HEATMAP_TYPES:
      np.testing.assert_array_equal(p["heatmaps"][h], out["heatmaps"][h][i])
  assert [p[F.WORDS_TYPE] for p in preds] == ["a b_0", "c", "d_0"]


def test_augmented_parts_merge_into_the_multihead_dict():
  rng = np.random.default_rng(1)
  full = _multihead_outputs(rng, 1)
  n = len(F.AUGMENTED_OUTPUT_TYPES)
  # One augmented example per output type, carrying that type's output.
  heat = np.zeros((n, H, H), np.float32)
  score = np.zeros((n,), np.float32)
  for i, t in enumerate(F.AUGMENTED_OUTPUT_TYPES):
    if t in F.HEATMAP_TYPES:
      heat[i] = full["heatmaps"][t][0]
    if t in F.SCORE_TYPES:
      score[i] = full["scores"][t][0]
  arrays = pp.output_arrays(
    {"heatmap": heat, "score": score}, F.AUGMENTED_PROMPT, np.arange(n, dtype=np.int32)
  )
  texts = ["x_0 y"] * n
  parts = pp.prediction_dicts(arrays, texts, F.AUGMENTED_PROMPT)
  assert [len(p) for p in parts] == [1] * n  # each part holds only its own output
  merged = pp.merge_predictions(parts)
  expected = pp.prediction_dicts(pp.output_arrays(full, F.MULTI_HEAD), ["x_0 y"], F.MULTI_HEAD)[0]
  assert merged["scores"] == pytest.approx(expected["scores"])
  for h in F.HEATMAP_TYPES:
    np.testing.assert_array_equal(merged["heatmaps"][h], expected["heatmaps"][h])
  assert merged[F.WORDS_TYPE] == "x_0 y"


def test_prediction_dicts_errors_name_the_problem():
  arrays = {"score": np.zeros(2), "heatmap": np.zeros((2, H, H)), "output_type": np.array([0, 9])}
  with pytest.raises(ValueError, match="output_type 9"):
    pp.prediction_dicts(arrays, None, F.AUGMENTED_PROMPT)
  with pytest.raises(ValueError, match="one per example"):
    pp.prediction_dicts(arrays, ["only one"], F.AUGMENTED_PROMPT)
  with pytest.raises(ValueError, match="Unknown variant"):
    pp.output_arrays({}, "both")


def test_strip_and_decode_ids():
  assert pp.strip_ids([5, 0, 7, F.EOS_ID, 9, 0]) == [5, 7]
  assert pp.strip_ids([0, 0]) == []
  vocab = _Vocab()
  texts = pp.decode_texts(np.array([[3, 4, F.EOS_ID, 8], [F.EOS_ID, 3, 3, 3]]), vocab)
  assert texts == ["w3 w4", ""]
  assert vocab.calls == [[3, 4], []]


def _multihead_example(rng, words="a_0 cat", valid=1.0):
  ex = {f"heatmap_{h}": rng.uniform(0, 1, (H, H)).astype(np.float32) for h in F.HEATMAP_TYPES}
  ex.update({f"score_{s}": np.float32(rng.uniform()) for s in F.SCORE_TYPES})
  ex["targets_pretokenized"] = words.encode()
  ex["decoder_weight"] = np.float32(valid)
  return ex


def test_target_dict_multihead_and_augmented():
  rng = np.random.default_rng(2)
  ex = _multihead_example(rng)
  t = pp.seqio_postprocess_fn("ignored", example=ex, is_target=True)
  assert t[F.WORDS_TYPE] == "a_0 cat"
  assert t["scores"] == pytest.approx({s: float(ex[f"score_{s}"]) for s in F.SCORE_TYPES})
  np.testing.assert_array_equal(t["heatmaps"]["misalignment"], ex["heatmap_misalignment"])
  # Invalid word labels: no words target.
  assert F.WORDS_TYPE not in pp.target_dict(_multihead_example(rng, valid=0.0))
  # Predictions pass through (bytes decoded).
  assert pp.seqio_postprocess_fn(b"b_0 c", example=ex, is_target=False) == "b_0 c"

  words_index = F.AUGMENTED_OUTPUT_TYPES.index(F.WORDS_TYPE)
  aug = {"output_type": np.int32(words_index), "heatmap": np.zeros((H, H)), "score": 0.0}
  aug.update(targets_pretokenized=b"x y_0", decoder_weight=np.float32(1))
  assert pp.target_dict(aug) == {F.WORDS_TYPE: "x y_0"}
  assert pp.target_dict({**aug, "decoder_weight": np.float32(0)}) == {}
  s_index = F.AUGMENTED_OUTPUT_TYPES.index("aesthetics")
  assert pp.target_dict({**aug, "output_type": np.int32(s_index), "score": np.float32(0.25)}) == {
    "scores": {"aesthetics": 0.25}
  }


def _reference_metrics(targets, preds):
  """Independent numbers: PLCC/SRCC via scipy, MSE via numpy, word P/R/F1 by hand below."""
  ref = {}
  for s in F.SCORE_TYPES:
    t = [x["scores"][s] for x in targets]
    p = [x["scores"][s] for x in preds]
    ref[f"{s}/plcc"] = scipy.stats.pearsonr(p, t)[0]
    ref[f"{s}/srcc"] = scipy.stats.spearmanr(p, t)[0]
  for h in F.HEATMAP_TYPES:
    t = np.stack([x["heatmaps"][h] for x in targets])
    p = np.stack([x["heatmaps"][h] for x in preds])
    ref[f"{h}/mse_all"] = float(np.mean((p - t) ** 2))
  return ref


def test_seqio_metric_fn_multihead_matches_references():
  rng = np.random.default_rng(3)
  b = 5
  examples = [_multihead_example(rng, words="a_0 red cat") for _ in range(b)]
  targets = [pp.seqio_postprocess_fn("", example=ex, is_target=True) for ex in examples]
  out = _multihead_outputs(rng, b)
  aux = {k: list(v) for k, v in pp.output_arrays(out, F.MULTI_HEAD).items()}
  # Words: example 0 exact (P=R=F1=1); the others mark "red" instead of "a" (P=R=F1=0).
  predictions = ["a_0 red cat"] + ["a red_0 cat"] * (b - 1)
  metrics = seqio_metrics.seqio_metric_fn(targets, predictions, aux)
  preds = pp.prediction_dicts(pp.output_arrays(out, F.MULTI_HEAD), predictions, F.MULTI_HEAD)
  for key, value in _reference_metrics(targets, preds).items():
    assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
  for m in ("precision", "recall", "f1"):
    assert metrics[f"{F.WORDS_TYPE}/{m}"] == pytest.approx(1.0 / b)


def test_seqio_metric_fn_augmented_equals_multihead_on_the_same_outputs():
  rng = np.random.default_rng(4)
  b, n = 4, len(F.AUGMENTED_OUTPUT_TYPES)
  examples = [_multihead_example(rng, words="two_0 dogs") for _ in range(b)]
  out = _multihead_outputs(rng, b)
  predictions = ["two_0 dogs", "two dogs_0", "two_0 dogs", "two dogs"]
  mh_targets = [pp.target_dict(ex) for ex in examples]
  mh_aux = {k: list(v) for k, v in pp.output_arrays(out, F.MULTI_HEAD).items()}
  expected = seqio_metrics.seqio_metric_fn(mh_targets, predictions, mh_aux)

  aug_targets, aug_preds, aux = [], [], {"score": [], "heatmap": [], "output_type": []}
  for i, ex in enumerate(examples):
    for k, t in enumerate(F.AUGMENTED_OUTPUT_TYPES):
      aug = {"output_type": np.int32(k), "targets_pretokenized": ex["targets_pretokenized"]}
      aug["decoder_weight"] = ex["decoder_weight"] if t == F.WORDS_TYPE else np.float32(0)
      aug["heatmap"] = ex.get(f"heatmap_{t}", np.zeros((H, H), np.float32))
      aug["score"] = ex.get(f"score_{t}", np.float32(0))
      aug_targets.append(pp.target_dict(aug))
      aux["output_type"].append(np.int32(k))
      aux["heatmap"].append(out["heatmaps"].get(t, np.zeros((b, H, H)))[i])
      aux["score"].append(out["scores"].get(t, np.zeros(b))[i])
      aug_preds.append(predictions[i])
  got = seqio_metrics.seqio_metric_fn(aug_targets, aug_preds, aux)
  assert len(aug_targets) == b * n
  assert set(got) == set(expected)
  for key in expected:
    assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-7), key


@pytest.mark.parametrize("xp", [np, jnp])
def test_sequence_log_likelihood_matches_log_softmax(xp):
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(3, 4, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, (3, 4))
  weights = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)
  ref = np.zeros(3)
  logp = scipy.special.log_softmax(logits.astype(np.float64), axis=-1)
  for b in range(3):
    for t in range(4):
      ref[b] += weights[b, t] * logp[b, t, targets[b, t]]
  got = pp.sequence_log_likelihood(xp.asarray(logits), xp.asarray(targets), xp.asarray(weights), xp)
  # float32 against the float64 reference: each log-probability is within a few float32 ulps of
  # |logz| (<= 7.4 here, ulp 4.8e-7), and a row sums <= 3 of them: ~5e-6 absolute at most, inside
  # the atol alone, in any summation order.
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5)


def test_misaligned_prompt_words_are_prompt_words_only():
  # Read by position when the decoder copied the prompt; by word otherwise.
  assert pp.misaligned_prompt_words("a yellow cat", "a yellow_0 cat") == ["yellow"]
  assert pp.misaligned_prompt_words("a cat, a cat", "a cat_0 a cat") == ["cat"]
  # A word the decoder made up ("pink") is never reported; prompt punctuation is not a word.
  got = pp.misaligned_prompt_words("a green square.", "a pink_0 square green background")
  assert got == []
  got = pp.misaligned_prompt_words("a green square.", "a green_0 square_0 background_0")
  assert got == ["green", "square"]
