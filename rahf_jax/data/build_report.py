"""The RichHF-18K build report: per-split counts and the uids behind each problem.

The builder records every odd or bad input here instead of crashing or dropping
it silently; the report is written as JSON next to the prepared dataset
(`<data_dir>/richhf18k/<version>/build_report.json`) and summarised in the log.
JSON layout: {"counts": {split: {label_records, examples_written, skipped, <kind>: n
for each kind seen}}, "splits": {split: {label_records, examples_written, skipped,
"issues": {kind: {"count": n, "uids": [...]}} for every kind}}, "image_source": ...,
"manual_dir": ...}.

Issue kinds (the JSON keys under each split's "issues"):
  missing_image        label record whose uid has no image in the source: skipped
  missing_caption      the uid's image is there but its caption is absent, null, empty or
                       blank (the prompt is a model input): skipped
  undecodable_image    image bytes that do not decode: skipped
  reencoded_image      image decodes but in a format TensorFlow cannot read: re-encoded PNG, kept
  undecodable_heatmap  a heatmap that does not decode: skipped
  heatmap_resized      a heatmap not 512x512: converted to grey and resized (bilinear), kept;
                       the example's heatmap_<type>_resized is True
  heatmap_reencoded    a 512x512 heatmap not stored as 8-bit single-channel PNG: converted
                       (16-bit values scaled to 8 bits), kept; heatmap_<type>_reencoded is True
  label_count_mismatch label count differs from the word count (or unparseable): kept, flagged
  empty_prompt         prompt text with no words (e.g. only punctuation): kept
  non_ascii_prompt     prompt with non-ASCII characters: kept exactly (informational)
  duplicate_uid        uid seen before in the same split: kept (keys are record indices)
  malformed_record     label record that does not parse or lacks an official key: skipped
  label_mismatch       a mirror table row's labels differ from the official record's: kept with
                       the official labels; "details" names the differing fields per uid
Rows of all-in-one mirror tables that no example uses (not label records, so not in "skipped"):
  unknown_filename     a row whose filename is absent or whose uid is not in the split's
                       official label file
  duplicate_row        a row whose uid an earlier row of the split already gave
A split built from mirror tables also reports "table_rows", the rows read.
"""

import collections
import dataclasses
import json
import logging
import os

from etils import epath

SKIPPED_KINDS = (
  "missing_image",
  "missing_caption",
  "undecodable_image",
  "undecodable_heatmap",
  "malformed_record",
)
KEPT_KINDS = (
  "reencoded_image",
  "heatmap_resized",
  "heatmap_reencoded",
  "label_count_mismatch",
  "empty_prompt",
  "non_ascii_prompt",
  "duplicate_uid",
  "label_mismatch",
)
UNUSED_ROW_KINDS = ("unknown_filename", "duplicate_row")
ISSUE_KINDS = SKIPPED_KINDS + KEPT_KINDS + UNUSED_ROW_KINDS
REPORT_FILENAME = "build_report.json"


@dataclasses.dataclass
class SplitReport:
  """Counts and affected uids for one split."""

  split: str
  label_records: int = 0
  examples_written: int = 0
  table_rows: int | None = None  # rows read from mirror tables (None: not built from tables)
  issues: dict[str, list[str]] = dataclasses.field(
    default_factory=lambda: collections.defaultdict(list)
  )
  details: dict[str, dict[str, str]] = dataclasses.field(
    default_factory=lambda: collections.defaultdict(dict)
  )

  def add(self, kind: str, uid: str, detail: str | None = None) -> None:
    """Records that `uid` shows issue `kind` (and what exactly, if `detail`)."""
    if kind not in ISSUE_KINDS:
      raise ValueError(f"Unknown build issue kind {kind!r}; known: {ISSUE_KINDS}.")
    self.issues[kind].append(uid)
    if detail:
      self.details[kind][uid] = detail

  @property
  def skipped(self) -> int:
    return sum(len(self.issues.get(k, [])) for k in SKIPPED_KINDS)

  def _totals(self) -> dict[str, int]:
    out = {
      "label_records": self.label_records,
      "examples_written": self.examples_written,
      "skipped": self.skipped,
    }
    if self.table_rows is not None:
      out["table_rows"] = self.table_rows
    return out

  def to_json(self) -> dict:
    """A JSON-ready dict: totals, then per kind {count, uids} (+ details: {uid: what})."""
    issues = {}
    for k in ISSUE_KINDS:
      issues[k] = {"count": len(self.issues.get(k, [])), "uids": list(self.issues.get(k, []))}
      if self.details.get(k):
        issues[k]["details"] = dict(self.details[k])
    return {**self._totals(), "issues": issues}

  def counts(self) -> dict[str, int]:
    """Totals plus the non-zero issue counts (the report's short form)."""
    out = self._totals()
    out.update({k: len(self.issues[k]) for k in ISSUE_KINDS if self.issues.get(k)})
    return out

  def summary(self) -> str:
    """One log line: written/records and the non-zero issue counts."""
    counts = ", ".join(f"{k}={len(v)}" for k, v in self.issues.items() if v) or "no issues"
    rows = "" if self.table_rows is None else f" ({self.table_rows} table rows)"
    return (
      f"richhf18k[{self.split}]: wrote {self.examples_written}/{self.label_records} "
      f"label records{rows}; {counts}"
    )


def write_report(
  reports: dict[str, SplitReport],
  directory: str,
  extra: dict | None = None,
  log_splits: tuple[str, ...] | None = None,
  final_directory: str | None = None,
) -> str:
  """Writes `reports` as JSON under `directory`; returns the file path.

  Logs the summary of `log_splits` (default: all) and where the report will be found
  (`final_directory`, when the build renames `directory` at its end).
  """
  payload = {
    "counts": {name: r.counts() for name, r in reports.items()},
    "splits": {name: r.to_json() for name, r in reports.items()},
  }
  if extra:
    payload.update(extra)
  path = epath.Path(directory) / REPORT_FILENAME
  path.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
  for name in reports if log_splits is None else log_splits:
    logging.info(reports[name].summary())
  final = epath.Path(final_directory or directory) / REPORT_FILENAME
  logging.info("richhf18k build report: %s", final)
  return os.fspath(path)


def read_report(directory: str) -> dict:
  """Reads the JSON report written by `write_report` from `directory`."""
  return json.loads((epath.Path(directory) / REPORT_FILENAME).read_text(encoding="utf-8"))
