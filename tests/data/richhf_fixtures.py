"""Helpers for the richhf18k data tests (imported by conftest.py and the test files).

TINY is the size of the session-scoped synthetic sets; read_source re-reads synthetic
sources independently of the builder (tf.io + pyarrow); read_built reads a built split.
"""

import glob
import os

import pyarrow.parquet as pq
import tensorflow as tf
import tensorflow_datasets as tfds

import rahf_jax.data  # noqa: F401  (registers richhf18k)

TINY = dict(num_train=24, num_dev=8, num_test=8, image_size=64, rows_per_group=8, seed=3)


def build_richhf18k(manual_dir, data_dir):
  """Builds `richhf18k` from `manual_dir` into `data_dir` through the real builder."""

  builder = tfds.builder("richhf18k", data_dir=str(data_dir))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def read_source(manual_dir):
  """The synthetic sources read back independently of the builder (tf.io + pyarrow).

  Returns {split: {uid: dict(filename, scores, artifact_map, misalignment_map,
  label_string, jpg, caption)}}; jpg/caption are None for a uid without a parquet row.
  """

  spec = {
    k: tf.io.FixedLenFeature([], tf.string)
    for k in ("filename", "artifact_map", "misalignment_map", "prompt_misalignment_label")
  }
  score_keys = ("aesthetics_score", "artifact_score", "misalignment_score", "overall_score")
  spec.update({k: tf.io.FixedLenFeature([], tf.float32) for k in score_keys})
  images = {}
  for path in glob.glob(os.path.join(str(manual_dir), "pickapic", "*.parquet")):
    for row in pq.read_table(path).to_pylist():
      for side in (0, 1):
        images.setdefault(row[f"image_{side}_uid"], (row[f"jpg_{side}"], row["caption"]))
  out = {}
  for split in ("train", "dev", "test"):
    out[split] = {}
    for raw in tf.data.TFRecordDataset(os.path.join(str(manual_dir), f"{split}.tfrecord")):
      ex = {k: v.numpy() for k, v in tf.io.parse_single_example(raw, spec).items()}
      filename = ex["filename"].decode()
      uid = filename.split("/")[-1].split(".")[0]
      jpg, caption = images.get(uid, (None, None))
      out[split][uid] = dict(
        filename=filename,
        scores={k: ex[k] for k in score_keys},
        artifact_map=ex["artifact_map"],
        misalignment_map=ex["misalignment_map"],
        label_string=ex["prompt_misalignment_label"].decode(),
        jpg=jpg,
        caption=caption,
      )
  return out


def read_built(data_dir, split, decode_media=False):
  """{uid: example as numpy} of a built split; media stay encoded unless decode_media."""

  builder = tfds.builder("richhf18k", data_dir=str(data_dir))
  media = ("image", "heatmap_implausibility", "heatmap_misalignment")
  decoders = None if decode_media else {k: tfds.decode.SkipDecoding() for k in media}
  ds = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
  return {ex["uid"].decode(): ex for ex in tfds.as_numpy(ds)}
