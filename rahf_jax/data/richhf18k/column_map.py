"""Which parquet column holds what: presets per manual_dir layout, and the columns.json option.

Parquet mirrors of RichHF-18K and Pick-a-Pic v1 name their columns differently. The builder
never guesses a name: it reads each role (what it needs, e.g. `caption`) from the column the
layout's preset names, unless `<manual_dir>/columns.json` names another one:

  {"preset": "richhf18k", "columns": {"caption": "prompt", "filename": "Filename"}}

`preset` is optional (each layout has one default, below); `columns` maps roles to the
table's column names and overrides the preset role by role. Presets, role -> column:

  richhf18k    (tables/*.parquet, all-in-one tables) image, caption, filename and the official
               label keys: aesthetics_score, artifact_score, misalignment_score, overall_score,
               artifact_map, misalignment_map, prompt_misalignment_label
  pickapic_v1  (pickapic/*.parquet, Pick-a-Pic v1 re-uploads) caption, image_0_uid,
               image_1_uid, jpg_0, jpg_1

Value types are read from the parquet schema, not from the names: an image column holds raw
bytes or a Hugging Face Image struct {"bytes", "path"} (its bytes are used); so does a heatmap
column (encoded PNG), checked before the build starts.
"""

import dataclasses
import json
import os

from rahf_jax.data.richhf18k import build_errors, label_records

COLUMNS_FILE = "columns.json"
TABLES_LAYOUT = "tables"
PICKAPIC_LAYOUT = "pickapic"

PRESETS = {
  "richhf18k": (
    TABLES_LAYOUT,
    {"image": "image", "caption": "caption", **{k: k for k in label_records.OFFICIAL_KEYS}},
  ),
  "pickapic_v1": (
    PICKAPIC_LAYOUT,
    {k: k for k in ("caption", "image_0_uid", "image_1_uid", "jpg_0", "jpg_1")},
  ),
}
DEFAULT_PRESET = {TABLES_LAYOUT: "richhf18k", PICKAPIC_LAYOUT: "pickapic_v1"}
# Roles whose column holds an encoded image (raw bytes or a Hugging Face Image struct); checked
# in the schema, so a mirror that stores heatmaps as arrays of numbers stops with one line.
IMAGE_ROLES = ("image", "jpg_0", "jpg_1", "artifact_map", "misalignment_map")


@dataclasses.dataclass(frozen=True)
class ColumnMap:
  """role -> column name for one layout, and where it came from (for messages)."""

  layout: str
  preset: str
  columns: dict[str, str]
  option_path: str  # <manual_dir>/columns.json, present or not

  def describe(self) -> str:
    overridden = {r: c for r, c in self.columns.items() if PRESETS[self.preset][1][r] != c}
    extra = f", columns.json: {json.dumps(overridden)}" if overridden else ""
    return f"preset {self.preset}{extra}"

  def fix_hint(self, role: str) -> str:
    """How to point `role` at another column, for one-line errors."""
    return (
      f'name the column in {self.option_path} as {{"columns": {{"{role}": "<column>"}}}} '
      f"(see rahf_jax/data/richhf18k/README.md)"
    )


def _error(path: str, what: str) -> build_errors.SourceLayoutError:
  return build_errors.SourceLayoutError(
    f"richhf18k: {path}: {what}; expected "
    '{"preset": "<name>", "columns": {"<role>": "<column>", ...}} with preset one of '
    f"{sorted(PRESETS)} (see rahf_jax/data/richhf18k/README.md)."
  )


def read_option(manual_dir: str) -> dict | None:
  """The parsed columns.json of `manual_dir` (checked for shape), or None when absent."""
  path = os.path.join(os.fspath(manual_dir), COLUMNS_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      option = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise _error(path, f"not readable as JSON ({build_errors.one_line(e)})") from None
  if not isinstance(option, dict):
    raise _error(path, f"a JSON {type(option).__name__}, not an object")
  unknown = sorted(set(option) - {"preset", "columns"})
  if unknown:
    raise _error(path, f"unknown key(s) {unknown}")
  if "preset" in option and option["preset"] not in PRESETS:
    raise _error(path, f"unknown preset {option['preset']!r}")
  columns = option.get("columns", {})
  if not isinstance(columns, dict) or not all(isinstance(v, str) and v for v in columns.values()):
    raise _error(path, '"columns" must map role names to non-empty column names')
  return option


def column_map(manual_dir: str, layout: str) -> ColumnMap:
  """The column map of `layout` in `manual_dir`: its preset, overridden by columns.json."""
  path = os.path.join(os.fspath(manual_dir), COLUMNS_FILE)
  option = read_option(manual_dir) or {}
  preset = option.get("preset", DEFAULT_PRESET[layout])
  preset_layout, columns = PRESETS[preset]
  if preset_layout != layout:
    right = sorted(p for p, (lay, _) in PRESETS.items() if lay == layout)
    raise build_errors.SourceLayoutError(
      f"richhf18k: {path} names preset {preset!r}, which is for {preset_layout}/*.parquet, but "
      f"manual_dir holds {layout}/*.parquet; use preset {' or '.join(right)} (or drop 'preset')."
    )
  unknown = sorted(set(option.get("columns", {})) - set(columns))
  if unknown:
    raise build_errors.SourceLayoutError(
      f"richhf18k: {path} maps unknown role(s) {unknown}; the roles of preset {preset} are "
      f"{list(columns)}."
    )
  return ColumnMap(layout, preset, {**columns, **option.get("columns", {})}, path)


def _holds_images(arrow_type) -> bool:
  """True for binary columns and Hugging Face Image structs ({"bytes": binary, "path": ...})."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top

  if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
    return True
  if pa.types.is_struct(arrow_type) and arrow_type.get_field_index("bytes") >= 0:
    return _holds_images(arrow_type.field("bytes").type)
  return False


def check_schema(path: str, schema, cmap: ColumnMap) -> None:
  """Raises one line naming the first role whose column the table lacks or cannot hold, and
  the fix. `schema` is the table's pyarrow schema."""
  names = list(schema.names)
  for role, column in cmap.columns.items():
    if column not in names:
      raise build_errors.SourceLayoutError(
        f"richhf18k: {path} has no column {column!r} (role {role}, {cmap.describe()}); its "
        f"columns are {names}; {cmap.fix_hint(role)}."
      )
  for role in IMAGE_ROLES:
    if role in cmap.columns:
      arrow_type = schema.field(cmap.columns[role]).type
      if not _holds_images(arrow_type):
        raise build_errors.SourceLayoutError(
          f"richhf18k: {path} column {cmap.columns[role]!r} (role {role}) is {arrow_type}, not "
          f'image bytes (binary) or an Image struct {{"bytes", "path"}}; {cmap.fix_hint(role)}.'
        )


def image_bytes(value) -> bytes | None:
  """The encoded bytes of an image cell: raw bytes, or an Image struct's "bytes" (None if none)."""
  if isinstance(value, dict):
    value = value.get("bytes")
  return None if value is None else bytes(value)
