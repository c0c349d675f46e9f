"""Bad and odd inputs: none crashes the build or vanishes; each is counted with its uid.

The odd build (conftest.richhf18k_odd_data_dir) holds one train record of each oddity
(synthetic.ODDITY_KINDS); the manifest names its uid.
"""

import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from richhf_fixtures import TINY, build_richhf18k, read_built

from rahf_jax.data import build_report, synthetic, synthetic_scenes
from rahf_jax.data.richhf18k import label_records, media_checks, richhf18k_dataset_builder

SKIPPED = ("missing_image", "undecodable_image", "undecodable_heatmap", "missing_caption")
VERSION = str(richhf18k_dataset_builder.Builder.VERSION)
FLAGS = richhf18k_dataset_builder.HEATMAP_FLAGS


@pytest.fixture(scope="module")
def odd(synthetic_oddities, richhf18k_odd_data_dir):
  """(report, built train examples by uid, oddity uids, oddity scenes)."""
  _, manifest = synthetic_oddities
  path = os.path.join(richhf18k_odd_data_dir, "richhf18k", VERSION, "build_report.json")
  with open(path, encoding="utf-8") as f:
    report = json.load(f)
  config = synthetic.SyntheticConfig(**TINY)
  scenes = {  # the scene each oddity was made from, drawn again from its generator
    kind: synthetic_scenes.make_scene(
      synthetic.scene_rng(config.seed, synthetic._ODDITY_ID, k), config.image_size
    )
    for k, kind in enumerate(synthetic.ODDITY_KINDS)
  }
  return report, read_built(richhf18k_odd_data_dir, "train"), manifest["oddities"], scenes


def _issue(report, kind, split="train"):
  return report["splits"][split]["issues"][kind]


def test_totals_add_up(odd):
  report, built, _, _ = odd
  train = report["splits"]["train"]
  n_records = TINY["num_train"] + len(synthetic.ODDITY_KINDS)
  assert train["label_records"] == n_records
  assert train["skipped"] == len(SKIPPED)
  assert train["examples_written"] == len(built) == n_records - len(SKIPPED)
  for split in ("dev", "test"):  # the oddities are all in train
    assert report["splits"][split]["examples_written"] == TINY[f"num_{split}"]
  assert report["counts"]["train"] == {
    "label_records": n_records,
    "examples_written": n_records - len(SKIPPED),
    "skipped": len(SKIPPED),
    **{kind: 1 for kind in synthetic.ODDITY_KINDS},
  }


def test_missing_image(odd):
  report, built, uids, _ = odd
  assert _issue(report, "missing_image") == {"count": 1, "uids": [uids["missing_image"]]}
  assert uids["missing_image"] not in built


def test_missing_caption(odd):
  report, built, uids, _ = odd
  assert _issue(report, "missing_caption") == {"count": 1, "uids": [uids["missing_caption"]]}
  assert _issue(report, "missing_image")["uids"] == [uids["missing_image"]]
  assert uids["missing_caption"] not in built


def test_undecodable_image(odd):
  report, built, uids, _ = odd
  assert _issue(report, "undecodable_image") == {"count": 1, "uids": [uids["undecodable_image"]]}
  assert uids["undecodable_image"] not in built


def test_undecodable_heatmap(odd):
  report, built, uids, _ = odd
  assert _issue(report, "undecodable_heatmap") == {
    "count": 1,
    "uids": [uids["undecodable_heatmap"]],
  }
  assert uids["undecodable_heatmap"] not in built


def test_heatmap_not_512_is_resized(odd, richhf18k_odd_data_dir):
  report, _, uids, scenes = odd
  uid = uids["heatmap_resized"]
  assert _issue(report, "heatmap_resized") == {"count": 1, "uids": [uid]}
  ex = read_built(richhf18k_odd_data_dir, "train", decode_media=True)[uid]
  assert ex["heatmap_implausibility"].shape == (512, 512, 1)
  original = scenes["heatmap_resized"].artifact_map.astype(float)  # before the 256 round trip
  assert np.abs(ex["heatmap_implausibility"][..., 0] - original).mean() < 3
  np.testing.assert_array_equal(  # the other map was fine and is kept exactly
    ex["heatmap_misalignment"][..., 0], scenes["heatmap_resized"].misalignment_map
  )


def test_resized_heatmap_is_flagged_in_the_example(odd):
  _, built, uids, _ = odd
  flagged = {uid: [f for f in FLAGS if ex[f]] for uid, ex in built.items()}
  assert flagged.pop(uids["heatmap_resized"]) == ["heatmap_implausibility_resized"]
  assert not any(flagged.values())  # every other example: all four flags False


def test_label_count_mismatch_is_kept_and_flagged(odd):
  report, built, uids, scenes = odd
  uid = uids["label_count_mismatch"]
  assert _issue(report, "label_count_mismatch") == {"count": 1, "uids": [uid]}
  ex, scene = built[uid], scenes["label_count_mismatch"]
  assert not ex["word_labels_valid"]
  assert ex["word_labels"].tolist() == scene.labels + [1]  # as given: one label too many
  assert [w.decode() for w in ex["words"]] == scene.words
  assert ex["target"].decode() == " ".join(scene.words)  # no marks
  assert "_0" not in ex["target"].decode()
  assert ex["plausibility"] == np.float32(scene.scores["artifact_score"])  # scores kept
  assert sum(not e["word_labels_valid"] for e in built.values()) == 1


def test_empty_prompt_is_kept(odd):
  report, built, uids, _ = odd
  uid = uids["empty_prompt"]
  assert _issue(report, "empty_prompt") == {"count": 1, "uids": [uid]}
  ex = built[uid]
  assert ex["prompt"].decode() == synthetic.EMPTY_PROMPT and ex["target"] == b""
  assert len(ex["words"]) == 0 and len(ex["word_labels"]) == 0 and ex["word_labels_valid"]


def test_non_ascii_and_quotes_kept_exactly(odd):
  report, built, uids, scenes = odd
  uid = uids["non_ascii_prompt"]
  assert _issue(report, "non_ascii_prompt") == {"count": 1, "uids": [uid]}
  ex = built[uid]
  prompt = ex["prompt"].decode("utf-8")
  assert prompt == 'a "dreamy" café-style picture — naïve: ' + scenes["non_ascii_prompt"].prompt
  words = [w.decode("utf-8") for w in ex["words"]]
  assert words[:6] == ["a", "dreamy", "café-style", "picture", "—", "naïve"]
  assert ex["word_labels_valid"] and len(ex["word_labels"]) == len(words)


def test_summary_is_logged(synthetic_source, tmp_path, caplog):
  caplog.set_level("INFO")
  build_richhf18k(synthetic_source[0], tmp_path)
  assert any("richhf18k[train]: wrote 24/24" in r.getMessage() for r in caplog.records)


def test_missing_manual_dir_names_the_layout(tmp_path):
  with pytest.raises(FileNotFoundError, match="expected manual_dir layout: train.tfrecord"):
    build_richhf18k(tmp_path / "does_not_exist", tmp_path / "data")


def test_labels_without_images_names_the_layout(tmp_path, synthetic_source):
  manual = tmp_path / "manual"
  manual.mkdir()
  for split in ("train", "dev", "test"):
    shutil.copy(synthetic_source[0] / f"{split}.tfrecord", manual)
  with pytest.raises(FileNotFoundError, match=r"pickapic/\*\.parquet .* captions\.jsonl"):
    build_richhf18k(manual, tmp_path / "data")


def test_checksums_are_the_official_ones():
  infos = richhf18k_dataset_builder.Builder.url_infos
  base = "https://media.githubusercontent.com/media/google-research-datasets/richhf-18k/main/"
  expected = {  # RichHF-18K's files (google-research-datasets/richhf-18k): bytes and sha256
    "train.tfrecord": (
      150710286,
      "3ab17365e49aeaa8d8c32e5317161be28092c83111a8d8eb0d2658895fab2d33",
    ),
    "dev.tfrecord": (9163974, "6db154c91b5673bf58de822eef4618a4ee6f3f7cd56a7749fefdd44f57b4755a"),
    "test.tfrecord": (10112337, "6819ef72631de3af32904f2af3c990b8be0c9597ef3917b9cf0a799161156049"),
  }
  assert set(infos) == {base + name for name in expected}
  for name, (size, sha) in expected.items():
    assert (int(infos[base + name].size), infos[base + name].checksum) == (size, sha)


def test_image_in_a_format_tensorflow_cannot_read_is_reencoded():
  buf = io.BytesIO()
  Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buf, format="TIFF")
  data, issue = media_checks.check_image(buf.getvalue())
  assert issue == "reencoded_image" and data.startswith(b"\x89PNG")
  assert (
    media_checks.check_image(synthetic_scenes.encode_jpeg(np.zeros((4, 4, 3), np.uint8)))[1] is None
  )


def test_malformed_duplicate_and_jpeg_heatmap_records(tmp_path):
  """Hand-made dev records: garbage bytes, a missing key, a duplicate uid with a JPEG map."""
  manual = tmp_path / "manual"
  config = synthetic.SyntheticConfig(num_train=2, num_dev=2, num_test=1, image_size=32, seed=8)
  synthetic.write_synthetic_richhf(str(manual), config)
  dev = [r.numpy() for r in tf.data.TFRecordDataset(str(manual / "dev.tfrecord"))]
  first = label_records.parse_record(dev[0])
  no_overall = tf.train.Example.FromString(dev[1])
  del no_overall.features.feature["overall_score"]
  buf = io.BytesIO()
  Image.fromarray(np.zeros((512, 512), np.uint8)).save(buf, format="JPEG")
  first.artifact_map = buf.getvalue()
  extra = [b"\x01garbage", no_overall.SerializeToString(), label_records.serialize_record(first)]
  label_records.write_tfrecord(str(manual / "dev.tfrecord"), dev + extra)
  build_richhf18k(manual, tmp_path / "data")
  report = build_report.read_report(str(tmp_path / "data" / "richhf18k" / VERSION))["splits"]
  issues = {k: v for k, v in report["dev"]["issues"].items() if v["count"]}
  assert issues == {
    "malformed_record": {"count": 2, "uids": ["record#2", "record#3"]},
    "duplicate_uid": {"count": 1, "uids": [first.uid]},
    "heatmap_reencoded": {"count": 1, "uids": [first.uid]},
  }
  assert report["dev"]["label_records"] == 5 and report["dev"]["examples_written"] == 3
  built = tfds.builder("richhf18k", data_dir=str(tmp_path / "data")).as_dataset("dev")
  built = [{k: v.numpy() for k, v in ex.items()} for ex in built]
  maps = sorted(int(ex["heatmap_implausibility"].max()) for ex in built)
  assert len(maps) == 3 and maps[0] == 0  # the re-encoded copy decodes as a 512x512 map
  flagged = sorted([f for f in FLAGS if ex[f]] for ex in built)
  assert flagged == [[], [], ["heatmap_implausibility_reencoded"]]
