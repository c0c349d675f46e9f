"""The synthetic RichHF-18K: official formats, determinism, and that it is learnable and honest."""

import glob
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from scipy import stats

from rahf_jax.data import synthetic, synthetic_scenes
from rahf_jax.data import words as words_lib

# The official schema, written out independently of rahf_jax (the RichHF-18K README,
# google-research-datasets/richhf-18k).
OFFICIAL_SPEC = {
  "filename": tf.io.FixedLenFeature([], tf.string),
  "aesthetics_score": tf.io.FixedLenFeature([], tf.float32),
  "artifact_score": tf.io.FixedLenFeature([], tf.float32),
  "misalignment_score": tf.io.FixedLenFeature([], tf.float32),
  "overall_score": tf.io.FixedLenFeature([], tf.float32),
  "artifact_map": tf.io.FixedLenFeature([], tf.string),
  "misalignment_map": tf.io.FixedLenFeature([], tf.string),
  "prompt_misalignment_label": tf.io.FixedLenFeature([], tf.string),
}


def _records(path):
  return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def test_label_records_have_the_official_schema(synthetic_source):
  manual_dir, manifest = synthetic_source
  for split, n in (("train", 24), ("dev", 8), ("test", 8)):
    records = _records(manual_dir / f"{split}.tfrecord")
    assert len(records) == n == manifest["label_records"][split]
    for serialized in records:
      proto = tf.train.Example.FromString(serialized).features.feature
      assert set(proto) == set(OFFICIAL_SPEC)
      for key, spec in OFFICIAL_SPEC.items():
        kind = "bytes_list" if spec.dtype == tf.string else "float_list"
        assert proto[key].WhichOneof("kind") == kind and len(getattr(proto[key], kind).value) == 1
      ex = tf.io.parse_single_example(serialized, OFFICIAL_SPEC)
      for key in ("artifact_map", "misalignment_map"):
        assert ex[key].numpy().startswith(b"\x89PNG")
        heatmap = tf.image.decode_image(ex[key], channels=1)
        assert heatmap.shape == (512, 512, 1) and heatmap.dtype == tf.uint8
      for key in ("aesthetics_score", "artifact_score", "misalignment_score", "overall_score"):
        score = float(ex[key])
        assert 0.0 <= score <= 1.0
        assert abs(score * 12 - round(score * 12)) < 1e-5  # mean of 3 five-point ratings
      labels = ex["prompt_misalignment_label"].numpy().decode().split()
      assert labels and set(labels) <= {"0", "1"}
      assert ex["filename"].numpy().decode().endswith(".jpg")


def test_parquet_shards_look_like_pickapic(synthetic_source):
  manual_dir, manifest = synthetic_source
  files = sorted(glob.glob(os.path.join(manual_dir, "pickapic", "*.parquet")))
  assert [os.path.basename(f) for f in files] == [
    "test-00000-of-00001.parquet",
    *(f"train-{i:05d}-of-00004.parquet" for i in range(4)),
  ]
  tables = [pq.read_table(f) for f in files]
  assert all(
    t.column_names == ["caption", "image_0_uid", "image_1_uid", "jpg_0", "jpg_1"] for t in tables
  )
  assert pq.ParquetFile(files[0]).num_row_groups >= 1
  uid_side = {}
  for t in tables:
    for side in (0, 1):
      for uid in t.column(f"image_{side}_uid").to_pylist():
        uid_side[uid] = side
  labelled = set()
  for split in ("train", "dev", "test"):
    for serialized in _records(manual_dir / f"{split}.tfrecord"):
      name = tf.io.parse_single_example(serialized, OFFICIAL_SPEC)["filename"].numpy().decode()
      labelled.add(name.split("/")[-1].split(".")[0])
  assert labelled <= set(uid_side)  # every labelled image is in the shards...
  assert {uid_side[u] for u in labelled} == {0, 1}  # ...on either side...
  assert len(set(uid_side) - labelled) > len(labelled)  # ...among unlabelled distractors
  rows = sum(t.num_rows for t in tables)
  assert rows == sum(manifest["pickapic_rows"].values()) > 40


def test_deterministic_from_seed(tmp_path):
  config = dict(num_train=4, num_dev=2, num_test=2, image_size=32, rows_per_group=2)
  for name, seed in (("a", 5), ("b", 5), ("c", 6)):
    synthetic.write_synthetic_richhf(
      str(tmp_path / name), synthetic.SyntheticConfig(seed=seed, **config)
    )

  def content(name):
    out = [_records(tmp_path / name / f"{s}.tfrecord") for s in ("train", "dev", "test")]
    for f in sorted(glob.glob(str(tmp_path / name / "pickapic" / "*.parquet"))):
      out.append(pq.read_table(f).to_pylist())
    return out

  assert content("a") == content("b")
  assert content("a") != content("c")


def test_threads_write_the_same_data_as_one(tmp_path):
  # Oddities too, and more scenes than one pool chunk, so rows come from several chunks.
  config = synthetic.SyntheticConfig(
    num_train=70, num_dev=3, num_test=3, image_size=32, oddities=True, rows_per_group=8
  )
  for name, workers in (("one", 1), ("three", 3)):
    synthetic.write_synthetic_richhf(str(tmp_path / name), config, workers=workers)
  for split in ("train", "dev", "test"):
    one = _records(tmp_path / "one" / f"{split}.tfrecord")
    assert one == _records(tmp_path / "three" / f"{split}.tfrecord") and one
  shards = sorted(glob.glob(str(tmp_path / "one" / "pickapic" / "*.parquet")))
  assert len(shards) > 1
  for f in shards:
    with open(f, "rb") as a, open(f.replace("/one/", "/three/"), "rb") as b:
      assert a.read() == b.read()


@pytest.mark.slow
def test_scenes_do_not_depend_on_the_process_hash_seed():
  code = (
    "import hashlib; from rahf_jax.data import synthetic_scenes as s, synthetic as y; "
    "print(hashlib.md5(b''.join(s.make_scene(y.scene_rng(0, 2, i), 48).image.tobytes() "
    "for i in range(30))).hexdigest())"
  )
  digests = {
    subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      check=True,
      env={**os.environ, "PYTHONHASHSEED": seed},
    ).stdout  # fmt: skip
    for seed in ("1", "2")
  }
  assert len(digests) == 1, digests


def test_is_current_checks_the_generator_version_and_the_config(tmp_path):
  config = synthetic.SyntheticConfig(num_train=2, num_dev=1, num_test=1, image_size=32)
  assert not synthetic.is_current(str(tmp_path), config)  # nothing written yet
  synthetic.write_synthetic_richhf(str(tmp_path), config)
  assert synthetic.is_current(str(tmp_path), config)
  assert not synthetic.is_current(str(tmp_path), synthetic.SyntheticConfig(num_train=3))
  path = tmp_path / "synthetic_manifest.json"
  path.write_text(path.read_text().replace('"scene_version": ', '"scene_version": -'))
  assert not synthetic.is_current(str(tmp_path), config)


def test_warps_sit_on_a_drawn_object(scenes):
  warps = 0
  for s in scenes:
    drawn = [o for o in s.latent["objects"] if o["drawn"]]
    for x, y, h, kind in s.latent["artifacts"]:
      if kind == "warp":  # centred on an object (clamped into the image), so it distorts it
        warps += 1
        assert any(abs(o["cx"] - x) <= h and abs(o["cy"] - y) <= h for o in drawn)
  assert warps > 5


def test_split_content_does_not_depend_on_other_sizes():
  a = synthetic.SyntheticConfig(num_train=3, num_dev=2, seed=1, image_size=32)
  b = synthetic.SyntheticConfig(num_train=7, num_dev=2, seed=1, image_size=32)
  assert [s.uid for s in synthetic.iter_scenes("dev", a)] == [
    s.uid for s in synthetic.iter_scenes("dev", b)
  ]


@pytest.fixture(scope="module")
def scenes():
  return [synthetic_scenes.make_scene(np.random.default_rng([11, i]), size=48) for i in range(240)]


def test_scores_follow_the_picture(scenes):
  def rho(key, values):
    return stats.spearmanr([s.scores[key] for s in scenes], values).statistic

  assert rho("artifact_score", [s.latent["artifact_area"] for s in scenes]) < -0.7
  assert rho("misalignment_score", [s.latent["aligned_fraction"] for s in scenes]) > 0.6
  aesthetics = [
    0.6 * s.latent["colourfulness"] + 0.4 * max(0, 1 - abs(s.latent["coverage"] - 0.2) / 0.2)
    for s in scenes
  ]
  assert rho("aesthetics_score", aesthetics) > 0.5
  assert rho("overall_score", [s.latent["true_scores"]["overall_score"] for s in scenes]) > 0.6


def test_misaligned_words_are_the_missing_or_wrong_objects(scenes):
  n_wrong = wrong_and_marked = mass_near = mass_total = 0
  for s in scenes:
    assert words_lib.split_prompt_words(s.prompt) == s.words and len(s.labels) == len(s.words)
    by_word = {}
    for w, label in zip(s.words, s.labels, strict=True):
      by_word.setdefault(w, []).append(label)
    for o in s.latent["objects"]:
      colour_ok = o["fate"] in ("ok", "wrong_shape")
      shape_ok = o["fate"] in ("ok", "wrong_colour")
      assert (1 if colour_ok else 0) in by_word[o["colour"]]
      assert (1 if shape_ok else 0) in by_word[o["shape"]]
    bg_ok = s.latent["background"] == s.latent["drawn_background"]
    assert by_word[s.latent["background"]][-1] == int(bg_ok)
    # Misalignment disks sit on the wrongly drawn objects (up to rare false clicks).
    wrong = [o for o in s.latent["objects"] if o["fate"] in ("wrong_colour", "wrong_shape")]
    ys, xs = np.nonzero(s.misalignment_map)
    near = np.zeros(len(xs), bool)
    for o in wrong:
      reach = 512 / 48 * 2 * o["r"] + 26
      near |= np.hypot(xs - o["cx"] * 512 / 48, ys - o["cy"] * 512 / 48) < reach
    mass_near += near.sum()
    mass_total += len(xs)
    n_wrong += bool(wrong)
    if wrong:
      wrong_and_marked += bool(len(xs))
  assert mass_near / mass_total > 0.85
  assert wrong_and_marked / n_wrong > 0.9
  assert n_wrong > 30


def test_wrongly_drawn_colour_is_visible(scenes):
  checked = 0
  for s in scenes:
    for o in s.latent["objects"]:
      near_artifact = any(
        np.hypot(o["cx"] - x, o["cy"] - y) < o["r"] + h + 2 for x, y, h, _ in s.latent["artifacts"]
      )
      if o["drawn"] and not near_artifact and o["drawn_shape"] in ("circle", "square"):
        pixel = s.image[int(o["cy"]), int(o["cx"])].astype(float)
        dist = {c: np.abs(pixel - rgb).sum() for c, rgb in synthetic_scenes.COLOURS.items()}
        assert min(dist, key=dist.get) == o["drawn_colour"]
        checked += 1
  assert checked > 50


def test_maps_realistic_share_of_all_zero(scenes):
  zero_art = np.mean([s.artifact_map.max() == 0 for s in scenes])
  zero_mis = np.mean([s.misalignment_map.max() == 0 for s in scenes])
  assert 0.3 < zero_art < 0.7 and 0.3 < zero_mis < 0.75
  values = np.unique(np.concatenate([np.unique(s.artifact_map) for s in scenes]))
  assert set(values.tolist()) <= {0, 85, 170, 255}  # mean of three annotators' disks


def test_disk_radius_is_a_twentieth_of_the_height():
  disk = synthetic_scenes._disk_map([(256.0, 256.0)])
  assert disk.sum() == pytest.approx(np.pi * (512 / 20) ** 2, rel=0.03)


def test_no_target_readable_from_a_single_pixel(scenes):
  pixels = np.stack([s.image.reshape(-1) for s in scenes]).astype(np.float64)
  pixels -= pixels.mean(0)
  for key in ("artifact_score", "misalignment_score"):
    y = np.array([s.scores[key] for s in scenes])
    y = (y - y.mean()) / y.std()
    corr = (pixels * y[:, None]).mean(0) / (pixels.std(0) + 1e-9)
    assert np.abs(corr).max() < 0.4
