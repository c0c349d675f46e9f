"""The two evaluation protocols: each difference on hand-built inputs with hand-computed numbers."""

import json

import numpy as np
import pytest

from rahf_jax import features as F
from rahf_jax.evaluation import evaluator, protocols, score_metrics, tables, word_metrics
from rahf_jax.evaluation import heatmap_metrics as hm


def test_ground_truth_pil_bilinear_on_uint8_then_255():
  # A 2x2 uint8 map shrunk to 1x1: PIL's bilinear filter weighs the four pixels equally,
  # 255 / 4 = 63.75 is rounded to the uint8 64, so the reproduction's map is 64 / 255; the
  # mean of the float map (the paper protocol's area resize) is 0.25.
  gt = np.array([[255, 0], [0, 0]], np.uint8)
  rep = hm.resize_uint8_heatmaps_pil(gt, (1, 1))
  assert rep.dtype == np.float32 and rep[0, 0] == pytest.approx(64 / 255)
  paper = hm.resize_heatmaps(gt.astype(np.float32) / 255, (1, 1))
  assert paper[0, 0] == pytest.approx(0.25)
  pred = np.zeros((1, 1, 1), np.float32)
  assert hm.heatmap_metrics(pred, paper[None])["mse_all"] == pytest.approx(0.0625)
  out = hm.heatmap_metrics(pred, rep[None], protocol=protocols.REPRODUCTION)
  assert out["mse_all"] == pytest.approx((64 / 255) ** 2)
  # A trailing channel axis (TFDS's [512, 512, 1]) is accepted; float input is refused.
  np.testing.assert_array_equal(hm.resize_uint8_heatmaps_pil(gt[None, :, :, None], (1, 1)), [rep])
  with pytest.raises(ValueError, match="uint8"):
    hm.resize_uint8_heatmaps_pil(gt.astype(np.float32), (1, 1))


def test_mse_all_is_a_mean_of_batch_means_and_gt0_a_per_map_mean():
  # Four constant 2x2 predictions against all-zero truth: per-map MSEs .01, .01, .01, .04.
  pred = np.stack([np.full((2, 2), v, np.float32) for v in (0.1, 0.1, 0.1, 0.2)])
  gt = np.zeros_like(pred)
  paper = hm.heatmap_metrics(pred, gt)
  rep = hm.heatmap_metrics(pred, gt, protocol=protocols.REPRODUCTION, batch_size=3)
  assert paper["mse_all"] == pytest.approx(0.07 / 4)  # per-map mean
  assert rep["mse_all"] == pytest.approx((0.01 + 0.04) / 2)  # batches [.01 .01 .01], [.04]
  assert paper["mse_gt0"] == rep["mse_gt0"] == pytest.approx(0.07 / 4)
  # With full batches only, the two agree; the default batch size is the reproduction's 64.
  full = hm.heatmap_metrics(pred, gt, protocol=protocols.REPRODUCTION, batch_size=2)
  assert full["mse_all"] == pytest.approx(paper["mse_all"])
  assert protocols.REPRODUCTION_BATCH_SIZE == 64
  assert hm.mean_of_batch_means([1.0, 1.0, 1.0, 4.0], 3) == pytest.approx(2.5)
  assert hm.mean_of_batch_means([], 3) is None


def test_auc_judd_reproduction_variant():
  # One fixation at the top prediction: the definition's fp at the first threshold is
  # (1 - 1) / 3 = 0 (AUC 1); the reproduction's is (1 - 0) / 3, AUC 1/3 * 1/2 + 2/3 = 5/6.
  pred = np.array([[[0.9, 0.5], [0.1, 0.0]]], np.float32)
  gt = np.array([[[1.0, 0.0], [0.0, 0.0]]], np.float32)
  assert hm.heatmap_metrics(pred, gt)["auc_judd"] == pytest.approx(1.0)
  rep = hm.heatmap_metrics(pred, gt, protocol=protocols.REPRODUCTION)
  assert rep["auc_judd"] == pytest.approx(5 / 6)
  assert (
    rep["auc_judd"] == hm.heatmap_metrics(pred, gt, match_pytorch_reproduction=True)["auc_judd"]
  )


def test_scores_constant_prediction_is_none_not_zero():
  target = [0.1, 0.5, 0.9]
  paper = score_metrics.score_metrics([0.5, 0.5, 0.5], target)
  rep = score_metrics.score_metrics([0.5, 0.5, 0.5], target, protocols.REPRODUCTION)
  assert paper["plcc"] == 0.0 and paper["srcc"] == 0.0
  assert rep["plcc"] is None and rep["srcc"] is None
  # Defined cases agree: pred [1, 2, 4] vs [1, 2, 3]: PLCC 3 / sqrt(14/3 * 2) = 0.98198.
  for protocol in protocols.PROTOCOLS:
    out = score_metrics.score_metrics([1, 2, 4], [1, 2, 3], protocol)
    assert out["plcc"] == pytest.approx(3 / np.sqrt(28 / 3))
    assert out["srcc"] == pytest.approx(1.0)


def test_labelled_prompt_keeps_count_mismatches_zip_truncated():
  assert protocols.labelled_prompt(["a", "yellow", "cat"], [1, 0, 1]) == "a yellow_0 cat"
  assert protocols.labelled_prompt([b"a", b"yellow", b"cat"], [1, 0]) == "a yellow_0"
  assert protocols.labelled_prompt(["a", "cat"], [0, 1, 0]) == "a_0 cat"
  assert protocols.clean_prompt([b"a", "red", "cube"]) == "a red cube"


def test_words_scored_on_every_example_against_the_raw_labelled_prompt():
  # Example 1 (valid labels): reference "dog_0 on grass"; the prediction marks "dog_0" and
  # "grass_0": P 1/2, R 1, F1 2/3. Example 2: 3 words, 2 labels (a count mismatch): the
  # reproduction scores it against "a yellow_0" (P = R = F1 = 1); the paper protocol leaves it
  # out. Paper F1 2/3; reproduction (2/3 + 1) / 2 = 5/6.
  preds = ["dog_0 on grass_0", "a yellow_0 cat"]
  rep_refs = [
    protocols.labelled_prompt(["dog", "on", "grass"], [0, 1, 1]),
    protocols.labelled_prompt(["a", "yellow", "cat"], [1, 0]),
  ]
  paper = word_metrics.word_metrics(preds[:1], ["dog_0 on grass"])
  rep = word_metrics.word_metrics(preds, rep_refs)
  assert paper["f1"] == pytest.approx(2 / 3) and paper["num_examples"] == 1
  assert rep["f1"] == pytest.approx(5 / 6) and rep["num_examples"] == 2
  assert rep["precision"] == pytest.approx(0.75) and rep["recall"] == pytest.approx(1.0)
  # A reference cut at target_len (paper: "a b", no positive word, F1 0) against the full
  # labelled prompt (reproduction: "a b c_0", F1 1).
  assert word_metrics.word_metrics(["a b c_0"], ["a b"])["f1"] == 0.0
  assert word_metrics.word_metrics(["a b c_0"], ["a b c_0"])["f1"] == 1.0


def test_metrics_record_the_protocol_and_markdown_says_it():
  pred = {"overall": [0.5, 0.5, 0.5]}
  ref = {"overall": [0.1, 0.5, 0.9]}
  for protocol in protocols.PROTOCOLS:
    out = tables.compute_all_metrics(pred, ref, protocol=protocol)
    json.dumps(out, allow_nan=False)
    assert out["protocol"] == protocol
    md = tables.metrics_to_markdown(out)
    assert md.startswith(f"### Evaluation protocol: {protocol}\n")
  with pytest.raises(ValueError, match="unknown evaluation protocol 'torch'"):
    tables.compute_all_metrics(pred, ref, protocol="torch")


class _Tokenizer:
  """ids <-> words: id k is the word f"w{k}"; any other word encodes to id 1."""

  def decode(self, ids):
    return " ".join(f"w{i}" for i in ids)


class _FakePredictor:
  """Multi-head outputs that record the inputs they were given."""

  variant = F.MULTI_HEAD
  tokenizer = _Tokenizer()

  def __init__(self):
    self.decode_lengths = []
    self.decode_prompts = []
    self.images = None

  def encode_prompts(self, prompts):
    return np.asarray([[len(p.split()), F.EOS_ID, 0, 0] for p in prompts], np.int32)

  def predict_batch(self, batch, decode=True):
    assert not decode
    self.images = np.asarray(batch["image"])
    n = len(batch["image"])
    arrays = {f"score_{s}": np.full((n,), 0.5, np.float32) for s in F.SCORE_TYPES}
    arrays.update({f"heatmap_{h}": np.zeros((n, 2, 2), np.float32) for h in F.HEATMAP_TYPES})
    return arrays

  def decode(self, image, prompt_ids, max_length, prompts=None):
    self.decode_lengths.append(max_length)
    self.decode_prompts.append(prompts)
    return np.asarray([[int(row[0]) + 10, F.EOS_ID] for row in prompt_ids], np.int32)


def _row(score, words, labels, value):
  heat = np.full((4, 4), value, np.uint8)
  return {
    "image": np.full((3, 3, 3), 0.25, np.float32),
    "prompt": protocols.clean_prompt(words),
    "reference": protocols.labelled_prompt(words, labels),
    "heatmaps": {h: heat for h in F.HEATMAP_TYPES},
    "scores": {s: np.float32(score) for s in F.SCORE_TYPES},
    "output_type": None,
  }


def test_reproduction_collector_uses_raw_inputs_and_keeps_mismatched_labels():
  n = 3
  batch = {f"score_{s}": np.asarray([0.1, 0.2, 0.0], np.float32) for s in F.SCORE_TYPES}
  batch.update(
    image=np.zeros((n, 3, 3, 3), np.float32),
    prompt_ids=np.zeros((n, 4), np.int32),
    decoder_loss_weights=np.asarray([[1, 1, 0, 0], [0] * 4, [0] * 4], np.float32),
  )  # row 1 has invalid labels (no decoder weight); row 2 is batch padding
  rows = [_row(0.1, ["a", "dog"], [1, 0], 51), _row(0.2, ["a", "yellow", "cat"], [1, 0], 0)]
  predictor = _FakePredictor()
  c = evaluator._Collector()
  evaluator._collect_reproduction(c, predictor, batch, rows)
  pred, ref = c.as_arrays()
  assert predictor.decode_lengths == [protocols.REPRODUCTION_MAX_NEW_TOKENS]
  # Constrained decoding copies the raw rows' clean prompts.
  assert predictor.decode_prompts == [[r["prompt"] for r in rows]]
  np.testing.assert_array_equal(predictor.images[:2], 0.25)  # the raw rows' images
  assert pred[F.WORDS_TYPE] == ["w12", "w13"]  # one decoded word per prompt of 2 and 3 words
  assert ref[F.WORDS_TYPE] == ["a dog_0", "a yellow_0"]  # both scored, the mismatch truncated
  # The uint8 4x4 maps resized to the 2x2 prediction, then / 255: 51 / 255 = 0.2.
  np.testing.assert_allclose(ref["implausibility"][0], 0.2, rtol=1e-6)
  np.testing.assert_allclose(ref["implausibility"][1], 0.0)
  np.testing.assert_allclose(ref["plausibility"], [0.1, 0.2])
  bad = [_row(0.3, ["x"], [1], 0)] + rows[1:]
  with pytest.raises(ValueError, match="do not pair"):
    evaluator._collect_reproduction(evaluator._Collector(), predictor, batch, bad)
