"""RichHF-18K from parquet mirrors: all-in-one tables and Pick-a-Pic v1 re-uploads.

Each mirror is written here from a small synthetic set, read back independently of the builder
(richhf_fixtures.read_source: tf.io + pyarrow) and of the generator (its scenes), then built
through the real builder. Odd rows (mismatched labels, missing images, unknown filenames,
duplicates, null label cells) are checked in the build report by uid.
"""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from richhf_fixtures import build_richhf18k, read_built, read_source

from rahf_jax.data import build_report, synthetic
from rahf_jax.data.richhf18k import build_errors, column_map, mirror_tables
from rahf_jax.data.richhf18k import richhf18k_dataset_builder as builder_lib

VERSION = str(builder_lib.Builder.VERSION)
SPLITS = ("train", "dev", "test")
SCORES = {  # feature -> official key
  "plausibility": "artifact_score",
  "alignment": "misalignment_score",
  "aesthetics": "aesthetics_score",
  "overall": "overall_score",
}
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
LABEL_FIELDS = [
  ("caption", pa.string()),
  ("filename", pa.string()),
  *[(key, pa.float64()) for key in SCORES.values()],
  ("artifact_map", pa.binary()),
  ("misalignment_map", pa.binary()),
  ("prompt_misalignment_label", pa.string()),
]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _synthetic(tmp_path, seed):
  """A small synthetic manual_dir (label TFRecords + Pick-a-Pic shards) and its config."""
  config = synthetic.SyntheticConfig(
    num_train=5, num_dev=3, num_test=2, image_size=32, rows_per_group=4, seed=seed
  )
  synthetic.write_synthetic_richhf(str(tmp_path / "synthetic"), config)
  return tmp_path / "synthetic", config


def _row(src, image="bytes"):
  """An all-in-one table row from a read_source entry (image as bytes or an Image struct)."""
  jpg = src["jpg"]
  return {
    "image": jpg if image == "bytes" else {"bytes": jpg, "path": src["filename"]},
    "caption": src["caption"],
    "filename": src["filename"],
    **{key: float(value) for key, value in src["scores"].items()},
    "artifact_map": src["artifact_map"],
    "misalignment_map": src["misalignment_map"],
    "prompt_misalignment_label": src["label_string"],
  }


def _write_table(path, rows, image="bytes", rename=None):
  schema = pa.schema([("image", pa.binary() if image == "bytes" else IMAGE_STRUCT), *LABEL_FIELDS])
  table = pa.Table.from_pylist(list(rows), schema=schema)
  if rename:
    table = table.rename_columns([rename.get(n, n) for n in table.column_names])
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(table, path, row_group_size=2)


def _png(data, change=None):
  """The PNG `data` re-encoded without compression (same pixels, other bytes), or with the
  pixel at `change` (y, x) set to 255 - its value."""
  pixels = np.array(Image.open(io.BytesIO(data)))
  if change:
    pixels[change] = 255 - pixels[change]
  buf = io.BytesIO()
  Image.fromarray(pixels, mode="L").save(buf, format="PNG", compress_level=0)
  assert buf.getvalue() != data
  return buf.getvalue()


def _issues(data_dir, split):
  report = build_report.read_report(str(data_dir / "richhf18k" / VERSION))
  split_report = report["splits"][split]
  return split_report, {k: v for k, v in split_report["issues"].items() if v["count"]}


def _num_examples(data_dir, split):
  return tfds.builder("richhf18k", data_dir=str(data_dir)).info.splits[split].num_examples


def _uid(src):
  return src["filename"].split("/")[-1].split(".")[0]


def _assert_official_values(ex, src):
  """A built example (media encoded) against the official record and the mirror's image."""
  assert ex["image"] == src["jpg"]
  assert ex["prompt"].decode() == src["caption"]
  assert ex["filename"].decode() == src["filename"]
  assert ex["heatmap_implausibility"] == src["artifact_map"]
  assert ex["heatmap_misalignment"] == src["misalignment_map"]
  for name, key in SCORES.items():
    assert ex[name] == src["scores"][key]
  assert ex["word_labels"].tolist() == [int(v) for v in src["label_string"].split()]


def test_raw_bytes_tables_cross_checked_against_the_official_labels(tmp_path):
  synth, _ = _synthetic(tmp_path, seed=21)
  source = read_source(synth)
  manual = tmp_path / "mirror"
  manual.mkdir()
  for split in SPLITS:
    shutil.copy(synth / f"{split}.tfrecord", manual)
  train = list(source["train"].values())
  uids = [_uid(s) for s in train]
  rows = [_row(s) for s in train]
  rows[0]["artifact_score"] += 0.25  # a mismatched score and label string
  labels = rows[0]["prompt_misalignment_label"].split()
  rows[0]["prompt_misalignment_label"] = " ".join(["1" if labels[0] == "0" else "0"] + labels[1:])
  rows[1]["image"] = None  # a missing image
  rows.append(dict(rows[2]))  # a duplicate row
  rows.append({**rows[3], "filename": "train/0000notinrichhf.jpg"})  # an unknown filename
  _write_table(manual / "tables" / "train-00000-of-00001.parquet", rows)
  dev = list(source["dev"].values())
  dev_rows = [_row(s) for s in dev]
  dev_rows[0]["artifact_map"] = _png(dev[0]["artifact_map"])  # same pixels: no mismatch
  dev_rows[1]["misalignment_map"] = _png(dev[1]["misalignment_map"], change=(7, 300))
  _write_table(manual / "tables" / "dev-00000-of-00001.parquet", dev_rows)
  _write_table(
    manual / "tables" / "test-00000-of-00001.parquet", map(_row, source["test"].values())
  )

  build_richhf18k(manual, tmp_path / "data")

  report, issues = _issues(tmp_path / "data", "train")
  mismatch = "artifact_score, prompt_misalignment_label"
  assert issues == {
    "label_mismatch": {"count": 1, "uids": [uids[0]], "details": {uids[0]: mismatch}},
    "missing_image": {"count": 1, "uids": [uids[1]]},
    "duplicate_row": {"count": 1, "uids": [uids[2]]},
    "unknown_filename": {"count": 1, "uids": ["0000notinrichhf"]},
  }
  assert (report["label_records"], report["table_rows"], report["examples_written"]) == (5, 7, 4)
  assert report["skipped"] == 1  # unused rows are not label records
  dev_uid = _uid(dev[1])
  assert _issues(tmp_path / "data", "dev")[1] == {
    "label_mismatch": {"count": 1, "uids": [dev_uid], "details": {dev_uid: "misalignment_map"}}
  }
  assert _issues(tmp_path / "data", "test")[1] == {}
  for split in SPLITS:
    built = read_built(tmp_path / "data", split)
    expected = set(source[split]) - ({uids[1]} if split == "train" else set())
    assert set(built) == expected and _num_examples(tmp_path / "data", split) == len(expected)
    for uid, ex in built.items():
      _assert_official_values(ex, source[split][uid])  # the official labels win
  assert read_built(tmp_path / "data", "train")[uids[0]]["plausibility"] == np.float32(
    train[0]["scores"]["artifact_score"]
  )


def test_image_structs_and_a_validation_split_give_the_table_labels(tmp_path):
  synth, config = _synthetic(tmp_path, seed=22)
  source = read_source(synth)
  manual = tmp_path / "mirror"  # no label files: the tables' labels are used
  data = manual / "tables" / "data"  # a Hugging Face dataset's data/ folder
  train = list(source["train"].values())
  uids = [_uid(s) for s in train]
  rows = [_row(s, image="struct") for s in train]
  rows[1]["image"] = {"bytes": None, "path": train[1]["filename"]}  # image not embedded
  rows[2]["overall_score"] = None  # a null label cell
  rows.append(dict(rows[3]))  # a duplicate uid: kept, as in the official files
  _write_table(data / "train-00000-of-00001.parquet", rows, image="struct")
  for split, name in (("dev", "validation"), ("test", "test")):
    split_rows = [_row(s, image="struct") for s in source[split].values()]
    _write_table(data / f"{name}-00000-of-00001.parquet", split_rows, image="struct")

  build_richhf18k(manual, tmp_path / "data")

  report, issues = _issues(tmp_path / "data", "train")
  assert issues == {
    "missing_image": {"count": 1, "uids": [uids[1]]},
    "malformed_record": {"count": 1, "uids": [uids[2]]},
    "duplicate_uid": {"count": 1, "uids": [uids[3]]},
  }
  assert (report["label_records"], report["table_rows"], report["examples_written"]) == (6, 6, 4)
  assert _num_examples(tmp_path / "data", "train") == 4
  built = read_built(tmp_path / "data", "train")
  assert set(built) == set(uids) - {uids[1], uids[2]}
  for uid, ex in built.items():
    _assert_official_values(ex, source["train"][uid])
  for split in ("dev", "test"):
    assert _issues(tmp_path / "data", split)[1] == {}
    scenes = {s.uid: s for s in synthetic.iter_scenes(split, config)}
    built = read_built(tmp_path / "data", split, decode_media=True)
    encoded = read_built(tmp_path / "data", split)
    assert set(built) == set(source[split]) == set(scenes)
    for uid, ex in built.items():
      scene = scenes[uid]
      np.testing.assert_array_equal(ex["heatmap_implausibility"][..., 0], scene.artifact_map)
      np.testing.assert_array_equal(ex["heatmap_misalignment"][..., 0], scene.misalignment_map)
      assert encoded[uid]["image"] == source[split][uid]["jpg"]  # the struct's bytes as given
      jpg = np.asarray(Image.open(io.BytesIO(source[split][uid]["jpg"])).convert("RGB"))
      assert np.abs(ex["image"].astype(int) - jpg).mean() < 2  # TF and PIL decode JPEG apart
      assert ex["prompt"].decode() == scene.prompt
      assert [w.decode() for w in ex["words"]] == scene.words
      assert ex["word_labels"].tolist() == scene.labels and ex["word_labels_valid"]
      for name, key in SCORES.items():
        assert ex[name] == np.float32(scene.scores[key])


def _reupload_pickapic(synth, manual, drop_uid):
  """synth's Pick-a-Pic shards with renamed columns, Image-struct images, one row dropped."""
  rename = {"caption": "prompt", "jpg_0": "image_0", "jpg_1": "image_1"}
  schema = pa.schema(
    [("prompt", pa.string()), ("image_0_uid", pa.string()), ("image_1_uid", pa.string())]
    + [("image_0", IMAGE_STRUCT), ("image_1", IMAGE_STRUCT)]
  )
  dropped = 0
  for path in sorted((synth / "pickapic").glob("*.parquet")):
    rows = []
    for row in pq.read_table(path).to_pylist():
      if drop_uid in (row["image_0_uid"], row["image_1_uid"]):
        dropped += 1
        continue
      for side in (0, 1):
        row[f"jpg_{side}"] = {"bytes": row[f"jpg_{side}"], "path": f"{side}.jpg"}
      rows.append({rename.get(k, k): v for k, v in row.items()})
    (manual / "pickapic").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), manual / "pickapic" / path.name)
  assert dropped == 1


def test_pickapic_v1_reupload_with_other_column_names(tmp_path):
  synth, _ = _synthetic(tmp_path, seed=23)
  source = read_source(synth)
  manual = tmp_path / "reupload"
  manual.mkdir()
  for split in SPLITS:
    shutil.copy(synth / f"{split}.tfrecord", manual)
  gone = list(source["train"])[2]
  _reupload_pickapic(synth, manual, gone)

  with pytest.raises(build_errors.SourceLayoutError) as error:
    build_richhf18k(manual, tmp_path / "data")
  message = str(error.value)
  assert "\n" not in message
  assert "has no column 'caption' (role caption, preset pickapic_v1)" in message
  assert f'{manual / "columns.json"} as {{"columns": {{"caption": "<column>"}}}}' in message
  assert not (tmp_path / "data" / "richhf18k").exists()

  option = {"columns": {"caption": "prompt", "jpg_0": "image_0", "jpg_1": "image_1"}}
  (manual / "columns.json").write_text(json.dumps(option), encoding="utf-8")
  build_richhf18k(manual, tmp_path / "data")
  assert _issues(tmp_path / "data", "train")[1] == {"missing_image": {"count": 1, "uids": [gone]}}
  for split in SPLITS:
    built = read_built(tmp_path / "data", split)
    assert set(built) == set(source[split]) - {gone}
    for uid, ex in built.items():
      _assert_official_values(ex, source[split][uid])
  report = build_report.read_report(str(tmp_path / "data" / "richhf18k" / VERSION))
  assert '"caption": "prompt"' in report["image_source"]


def test_a_missing_table_column_is_named_with_its_fix(tmp_path):
  synth, _ = _synthetic(tmp_path, seed=24)
  source = read_source(synth)
  manual = tmp_path / "mirror"
  for split in SPLITS:
    rows = map(_row, source[split].values())
    _write_table(manual / "tables" / f"{split}.parquet", rows, rename={"filename": "file_name"})
  with pytest.raises(build_errors.SourceLayoutError) as error:
    build_richhf18k(manual, tmp_path / "data")
  message = str(error.value)
  assert "\n" not in message and "'file_name'" in message  # the table's columns are listed
  assert "has no column 'filename' (role filename, preset richhf18k)" in message
  assert '{"columns": {"filename": "<column>"}}' in message
  (manual / "columns.json").write_text('{"columns": {"filename": "file_name"}}', encoding="utf-8")
  build_richhf18k(manual, tmp_path / "data")
  for split in SPLITS:
    assert set(read_built(tmp_path / "data", split)) == set(source[split])


@pytest.mark.parametrize(
  "relative, split",
  [
    ("train-00000-of-00004.parquet", "train"),
    ("data/validation-00000-of-00001.parquet", "dev"),
    ("dev.parquet", "dev"),
    ("default/test/0000.parquet", "test"),
    ("Train_part1.parquet", "train"),
    ("richhf_train.parquet", None),
    ("trainer.parquet", None),
  ],
)
def test_split_of_a_table_file(relative, split):
  assert mirror_tables.split_of(relative) == split


def _tiny_table(path):
  schema = pa.schema([("image", pa.binary()), *LABEL_FIELDS])
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(schema.empty_table(), path)


@pytest.mark.parametrize(
  "option, expected",
  [
    ("{not json", r"columns\.json: not readable as JSON"),
    ('{"columns": {"prompt": "text"}}', r"unknown role\(s\) \['prompt'\]; the roles of preset"),
    ('{"preset": "pickapic_v1"}', r"preset 'pickapic_v1', which is for pickapic/\*\.parquet"),
    ('{"preset": "laion"}', r"unknown preset 'laion'"),
    ('{"column": {}}', r"unknown key\(s\) \['column'\]"),
    ('{"columns": {"image": "jpg"}}', r"has no column 'jpg' \(role image, preset richhf18k, "),
  ],
)
def test_column_option_mistakes_are_one_line(tmp_path, option, expected):
  _tiny_table(tmp_path / "tables" / "train.parquet")
  (tmp_path / "columns.json").write_text(option, encoding="utf-8")
  with pytest.raises(build_errors.SourceLayoutError, match=expected) as error:
    mirror_tables.find_tables(str(tmp_path))
  assert "\n" not in str(error.value)


def test_table_layout_mistakes_are_one_line(tmp_path):
  _tiny_table(tmp_path / "tables" / "extra-0000.parquet")
  with pytest.raises(build_errors.SourceLayoutError, match=r"cannot tell the split of table .*"):
    mirror_tables.find_tables(str(tmp_path))
  os.remove(tmp_path / "tables" / "extra-0000.parquet")
  path = tmp_path / "tables" / "train.parquet"
  schema = pa.schema([("image", pa.string()), *LABEL_FIELDS])
  pq.write_table(schema.empty_table(), path)
  with pytest.raises(build_errors.SourceLayoutError, match=r"column 'image' \(role image\) is"):
    mirror_tables.find_tables(str(tmp_path))
  arrays = [
    (n, pa.list_(pa.list_(pa.int64())) if n == "artifact_map" else t) for n, t in LABEL_FIELDS
  ]
  pq.write_table(pa.schema([("image", pa.binary()), *arrays]).empty_table(), path)
  with pytest.raises(build_errors.SourceLayoutError, match=r"'artifact_map' \(role artifact_map"):
    mirror_tables.find_tables(str(tmp_path))  # heatmaps as arrays, not encoded PNGs
  _tiny_table(path)
  assert set(mirror_tables.find_tables(str(tmp_path)).files) == {"train"}
  with pytest.raises(build_errors.MissingInputError, match=r"no table for split\(s\) dev, test"):
    build_richhf18k(tmp_path, tmp_path / "data")


def test_column_option_with_the_image_folder_layout_is_refused(tmp_path):
  config = synthetic.SyntheticConfig(
    num_train=1, num_dev=1, num_test=1, image_size=32, layout="folder", seed=25
  )
  synthetic.write_synthetic_richhf(str(tmp_path / "manual"), config)
  (tmp_path / "manual" / "columns.json").write_text("{}", encoding="utf-8")
  with pytest.raises(build_errors.SourceLayoutError, match="maps parquet columns, but"):
    build_richhf18k(tmp_path / "manual", tmp_path / "data")


def test_presets_name_the_documented_columns():
  layout, columns = column_map.PRESETS["richhf18k"]
  assert layout == "tables" and set(columns) == set(columns.values())
  assert sorted(columns) == sorted(["image", "caption"] + [f for f, _ in LABEL_FIELDS[1:]])
  layout, columns = column_map.PRESETS["pickapic_v1"]
  assert layout == "pickapic"
  assert list(columns.values()) == ["caption", "image_0_uid", "image_1_uid", "jpg_0", "jpg_1"]


@pytest.mark.slow
def test_tfds_build_cli_from_tables(tmp_path):
  """The README's command on an all-in-one mirror: builds, and a column mistake is one line."""
  synth, _ = _synthetic(tmp_path, seed=26)
  source = read_source(synth)
  download = tmp_path / "hf_mirror" / "data"  # linked in as the README shows
  for split, name in (("train", "train"), ("dev", "validation"), ("test", "test")):
    rows = map(_row, source[split].values())
    _write_table(download / f"{name}-00000-of-00001.parquet", rows, rename={"caption": "prompt"})
  manual = tmp_path / "mirror"
  manual.mkdir()
  os.symlink(download, manual / "tables")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  cmd = [
    os.path.join(os.path.dirname(sys.executable), "tfds"),
    "build",
    os.path.join(REPO, "rahf_jax", "data", "richhf18k"),
    f"--manual_dir={manual}",
    f"--data_dir={tmp_path / 'data'}",
  ]

  def run():
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

  failed = run()
  assert failed.returncode != 0 and "Traceback" not in failed.stderr
  last = failed.stderr.strip().splitlines()[-1]
  assert last.startswith("SourceLayoutError: richhf18k: ") and "role caption" in last
  (manual / "columns.json").write_text('{"columns": {"caption": "prompt"}}', encoding="utf-8")
  proc = run()
  assert proc.returncode == 0, proc.stderr[-3000:]
  for split in SPLITS:
    assert _num_examples(tmp_path / "data", split) == len(source[split])
