"""Captions that are absent, null, empty or blank: counted as missing_caption, never as
missing_image (the image is there) and never kept as an empty prompt."""

import glob
import json

import pyarrow as pa
import pyarrow.parquet as pq
from richhf_fixtures import build_richhf18k, read_built

from rahf_jax.data import build_report, synthetic
from rahf_jax.data.richhf18k import richhf18k_dataset_builder

VERSION = str(richhf18k_dataset_builder.Builder.VERSION)


def _train_issues(data_dir):
  report = build_report.read_report(str(data_dir / "richhf18k" / VERSION))["splits"]["train"]
  return report, {k: sorted(v["uids"]) for k, v in report["issues"].items() if v["count"]}


def test_folder_layout_missing_null_empty_and_blank_captions(tmp_path):
  config = synthetic.SyntheticConfig(
    num_train=5, num_dev=1, num_test=1, image_size=32, layout="folder", seed=11
  )
  manifest = synthetic.write_synthetic_richhf(str(tmp_path / "manual"), config)
  absent, null, empty, blank, kept = manifest_uids = _labelled_train_uids(tmp_path / "manual")
  assert len(manifest_uids) == 5 and manifest["label_records"]["train"] == 5
  path = tmp_path / "manual" / "captions.jsonl"
  lines = []
  for record in map(json.loads, path.read_text(encoding="utf-8").splitlines()):
    if record["uid"] == absent:
      continue
    record["caption"] = {null: None, empty: "", blank: "  \t "}.get(
      record["uid"], record["caption"]
    )
    lines.append(json.dumps(record))
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  build_richhf18k(tmp_path / "manual", tmp_path / "data")
  report, issues = _train_issues(tmp_path / "data")
  assert issues == {"missing_caption": sorted([absent, null, empty, blank])}
  assert report["examples_written"] == 1 and report["skipped"] == 4
  assert set(read_built(tmp_path / "data", "train")) == {kept}


def test_parquet_null_caption(tmp_path):
  config = synthetic.SyntheticConfig(num_train=3, num_dev=1, num_test=1, image_size=32, seed=12)
  synthetic.write_synthetic_richhf(str(tmp_path / "manual"), config)
  uid = _labelled_train_uids(tmp_path / "manual")[0]
  changed = 0
  for shard in glob.glob(str(tmp_path / "manual" / "pickapic" / "*.parquet")):
    table = pq.read_table(shard)
    rows = table.to_pylist()
    for row in rows:
      if uid in (row["image_0_uid"], row["image_1_uid"]):
        row["caption"], changed = None, changed + 1
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
  assert changed == 1
  build_richhf18k(tmp_path / "manual", tmp_path / "data")
  report, issues = _train_issues(tmp_path / "data")
  assert issues == {"missing_caption": [uid]}
  assert report["examples_written"] == 2 and report["skipped"] == 1


def _labelled_train_uids(manual):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  spec = {"filename": tf.io.FixedLenFeature([], tf.string)}
  return [
    tf.io.parse_single_example(raw, spec)["filename"].numpy().decode().split("/")[-1].split(".")[0]
    for raw in tf.data.TFRecordDataset(str(manual / "train.tfrecord"))
  ]
