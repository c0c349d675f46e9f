"""rahf_jax.t5x.infer_output: t5x.infer's write_fn/merge_fn (plain module; runs without t5x).

The hooks get what t5x.infer passes them (predicted ids, aux values as lists, the task features
as a tf.data dataset, chunk files in INFER_OUTPUT_DIR/tmp-*/ that t5x deletes after merging);
the checks read the written lines and map files back and compare them with the inputs.
"""

import json
import os
import re
import shutil

import numpy as np
import pytest

from rahf_jax import features as F
from rahf_jax.inference import postprocess
from rahf_jax.t5x import infer_output as io_

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H = 5
TASK = "richhf18k_x_t5x"
FNAME = f"{TASK}-predict_with_aux.jsonl-00000-of-00001"


class _Vocab:
  """Id i -> WORDS[i] (what a SentencePiece vocabulary's decode does, in spirit)."""

  WORDS = ["<pad>", "</s>", "a", "red", "red_0", "cube", "cube_0", "on", "grass", "grass_0", "x_0"]

  def decode(self, ids):
    return " ".join(self.WORDS[i] for i in ids)


def _ids(text, length=10):
  ids = [_Vocab.WORDS.index(w) for w in text.split()] + [F.EOS_ID]
  return ids + [F.PAD_ID] * (length - len(ids))


def _chunk_path(root, chunk):
  tmp = root / f"tmp-{TASK}-00000-of-00001"
  tmp.mkdir(exist_ok=True)
  return str(tmp / f"{FNAME}-chunk{chunk:05}")


def _multihead_rows(rng, uids, texts):
  n = len(uids)
  examples = [{"uid": u.encode(), "inputs_pretokenized": b"a red cube on grass"} for u in uids]
  aux = {f"score_{s}": list(rng.uniform(0, 1, n).astype(np.float32)) for s in F.SCORE_TYPES}
  for h in F.HEATMAP_TYPES:
    aux[f"heatmap_{h}"] = list(rng.uniform(0, 1, (n, H, H)).astype(np.float32))
  return examples, [_ids(t) for t in texts], aux


def test_multihead_lines_and_map_files(tmp_path):
  rng = np.random.default_rng(0)
  uids = ["cfdb4aaa-a05c", "img/2 b"]
  examples, ids, aux = _multihead_rows(rng, uids, ["a red_0 cube on grass", "a red cube_0 x_0"])
  # As t5x.infer without keep_aux_as_numpy: nested Python lists.
  aux_lists = {k: [np.asarray(v).tolist() for v in vals] for k, vals in aux.items()}
  chunk = _chunk_path(tmp_path, 0)
  io_.write_inferences(chunk, (ids, aux_lists), examples, "predict_with_aux", _Vocab())
  io_.merge_chunks(str(tmp_path), FNAME, os.path.dirname(chunk), step=2)
  shutil.rmtree(os.path.dirname(chunk))  # what t5x does after merging
  infer_file = str(tmp_path / FNAME)
  lines = io_.read_lines(infer_file)
  assert [line["uid"] for line in lines] == uids
  first, second = lines
  assert list(first) == [
    "uid",
    "prompt",
    "scores",
    "misaligned_prompt_words",
    "marked_prompt",
    "decoded",
    "heatmap_shape",
    "heatmaps",
  ]
  assert first["prompt"] == "a red cube on grass"
  assert first["misaligned_prompt_words"] == ["red"]
  assert first["marked_prompt"] == "a red_0 cube on grass"
  # The decoder's "x_0" is not a prompt word: reported in "decoded" only.
  assert second["decoded"] == "a red cube_0 x_0"
  assert second["misaligned_prompt_words"] == ["cube"]
  assert second["marked_prompt"] == "a red cube_0 on grass"
  for i, line in enumerate(lines):
    assert line["scores"] == {s: pytest.approx(float(aux[f"score_{s}"][i])) for s in F.SCORE_TYPES}
    assert line["heatmap_shape"] == [H, H]
    for h in F.HEATMAP_TYPES:
      paths = line["heatmaps"][h]
      assert set(paths) == {"npy", "png"}
      assert not os.path.isabs(paths["npy"])
      assert os.path.isfile(io_.resolve(infer_file, paths["npy"]))
      np.testing.assert_array_equal(
        io_.load_heatmap(infer_file, paths["npy"]), aux[f"heatmap_{h}"][i]
      )
      png = io_.load_heatmap(infer_file, paths["png"])
      np.testing.assert_array_equal(np.round(png * 255), np.round(aux[f"heatmap_{h}"][i] * 255))
  assert first["heatmaps"]["misalignment"]["npy"] == (
    f"{FNAME}-heatmaps/chunk00000/cfdb4aaa-a05c.misalignment.npy"
  )
  assert second["heatmaps"]["misalignment"]["png"].endswith("/img_2_b.misalignment.png")
  # The line is compact: no heatmap values in it.
  assert len(json.dumps(first)) < 1000


def test_augmented_rows_merge_into_one_line_per_image_across_chunks(tmp_path):
  rng = np.random.default_rng(1)
  types = F.AUGMENTED_OUTPUT_TYPES
  n = len(types)
  uids = ["u1", "u2"]
  prompt = "a red cube on grass"
  truth = {
    u: {
      "scores": dict(zip(F.SCORE_TYPES, rng.uniform(0, 1, 4).astype(np.float32), strict=True)),
      "maps": {h: rng.uniform(0, 1, (H, H)).astype(np.float32) for h in F.HEATMAP_TYPES},
    }
    for u in uids
  }
  rows = []  # (example, ids, score, heatmap, output_type) per (image, type)
  for u, words in zip(uids, ["a red_0 cube on grass", "a red cube on grass_0"], strict=True):
    for t_index, t in enumerate(types):
      heat = truth[u]["maps"].get(t, rng.uniform(0, 1, (H, H)).astype(np.float32))
      score = truth[u]["scores"].get(t, np.float32(rng.uniform()))
      # Every row is decoded by the model; only the words row's text counts.
      text = words if t == F.WORDS_TYPE else "x_0 x_0"
      example = {
        "uid": u.encode(),
        "inputs_pretokenized": F.augmented_prompt(t, prompt).encode(),
        "output_type": np.int32(t_index),
      }
      rows.append((example, _ids(text), score, heat, t_index))
  split = n + 3  # t5x's chunk boundary falls inside the second image
  for chunk, part in enumerate((rows[:split], rows[split:])):
    inferences = (
      [r[1] for r in part],
      {
        "score": [r[2] for r in part],
        "heatmap": [r[3] for r in part],
        "output_type": [r[4] for r in part],
      },
    )
    examples = [r[0] for r in part]
    io_.write_inferences(_chunk_path(tmp_path, chunk), inferences, examples, "predict_with_aux",
                         _Vocab())  # fmt: skip
  # Within a chunk the rows are merged already: image 1 whole, image 2 in two parts.
  assert [len(io_.read_lines(_chunk_path(tmp_path, c))) for c in (0, 1)] == [2, 1]
  io_.merge_chunks(str(tmp_path), FNAME, os.path.dirname(_chunk_path(tmp_path, 0)), None)
  infer_file = str(tmp_path / FNAME)
  lines = io_.read_lines(infer_file)
  assert [line["uid"] for line in lines] == uids
  for line, u in zip(lines, uids, strict=True):
    assert line["prompt"] == prompt
    assert list(line["scores"]) == list(F.SCORE_TYPES)
    assert line["scores"] == {s: pytest.approx(float(v)) for s, v in truth[u]["scores"].items()}
    assert list(line["heatmaps"]) == list(F.HEATMAP_TYPES)
    for h in F.HEATMAP_TYPES:
      got = io_.load_heatmap(infer_file, line["heatmaps"][h]["npy"])
      np.testing.assert_array_equal(got, truth[u]["maps"][h])
  assert lines[0]["misaligned_prompt_words"] == ["red"]
  assert lines[1]["misaligned_prompt_words"] == ["grass"]
  assert lines[1]["marked_prompt"] == "a red cube on grass_0"
  # Image 2's maps were written by chunk 0 (its first rows), its words by chunk 1.
  assert lines[1]["heatmaps"]["implausibility"]["npy"].startswith(f"{FNAME}-heatmaps/chunk00000/")


def test_task_features_as_a_tf_dataset_and_duplicate_uids(tmp_path):
  tf = pytest.importorskip("tensorflow")
  rng = np.random.default_rng(2)
  examples, ids, aux = _multihead_rows(rng, ["same", "same"], ["a red cube on grass"] * 2)
  ds = tf.data.Dataset.from_tensor_slices(
    {k: [e[k] for e in examples] for k in ("uid", "inputs_pretokenized")}
  )
  path = str(tmp_path / "out.jsonl")  # not a t5x chunk: maps go to out.jsonl-heatmaps/
  io_.write_inferences(path, (ids, aux), ds, "predict_with_aux", _Vocab(), heatmap_formats=["npy"])
  lines = io_.read_lines(path)
  # A uid twice in a row with the same outputs: two lines, two sets of files.
  assert [line["uid"] for line in lines] == ["same", "same"]
  assert lines[0]["misaligned_prompt_words"] == []
  assert lines[0]["marked_prompt"] == "a red cube on grass"
  paths = [line["heatmaps"]["implausibility"] for line in lines]
  assert paths == [{"npy": "out.jsonl-heatmaps/same.implausibility.npy"},
                   {"npy": "out.jsonl-heatmaps/same.implausibility-1.npy"}]  # fmt: skip
  for i, p in enumerate(paths):
    np.testing.assert_array_equal(
      io_.load_heatmap(path, p["npy"]), aux["heatmap_implausibility"][i]
    )


@pytest.mark.parametrize(
  "prompt, decoded",
  [
    ("a cat and a dog", "a cat and a_0 dog"),  # word for word: by position (the second "a")
    ("a cat and a dog", "a_0 dog_0 bird_0"),  # not word for word: earliest occurrences
    ("a cat, a dog.", "a cat a_0 dog"),  # punctuation is not a word
    ("a cat", ""),
  ],
)
def test_word_marks_agree_with_misaligned_prompt_words(prompt, decoded):
  words = F.split_prompt_words(prompt)
  marks = io_.word_marks(prompt, decoded)
  assert len(marks) == len(words)
  chosen = postprocess.misaligned_prompt_words(prompt, decoded)
  assert [w for w, m in zip(words, marks, strict=True) if m] == chosen
  record = io_.words_record(prompt, decoded)
  assert record["misaligned_prompt_words"] == chosen
  assert [w for w in record["marked_prompt"].split() if w.endswith("_0")] == [
    c + "_0" for c in chosen
  ]


def test_word_marks_positions():
  assert io_.word_marks("a cat and a dog", "a cat and a_0 dog") == [0, 0, 0, 1, 0]
  assert io_.word_marks("a cat and a dog", "a_0 dog_0 bird_0") == [1, 0, 0, 0, 1]


def test_output_layout_and_names():
  chunk = f"/out/tmp-{TASK}-00000-of-00001/{FNAME}-chunk00012"
  assert io_.output_layout(chunk) == ("/out", f"{FNAME}-heatmaps/chunk00012")
  assert io_.output_layout("/out/preds.jsonl") == ("/out", "preds.jsonl-heatmaps")
  assert io_.resolve("/out/preds.jsonl", "preds.jsonl-heatmaps/a.npy") == (
    "/out/preds.jsonl-heatmaps/a.npy"
  )
  assert io_.safe_name("../a b/c") == "_a_b_c"
  assert io_.safe_name("") == "example"
  np.testing.assert_array_equal(
    io_.heatmap_to_uint8([[-0.5, 0.0, 0.5], [0.998, 1.0, 3.0]]), [[0, 0, 128], [254, 255, 255]]
  )


def test_errors_name_the_problem(tmp_path):
  rng = np.random.default_rng(3)
  examples, ids, aux = _multihead_rows(rng, ["u"], ["a"])
  path = str(tmp_path / "x.jsonl")
  with pytest.raises(ValueError, match="predict_with_aux"):
    io_.write_inferences(path, (ids, aux), examples, "predict", _Vocab())
  with pytest.raises(ValueError, match="formats"):
    io_.write_inferences(path, (ids, aux), examples, "predict_with_aux", _Vocab(), ["jpg"])
  with pytest.raises(ValueError, match="2 task examples for 1 predictions|more task examples"):
    io_.write_inferences(path, (ids, aux), examples * 2, "predict_with_aux", _Vocab())
  with pytest.raises(FileNotFoundError, match="no chunk results"):
    io_.merge_chunks(str(tmp_path), FNAME, str(tmp_path), None)


def test_infer_gin_binds_these_hooks():
  with open(os.path.join(REPO, "configs/t5x/runs/infer.gin")) as f:
    text = f.read()
  assert "write_fn = @rahf_infer_output.write_inferences" in text
  assert "merge_fn = @rahf_infer_output.merge_chunks" in text
  assert "mode = 'predict_with_aux'" in text
  for name in re.findall(r"rahf_infer_output\.(\w+)", text):
    assert callable(getattr(io_, name)), name
