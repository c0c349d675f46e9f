"""Pluggable sources of Pick-a-Pic images and prompts for the RichHF-18K build.

RichHF-18K ships labels only; images and prompts come from Pick-a-Pic v1. Two
layouts are accepted inside the build's manual_dir:

1. `pickapic/*.parquet`: Pick-a-Pic-style parquet shards (any number, any names, also in
   subfolders of pickapic/, e.g. a symlinked Hugging Face `data/` folder)
   with at least the columns `caption`, `image_0_uid`, `image_1_uid`, `jpg_0`,
   `jpg_1` (the Hugging Face `yuvalkirstain/pickapic_v1` layout; a labelled image
   may be on either side of a row). A re-upload that names them differently is read
   through `<manual_dir>/columns.json` (rahf_jax.data.richhf18k.column_map, preset
   `pickapic_v1`); an image cell may be raw bytes or a Hugging Face Image struct.
   About 190 GB for the real data, so it is never loaded whole: one index pass reads
   only the two uid columns, row group by row group; the data pass reads `caption` and
   one `jpg_*` column of only the row groups that hold a wanted uid. Progress is logged.
2. `images/<uid>.<ext>` (jpg, jpeg, png, webp, bmp or gif) plus a captions file
   `captions.jsonl` in manual_dir: one JSON object per line,
   `{"uid": "<uid>", "caption": "<prompt>"}`.

Both sources yield `(uid, encoded image bytes, caption)` for every wanted uid that has an
image; caption is None when the source has none for the uid (no captions.jsonl line, a null
caption). A uid whose image cell is null is not yielded (the builder counts it missing).
Bytes and captions are passed on as given (validation and counting is the builder's job).

All-in-one mirror tables, which carry the labels too, are read by
rahf_jax.data.richhf18k.mirror_tables, not here.
"""

import collections
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator

from rahf_jax.data.richhf18k import build_errors, column_map

PARQUET_DIR = "pickapic"
IMAGES_DIR = "images"
CAPTIONS_FILE = "captions.jsonl"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
PARQUET_COLUMNS = ("caption", "image_0_uid", "image_1_uid", "jpg_0", "jpg_1")

LAYOUT_HELP = (
  "expected in manual_dir: either pickapic/*.parquet (columns caption, image_0_uid, "
  "image_1_uid, jpg_0, jpg_1) or images/<uid>.<ext> plus captions.jsonl "
  '(one {"uid": ..., "caption": ...} per line), or all-in-one mirror tables '
  "tables/<split>*.parquet"
)


def _as_text(value) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  return "" if value is None else str(value)


def _caption(value) -> str | None:
  """A caption as text, None kept as None (the source has no caption)."""
  return None if value is None else _as_text(value)


@dataclasses.dataclass(frozen=True)
class _Location:
  file_index: int
  row_group: int
  row: int
  side: int  # 0 -> jpg_0, 1 -> jpg_1


class ParquetImageSource:
  """Pick-a-Pic-style parquet shards, streamed with column projection."""

  def __init__(
    self,
    files: Iterable[str],
    log_every_s: float = 30.0,
    columns: column_map.ColumnMap | None = None,
  ):
    """`columns`: role -> column (default: preset pickapic_v1, the v1 names)."""
    self.files = sorted(os.fspath(f) for f in files)
    if not self.files:
      raise FileNotFoundError(f"No parquet shards given; {LAYOUT_HELP}.")
    preset = dict(column_map.PRESETS["pickapic_v1"][1])
    self.columns = columns or column_map.ColumnMap(
      column_map.PICKAPIC_LAYOUT, "pickapic_v1", preset, f"manual_dir/{column_map.COLUMNS_FILE}"
    )
    self._col = self.columns.columns
    self._log_every_s = log_every_s
    self._index: dict[str, _Location] | None = None
    self._indexed_uids: frozenset[str] = frozenset()

  def describe(self) -> str:
    where = os.path.dirname(self.files[0])
    return f"{len(self.files)} parquet shard(s) under {where} ({self.columns.describe()})"

  def index(self, wanted_uids: Iterable[str]) -> dict[str, _Location]:
    """Finds where each wanted uid lives, reading only the two uid columns.

    The first occurrence of a uid wins (Pick-a-Pic repeats images across pairs).
    """
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

    wanted = frozenset(wanted_uids)
    if self._index is not None and wanted <= self._indexed_uids:
      return self._index
    found: dict[str, _Location] = {}
    start = last_log = time.time()
    rows_seen = 0
    for file_index, path in enumerate(self.files):
      pf = pq.ParquetFile(path)
      column_map.check_schema(path, pf.schema_arrow, self.columns)
      uid_columns = [self._col["image_0_uid"], self._col["image_1_uid"]]
      for rg in range(pf.num_row_groups):
        table = pf.read_row_group(rg, columns=sorted(set(uid_columns)))
        for side, column in enumerate(uid_columns):
          for row, uid in enumerate(table.column(column).to_pylist()):
            uid = _as_text(uid)
            if uid in wanted and uid not in found:
              found[uid] = _Location(file_index, rg, row, side)
        rows_seen += table.num_rows
        now = time.time()
        if now - last_log > self._log_every_s:
          last_log = now
          logging.info(
            "Pick-a-Pic index: shard %d/%d, %d rows scanned, %d/%d uids found, %.0fs",
            file_index + 1,
            len(self.files),
            rows_seen,
            len(found),
            len(wanted),
            now - start,
          )
      if len(found) == len(wanted):
        break
    logging.info(
      "Pick-a-Pic index done: %d/%d uids found in %d rows (%.1fs).",
      len(found),
      len(wanted),
      rows_seen,
      time.time() - start,
    )
    self._index, self._indexed_uids = found, wanted
    return found

  def iter_images(self, wanted_uids: Iterable[str]) -> Iterator[tuple[str, bytes, str | None]]:
    """Yields (uid, image bytes, caption or None) for every wanted uid present, shard order."""
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

    wanted = set(wanted_uids)
    index = self.index(wanted)
    by_group = collections.defaultdict(list)
    for uid in wanted:
      if uid in index:
        loc = index[uid]
        by_group[(loc.file_index, loc.row_group)].append((uid, loc))
    total = sum(len(items) for items in by_group.values())
    start = last_log = time.time()
    done = 0
    for (file_index, rg), items in sorted(by_group.items()):
      sides = sorted({loc.side for _, loc in items})
      names = {s: self._col[f"jpg_{s}"] for s in sides}
      columns = sorted({self._col["caption"], *names.values()})
      table = pq.ParquetFile(self.files[file_index]).read_row_group(rg, columns=columns)
      captions = table.column(self._col["caption"])
      images = {s: table.column(names[s]) for s in sides}
      for uid, loc in sorted(items, key=lambda item: item[1].row):
        image = column_map.image_bytes(images[loc.side][loc.row].as_py())
        if image is not None:
          yield uid, image, _caption(captions[loc.row].as_py())
      done += len(items)
      now = time.time()
      if now - last_log > self._log_every_s:
        last_log = now
        logging.info("Pick-a-Pic read: %d/%d images, %.0fs", done, total, now - start)


class FolderImageSource:
  """A folder of `<uid>.<ext>` images plus `captions.jsonl` ({"uid", "caption"} per line)."""

  def __init__(self, images_dir: str, captions_file: str):
    self.images_dir = os.fspath(images_dir)
    self.captions_file = os.fspath(captions_file)
    self._captions: dict[str, str | None] | None = None
    self._paths: dict[str, str] | None = None

  def describe(self) -> str:
    return f"image folder {self.images_dir} with {self.captions_file}"

  def _load(self) -> None:
    if self._captions is not None:
      return
    captions: dict[str, str | None] = {}
    with open(self.captions_file, encoding="utf-8") as f:
      for line_no, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
          captions[str(record["uid"])] = _caption(record["caption"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
          raise ValueError(
            f"{self.captions_file}:{line_no}: expected a JSON object with keys uid and caption "
            f"({e})."
          ) from e
    paths = {}
    for name in sorted(os.listdir(self.images_dir)):
      stem, ext = os.path.splitext(name)
      if ext.lower() in IMAGE_EXTENSIONS:
        paths.setdefault(stem, os.path.join(self.images_dir, name))
    self._captions, self._paths = captions, paths

  def index(self, wanted_uids: Iterable[str]) -> dict[str, str]:
    """uid -> image path, for wanted uids that have an image (with or without a caption)."""
    self._load()
    return {u: self._paths[u] for u in wanted_uids if u in self._paths}

  def iter_images(self, wanted_uids: Iterable[str]) -> Iterator[tuple[str, bytes, str | None]]:
    """Yields (uid, image bytes, caption or None) for every wanted uid with an image."""
    for uid, path in sorted(self.index(wanted_uids).items()):
      with open(path, "rb") as f:
        yield uid, f.read(), self._captions.get(uid)


def find_image_source(manual_dir: str) -> ParquetImageSource | FolderImageSource:
  """Picks the image source present in `manual_dir` (parquet first), or raises."""
  manual_dir = os.fspath(manual_dir)
  parquet_dir = os.path.join(manual_dir, PARQUET_DIR)
  if os.path.isdir(parquet_dir):
    files = [
      os.path.join(root, n)
      for root, _, names in os.walk(parquet_dir, followlinks=True)
      for n in names
      if n.endswith(".parquet")
    ]
    if files:
      columns = column_map.column_map(manual_dir, column_map.PICKAPIC_LAYOUT)
      return ParquetImageSource(files, columns=columns)
  images_dir = os.path.join(manual_dir, IMAGES_DIR)
  captions = os.path.join(manual_dir, CAPTIONS_FILE)
  if os.path.isdir(images_dir) and os.path.isfile(captions):
    if column_map.read_option(manual_dir) is not None:
      raise build_errors.SourceLayoutError(
        f"richhf18k: {os.path.join(manual_dir, column_map.COLUMNS_FILE)} maps parquet columns, "
        f"but manual_dir holds no tables/*.parquet or pickapic/*.parquet, only {IMAGES_DIR}/ "
        f"and {CAPTIONS_FILE}; remove it or add the parquet files."
      )
    return FolderImageSource(images_dir, captions)
  raise FileNotFoundError(f"No Pick-a-Pic images found in manual_dir {manual_dir}; {LAYOUT_HELP}.")
