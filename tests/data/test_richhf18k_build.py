"""Builds `richhf18k` from synthetic sources through the real builder and reads it back.

References are independent of the builder: the sources re-read with tf.io/pyarrow
(conftest.read_source) and the generator's own scenes (words and labels built token by token).
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from richhf_fixtures import TINY, build_richhf18k, read_built, read_source

from rahf_jax.data import synthetic
from rahf_jax.data.richhf18k import richhf18k_dataset_builder

SCORE_KEYS = {
  "plausibility": "artifact_score",
  "alignment": "misalignment_score",
  "aesthetics": "aesthetics_score",
  "overall": "overall_score",
}
VERSION = str(richhf18k_dataset_builder.Builder.VERSION)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_built_values_equal_the_sources(synthetic_source, richhf18k_data_dir, split):
  manual_dir, _ = synthetic_source
  source = read_source(manual_dir)[split]
  scenes = {s.uid: s for s in synthetic.iter_scenes(split, synthetic.SyntheticConfig(**TINY))}
  built = read_built(richhf18k_data_dir, split)
  assert set(built) == set(source) == set(scenes)
  assert len(built) == TINY[f"num_{split}"]
  for uid, ex in built.items():
    src, scene = source[uid], scenes[uid]
    assert ex["image"] == src["jpg"]  # encoded bytes as given
    assert ex["heatmap_implausibility"] == src["artifact_map"]
    assert ex["heatmap_misalignment"] == src["misalignment_map"]
    assert ex["prompt"].decode() == src["caption"] == scene.prompt
    assert ex["filename"].decode() == src["filename"]
    for name, key in SCORE_KEYS.items():
      assert ex[name] == src["scores"][key]
      assert ex[name] == np.float32(scene.scores[key])
    assert [w.decode() for w in ex["words"]] == scene.words
    assert ex["word_labels"].tolist() == scene.labels
    assert ex["word_labels_valid"]
    expected = " ".join(
      w + "_0" if lab == 0 else w for w, lab in zip(scene.words, scene.labels, strict=True)
    )
    assert ex["target"].decode() == expected


def test_decoded_media(richhf18k_data_dir):
  scenes = {s.uid: s for s in synthetic.iter_scenes("dev", synthetic.SyntheticConfig(**TINY))}
  built = read_built(richhf18k_data_dir, "dev", decode_media=True)
  n_marked = 0
  for uid, ex in built.items():
    scene = scenes[uid]
    assert ex["image"].shape == (64, 64, 3) and ex["image"].dtype == np.uint8
    assert np.abs(ex["image"].astype(int) - scene.image).mean() < 6  # JPEG round trip
    np.testing.assert_array_equal(ex["heatmap_implausibility"][..., 0], scene.artifact_map)
    np.testing.assert_array_equal(ex["heatmap_misalignment"][..., 0], scene.misalignment_map)
    n_marked += bool(scene.artifact_map.any())
  assert n_marked > 0


def test_report_of_a_clean_build(richhf18k_data_dir):
  with open(os.path.join(richhf18k_data_dir, "richhf18k", VERSION, "build_report.json")) as f:
    report = json.load(f)
  for split in ("train", "dev", "test"):
    r = report["splits"][split]
    assert r["label_records"] == r["examples_written"] == TINY[f"num_{split}"]
    assert r["skipped"] == 0
    assert all(v["count"] == 0 and v["uids"] == [] for v in r["issues"].values())
  assert "parquet" in report["image_source"]


def test_folder_layout_builds_the_same_values(tmp_path):
  config = synthetic.SyntheticConfig(
    num_train=4, num_dev=2, num_test=2, image_size=32, layout="folder", seed=4
  )
  synthetic.write_synthetic_richhf(str(tmp_path / "manual"), config)
  with open(tmp_path / "manual" / "captions.jsonl", encoding="utf-8") as f:
    captions = {r["uid"]: r["caption"] for r in map(json.loads, f)}
  build_richhf18k(tmp_path / "manual", tmp_path / "data")
  for split in ("train", "dev", "test"):
    built = read_built(tmp_path / "data", split)
    assert len(built) == config.num(split)
    for uid, ex in built.items():
      assert ex["image"] == (tmp_path / "manual" / "images" / f"{uid}.jpg").read_bytes()
      assert ex["prompt"].decode() == captions[uid]
      Image.open(io.BytesIO(ex["image"])).verify()


@pytest.mark.slow
def test_tfds_build_cli(tmp_path, synthetic_source):
  """`tfds build <builder dir> --manual_dir --data_dir`, the command users run."""
  tfds_cli = os.path.join(os.path.dirname(sys.executable), "tfds")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  cmd = [
    tfds_cli,
    "build",
    os.path.join(REPO, "rahf_jax", "data", "richhf18k"),
    f"--manual_dir={synthetic_source[0]}",
    f"--data_dir={tmp_path}",
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "richhf18k" / VERSION / "dataset_info.json") as f:
    info = json.load(f)
  counts = {s["name"]: int(s["shardLengths"][0]) for s in info["splits"]}
  assert counts == {"train": 24, "dev": 8, "test": 8}
  assert (tmp_path / "richhf18k" / VERSION / "build_report.json").exists()
