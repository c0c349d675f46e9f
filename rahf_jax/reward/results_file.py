"""The resumable results file of `rahf-jax score`: JSON lines, appended one batch at a time.

Each row is written whole and flushed (and fsynced) with its batch, so an interrupted run
leaves complete rows plus at most one partial last line. `read_rows` drops that partial line
(truncating the file to its last complete row), and the next run skips every id already in
the file: no row is scored or written twice.
"""

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any


def read_rows(path: str) -> list[dict[str, Any]]:
  """The complete rows of `path` ([] if it does not exist); a partial last line is cut off."""
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    data = f.read()
  keep = data.rfind(b"\n") + 1  # bytes up to and including the last newline
  if keep < len(data):
    with open(path, "r+b") as f:
      f.truncate(keep)
  rows = []
  for number, line in enumerate(data[:keep].decode("utf-8").splitlines(), start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(
        f"results file {path}:{number} is not valid JSON ({e.msg}); fix or delete that line, "
        "or pass a new --out."
      ) from e
    if not isinstance(row, dict) or "id" not in row:
      raise ValueError(f'results file {path}:{number} has no "id"; pass a new --out.')
    rows.append(row)
  return rows


def append_rows(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
  """Appends `rows` as JSON lines, flushed and fsynced before returning."""
  text = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
  if not text:
    return
  with open(path, "a", encoding="utf-8") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())


def rewrite_rows(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
  """Replaces `path` with `rows` atomically (a temporary file, then os.replace)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps(dict(r), ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
