"""All-in-one RichHF-18K mirror tables: parquet files that hold image, caption and labels.

Since Pick-a-Pic v1 left the Hugging Face hub, RichHF-18K circulates as parquet tables with
one row per labelled image: the image (raw bytes or a Hugging Face Image struct
{"bytes", "path"}), the caption, the RichHF-18K `filename` and the eight label fields (scores
as floats, heatmaps as encoded PNG bytes, `prompt_misalignment_label` as a string). Put them
under `<manual_dir>/tables/` (any names, subfolders allowed; a symlinked Hugging Face `data/`
folder works). Each file's split comes from its name or, failing that, its folder's: the
leading word `train`, `dev` or `validation` (both mean dev) or `test`, e.g.
`train-00000-of-00004.parquet`, `validation.parquet`, `test/0000.parquet`. Column names come
from column_map (preset `richhf18k`, overridable in columns.json).

Files are streamed in batches of rows (only the mapped columns are read), so a table never has
to fit in memory. Every file's schema is checked before the build starts.
"""

import dataclasses
import os
import re
from collections.abc import Iterator

from rahf_jax.data.richhf18k import build_errors, column_map

TABLES_DIR = "tables"
SPLIT_WORDS = {"train": "train", "dev": "dev", "validation": "dev", "test": "test"}
BATCH_ROWS = 32  # rows per read: a few MB of images at Pick-a-Pic sizes
_LEADING_WORD = re.compile(r"[A-Za-z]+")


@dataclasses.dataclass
class TableRow:
  """One row: its number in the split (over all the split's files, in file order), its cells
  by role (image cells reduced to their bytes), and the file it came from."""

  index: int
  cells: dict
  path: str

  @property
  def image(self) -> bytes | None:
    return self.cells["image"]


def split_of(relative_path: str) -> str | None:
  """The split a table file belongs to, from its name, else its folders' (innermost first)."""
  parts = relative_path.replace(os.sep, "/").split("/")
  for part in reversed(parts):
    word = _LEADING_WORD.match(part)
    if word and word.group(0).lower() in SPLIT_WORDS:
      return SPLIT_WORDS[word.group(0).lower()]
  return None


class MirrorTables:
  """The all-in-one tables under `<manual_dir>/tables/`, by split."""

  def __init__(self, root: str, files: dict[str, list[str]], cmap: column_map.ColumnMap):
    self.root = root
    self.files = files
    self.column_map = cmap

  def describe(self) -> str:
    counts = ", ".join(f"{s} {len(self.files.get(s, []))}" for s in ("train", "dev", "test"))
    return (
      f"all-in-one parquet tables under {self.root} ({counts} file(s); "
      f"{self.column_map.describe()})"
    )

  def iter_rows(self, split: str) -> Iterator[TableRow]:
    """Yields the rows of `split`, file by file, reading only the mapped columns."""
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

    columns = self.column_map.columns
    index = 0
    for path in self.files.get(split, []):
      table = pq.ParquetFile(path)
      names = sorted(set(columns.values()))
      for batch in table.iter_batches(batch_size=BATCH_ROWS, columns=names):
        for row in batch.to_pylist():
          cells = {role: row[column] for role, column in columns.items()}
          cells["image"] = column_map.image_bytes(cells["image"])
          yield TableRow(index, cells, path)
          index += 1


def find_tables(manual_dir: str) -> MirrorTables | None:
  """The tables under `<manual_dir>/tables/`, schemas checked; None when there are none.

  Raises build_errors.SourceLayoutError (one line) for a file whose split cannot be told or
  that lacks a mapped column.
  """
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  root = os.path.join(os.fspath(manual_dir), TABLES_DIR)
  if not os.path.isdir(root):
    return None
  paths = sorted(
    os.path.join(folder, name)
    for folder, _, names in os.walk(root, followlinks=True)
    for name in names
    if name.endswith(".parquet")
  )
  if not paths:
    return None
  cmap = column_map.column_map(manual_dir, column_map.TABLES_LAYOUT)
  files: dict[str, list[str]] = {}
  for path in paths:
    split = split_of(os.path.relpath(path, root))
    if split is None:
      raise build_errors.SourceLayoutError(
        f"richhf18k: cannot tell the split of table {path}: neither its name nor its folder "
        f"starts with train, dev, validation or test; rename it (e.g. train-00000.parquet) or "
        f"move it into a folder named after its split."
      )
    column_map.check_schema(path, pq.read_schema(path), cmap)
    files.setdefault(split, []).append(path)
  return MirrorTables(root, files, cmap)
