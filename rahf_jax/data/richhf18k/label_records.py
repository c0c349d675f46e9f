"""The official RichHF-18K label record: its eight keys, their proto types, read and write.

Each record of train/dev/test.tfrecord is a `tf.train.Example` with
  filename, artifact_map, misalignment_map, prompt_misalignment_label: bytes_list[0]
  aesthetics_score, artifact_score, misalignment_score, overall_score: float_list[0]
(the format of the RichHF-18K release). Shared by the builder, the synthetic
generator and the schema test, so all three agree on one definition.
"""

import dataclasses
import functools
import hashlib
import os
import re
import struct

import tensorflow as tf
from google.protobuf import message

from rahf_jax import features
from rahf_jax.data.richhf18k import build_errors

# The official label files: url, bytes, sha256, file name (one tab-separated line each).
CHECKSUMS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checksums.tsv")

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


def record_from_fields(values) -> LabelRecord:
  """The LabelRecord of the eight official keys' values (the one decoder of label fields).

  `values` maps official keys to Python values: bytes (or str) for filename, the two maps and
  the label string; a number for each score. Used for the official TFRecords (parse_record)
  and for the label columns of all-in-one mirror tables, so both decode alike.

  Raises KeyError naming a key that is absent or None, or ValueError naming a key whose value
  has the wrong type (or an empty filename).
  """

  def _present(key):
    value = values.get(key)
    if value is None:
      raise KeyError(key)
    return value

  def _bytes(key):
    value = _present(key)
    if isinstance(value, str):
      return value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
      raise ValueError(f"{key}: expected bytes or text, got {type(value).__name__}")
    return bytes(value)

  def _float(key):
    value = _present(key)
    if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
      raise ValueError(f"{key}: expected a number, got {type(value).__name__}")
    return float(value)

  filename = _bytes(features.FILENAME_SOURCE_KEY).decode("utf-8", errors="replace")
  if not filename.strip():
    raise ValueError(f"{features.FILENAME_SOURCE_KEY}: empty")
  return LabelRecord(
    filename=filename,
    scores={k: _float(k) for k in FLOAT_KEYS},
    artifact_map=_bytes(features.HEATMAP_SOURCE_KEYS["implausibility"]),
    misalignment_map=_bytes(features.HEATMAP_SOURCE_KEYS["misalignment"]),
    label_string=_bytes(features.LABELS_SOURCE_KEY).decode("utf-8", errors="replace"),
  )


def parse_record(serialized: bytes) -> LabelRecord:
  """Parses a serialized record.

  Raises KeyError naming a missing or mistyped key, or ValueError when the bytes are not
  a tf.train.Example (or a value is unusable, see record_from_fields).
  """
  try:
    feature = tf.train.Example.FromString(serialized).features.feature
  except message.DecodeError as e:
    raise ValueError(f"not a tf.train.Example: {e}") from None
  values = {}
  for key in BYTES_KEYS:
    if key in feature and feature[key].bytes_list.value:
      values[key] = feature[key].bytes_list.value[0]
  for key in FLOAT_KEYS:
    if key in feature and feature[key].float_list.value:
      values[key] = feature[key].float_list.value[0]
  return record_from_fields(values)


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


@functools.cache
def official_files() -> dict[str, tuple[str, int, str]]:
  """{file name: (url, bytes, sha256)} of the official label files (checksums.tsv)."""
  out = {}
  with open(CHECKSUMS_PATH, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        url, size, sha256, name = line.split()
        out[name] = (url, int(size), sha256)
  return out


def file_sha256(path: str) -> str:
  """The sha256 hex digest of a file, read in 1 MiB blocks."""
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(str(path), "rb") as f:
    while block := f.read(1 << 20):
      digest.update(block)
  return digest.hexdigest()


def _record_start(path: str, index: int) -> int | None:
  """Byte offset of record `index` (walking the 8-byte length headers), None if past the end."""
  pos = 0
  with tf.io.gfile.GFile(str(path), "rb") as f:
    for _ in range(index):
      header = f.read(8)
      if len(header) < 8:
        return None
      pos += 12 + struct.unpack("<Q", header)[0] + 4
      f.seek(pos)
  return pos


def damaged_file_message(path: str, records_read: int, reader_message: str) -> str:
  """One line: where reading `path` failed, and the file checked against the official one."""
  path = os.fspath(path)
  found = re.search(r"(corrupted|truncated) record at (\d+)", reader_message)
  what = {"corrupted": "CRC check failed", "truncated": "file ends"}.get(
    found.group(1) if found else "", "unreadable"
  )
  start = _record_start(path, records_read)
  if start is None and found:
    start = int(found.group(2))
  where = f"record #{records_read}" + (f" at byte {start}" if start is not None else "")
  size, sha256 = tf.io.gfile.stat(path).length, file_sha256(path)
  name = os.path.basename(path)
  official = official_files().get(name)
  if official is None:
    hint = "use the official files of github.com/google-research-datasets/richhf-18k"
  elif (size, sha256) == official[1:]:
    hint = (
      f"it matches the official {name} ({official[1]} bytes, sha256 {official[2]}), so it reads "
      "back wrong here: copy it again or check the disk"
    )
  else:
    hint = (
      f"it does not match the official {name} ({official[1]} bytes, sha256 {official[2]}): "
      f"download it again from {official[0]} and replace it"
    )
  return (
    f"richhf18k: label file {path} is damaged: {what} at {where} (the file has {size} bytes, "
    f"sha256 {sha256}); {hint}."
  )


def read_tfrecord(path: str):
  """Yields the serialized records of a TFRecord file.

  Raises build_errors.DamagedInputError (a ValueError), one line, when the file is truncated
  or fails its CRC check: the record and byte offset where reading failed, and the file checked
  against the official label file of the same name (checksums.tsv).
  """
  records_read = 0
  try:
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
      yield record
      records_read += 1
  except tf.errors.DataLossError as e:
    message_line = build_errors.one_line(e.message)
    raise build_errors.DamagedInputError(
      damaged_file_message(path, records_read, message_line)
    ) from None


def write_tfrecord(path: str, serialized_records) -> int:
  """Writes serialized records to `path`; returns how many."""
  n = 0
  with tf.io.TFRecordWriter(str(path)) as writer:
    for s in serialized_records:
      writer.write(s)
      n += 1
  return n
