"""The official RichHF-18K label record: its eight keys, their proto types, read and write.

Each record of train/dev/test.tfrecord is a `tf.train.Example` with
  filename, artifact_map, misalignment_map, prompt_misalignment_label: bytes_list[0]
  aesthetics_score, artifact_score, misalignment_score, overall_score: float_list[0]
(see ../shared/RAHF_REFERENCE.md s2). Shared by the builder, the synthetic
generator and the schema test, so all three agree on one definition.
"""

import dataclasses

import tensorflow as tf
from google.protobuf import message

from rahf_jax import features

BYTES_KEYS = (
  features.FILENAME_SOURCE_KEY,
  features.HEATMAP_SOURCE_KEYS["implausibility"],
  features.HEATMAP_SOURCE_KEYS["misalignment"],
  features.LABELS_SOURCE_KEY,
)
FLOAT_KEYS = (
  features.SCORE_SOURCE_KEYS["aesthetics"],
  features.SCORE_SOURCE_KEYS["plausibility"],
  features.SCORE_SOURCE_KEYS["alignment"],
  features.SCORE_SOURCE_KEYS["overall"],
)
OFFICIAL_KEYS = BYTES_KEYS + FLOAT_KEYS

# The spec for tf.io.parse_single_example, with the official field types.
OFFICIAL_FEATURE_SPEC = {
  **{k: tf.io.FixedLenFeature([], tf.string) for k in BYTES_KEYS},
  **{k: tf.io.FixedLenFeature([], tf.float32) for k in FLOAT_KEYS},
}


def uid_from_filename(filename: str) -> str:
  """The Pick-a-Pic uid of a RichHF-18K filename: basename without extension."""
  return filename.split("/")[-1].split(".")[0]


@dataclasses.dataclass
class LabelRecord:
  """One parsed label record (raw bytes for maps, label string as given)."""

  filename: str
  scores: dict[str, float]  # keyed by the source keys (artifact_score, ...)
  artifact_map: bytes
  misalignment_map: bytes
  label_string: str

  @property
  def uid(self) -> str:
    return uid_from_filename(self.filename)


def parse_record(serialized: bytes) -> LabelRecord:
  """Parses a serialized record.

  Raises KeyError naming a missing or mistyped key, or ValueError when the bytes are not
  a tf.train.Example.
  """
  try:
    feature = tf.train.Example.FromString(serialized).features.feature
  except message.DecodeError as e:
    raise ValueError(f"not a tf.train.Example: {e}") from None

  def _bytes(key):
    if key not in feature or not feature[key].bytes_list.value:
      raise KeyError(key)
    return feature[key].bytes_list.value[0]

  def _float(key):
    if key not in feature or not feature[key].float_list.value:
      raise KeyError(key)
    return float(feature[key].float_list.value[0])

  return LabelRecord(
    filename=_bytes(features.FILENAME_SOURCE_KEY).decode("utf-8", errors="replace"),
    scores={k: _float(k) for k in FLOAT_KEYS},
    artifact_map=_bytes(features.HEATMAP_SOURCE_KEYS["implausibility"]),
    misalignment_map=_bytes(features.HEATMAP_SOURCE_KEYS["misalignment"]),
    label_string=_bytes(features.LABELS_SOURCE_KEY).decode("utf-8", errors="replace"),
  )


def serialize_record(record: LabelRecord) -> bytes:
  """Serializes `record` with exactly the eight official keys and proto types."""

  def _b(v: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

  def _f(v: float):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))

  feature = {
    features.FILENAME_SOURCE_KEY: _b(record.filename.encode("utf-8")),
    features.HEATMAP_SOURCE_KEYS["implausibility"]: _b(record.artifact_map),
    features.HEATMAP_SOURCE_KEYS["misalignment"]: _b(record.misalignment_map),
    features.LABELS_SOURCE_KEY: _b(record.label_string.encode("utf-8")),
    **{k: _f(record.scores[k]) for k in FLOAT_KEYS},
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def read_tfrecord(path: str):
  """Yields the serialized records of a TFRecord file (a clear error if it is not one)."""
  try:
    yield from tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
  except tf.errors.DataLossError as e:
    raise ValueError(
      f"{path} is not a readable TFRecord file (truncated or corrupt): {e}"
    ) from None


def write_tfrecord(path: str, serialized_records) -> int:
  """Writes serialized records to `path`; returns how many."""
  n = 0
  with tf.io.TFRecordWriter(str(path)) as writer:
    for s in serialized_records:
      writer.write(s)
      n += 1
  return n
