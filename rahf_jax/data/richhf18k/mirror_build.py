"""Examples of one split from all-in-one mirror tables, checked against the official labels.

Two cases per split, both counted in the build report (rahf_jax.data.build_report):

- no `<split>.tfrecord` in manual_dir: the table's rows are the label records. Their label
  cells go through label_records.record_from_fields, the decoder of the official TFRecords, and
  then through the same example code as the official route (heatmap checks, word pairing).
  Keys are row numbers. A row whose label cells are absent or mistyped is a malformed_record; a
  uid seen before in the split is a duplicate_uid (kept, as for the official files).
- `<split>.tfrecord` present: its records are the labels and the table gives each uid's image
  and caption (the first row of the uid). Each row's own labels are compared with the official
  record (scores as float32, heatmaps pixel by pixel after decoding, label strings word by
  word); a difference is a label_mismatch (kept with the official labels; the report names the
  fields). Rows whose uid the label file lacks are unknown_filename, later rows of a uid
  already used are duplicate_row (neither is used); official records without a row are
  missing_image. Keys are record indices.
"""

import collections
from collections.abc import Callable, Iterator

import numpy as np

from rahf_jax import features
from rahf_jax.data import build_report
from rahf_jax.data.richhf18k import column_map, label_records, media_checks, mirror_tables

MakeExample = Callable[[label_records.LabelRecord, bytes, str, build_report.SplitReport], dict]
HEATMAP_KEYS = tuple(features.HEATMAP_SOURCE_KEYS.values())


def index_label_file(label_path: str, report: build_report.SplitReport) -> dict:
  """{uid: [(record index, serialized record)]} of an official label file, counting its
  records, malformed records and duplicate uids in `report`."""
  by_uid = collections.defaultdict(list)
  for index, serialized in enumerate(label_records.read_tfrecord(label_path)):
    report.label_records += 1
    try:
      uid = label_records.parse_record(serialized).uid
    except (KeyError, ValueError):
      report.add("malformed_record", f"record#{index}")
      continue
    if uid in by_uid:
      report.add("duplicate_uid", uid)
    by_uid[uid].append((index, serialized))
  return by_uid


def _text(value) -> str | None:
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  return None if value is None else str(value)


def table_record(row: mirror_tables.TableRow) -> label_records.LabelRecord:
  """The row's labels, decoded like an official record (KeyError/ValueError as there)."""
  values = {key: row.cells[key] for key in label_records.OFFICIAL_KEYS}
  for key in HEATMAP_KEYS:  # a mirror may store the maps as Image structs too
    values[key] = column_map.image_bytes(values[key])
  return label_records.record_from_fields(values)


def _pixels(data: bytes) -> np.ndarray | None:
  stored, _ = media_checks.check_heatmap(data)
  return None if stored is None else media_checks.decode_grey(stored)


def mismatched_fields(table: label_records.LabelRecord, official: label_records.LabelRecord):
  """The official keys whose values differ between a table row and the official record."""
  out = [
    key
    for key in label_records.FLOAT_KEYS
    if np.float32(table.scores[key]) != np.float32(official.scores[key])
  ]
  for key, a, b in zip(
    HEATMAP_KEYS,
    (table.artifact_map, table.misalignment_map),
    (official.artifact_map, official.misalignment_map),
    strict=True,
  ):
    if a != b:
      pa, pb = _pixels(a), _pixels(b)
      if pa is None or pb is None or not np.array_equal(pa, pb):
        out.append(key)
  if table.label_string.split() != official.label_string.split():
    out.append(features.LABELS_SOURCE_KEY)
  return out


def _example(record, row, report, make_example: MakeExample):
  """The example of `record` with the row's image and caption, or None (counted)."""
  uid = record.uid
  if row.image is None:
    report.add("missing_image", uid)
    return None
  caption = _text(row.cells["caption"])
  if caption is None or not caption.strip():
    report.add("missing_caption", uid)
    return None
  image, issue = media_checks.check_image(row.image)
  if issue:
    report.add(issue, uid)
  if image is None:
    return None
  return make_example(record, image, caption, report)


def iter_table_examples(rows, report, make_example: MakeExample) -> Iterator[tuple[int, dict]]:
  """(row number, example) for a split without an official label file: the rows are the labels."""
  report.table_rows = 0
  seen = set()
  for row in rows:
    report.table_rows += 1
    report.label_records += 1
    try:
      record = table_record(row)
    except (KeyError, ValueError):
      filename = _text(row.cells.get("filename"))
      uid = label_records.uid_from_filename(filename) if filename else ""
      report.add("malformed_record", uid or f"row#{row.index}")
      continue
    if record.uid in seen:
      report.add("duplicate_uid", record.uid)
    seen.add(record.uid)
    example = _example(record, row, report, make_example)
    if example is not None:
      report.examples_written += 1
      yield row.index, example


def _mismatch_detail(row, official) -> str | None:
  try:
    fields = mismatched_fields(table_record(row), official)
  except KeyError as e:
    return f"{e.args[0]} absent"
  except ValueError as e:
    return str(e)
  return ", ".join(fields) or None


def iter_checked_examples(
  rows, label_path: str, report, make_example: MakeExample
) -> Iterator[tuple[int, dict]]:
  """(record index, example) for a split with an official label file: official labels, the
  table's images and captions, each row's labels cross-checked."""
  by_uid = index_label_file(label_path, report)
  report.table_rows = 0
  used = set()
  for row in rows:
    report.table_rows += 1
    filename = _text(row.cells["filename"])
    uid = label_records.uid_from_filename(filename) if filename else ""
    if uid not in by_uid:
      report.add("unknown_filename", uid or f"row#{row.index}")
      continue
    if uid in used:
      report.add("duplicate_row", uid)
      continue
    used.add(uid)
    for index, serialized in by_uid[uid]:
      official = label_records.parse_record(serialized)
      detail = _mismatch_detail(row, official)
      if detail:
        report.add("label_mismatch", uid, detail=detail)
      example = _example(official, row, report, make_example)
      if example is not None:
        report.examples_written += 1
        yield index, example
  for uid in sorted(set(by_uid) - used):
    for _ in by_uid[uid]:
      report.add("missing_image", uid)
