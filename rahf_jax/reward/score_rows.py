"""The rows `rahf-jax score` scores: a JSONL manifest, or an image folder with one prompt.

Manifest: one JSON object per line, {"image": PATH, "prompt": TEXT} and optionally "id" (a
unique string; default: the line's 0-based index among the non-blank lines). A relative
PATH is read relative to the manifest's folder. Folder: every regular, non-hidden file in it,
sorted by name, id = the file name; files that are not images become error rows when scored.
"""

import dataclasses
import json
import os


@dataclasses.dataclass(frozen=True)
class ScoreRow:
  """One (image, prompt) pair to score; `path` is `image` resolved for reading."""

  id: str
  image: str
  prompt: str
  path: str


def manifest_rows(manifest: str) -> list[ScoreRow]:
  """The rows of a JSONL manifest (module docstring); one clear error for a bad line."""
  if not os.path.isfile(manifest):
    raise FileNotFoundError(f"manifest {manifest!r} not found; pass a JSONL file to --manifest.")
  base = os.path.dirname(os.path.abspath(manifest))
  rows: list[ScoreRow] = []
  seen: set[str] = set()
  with open(manifest, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"manifest {manifest}:{number}"
      try:
        entry = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(
          f"{where} is not valid JSON ({e.msg}); write one JSON object per line."
        ) from e
      if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("image"), str)
        or not isinstance(entry.get("prompt"), str)
      ):
        raise ValueError(
          f'{where} needs string "image" and "prompt" fields, e.g. '
          '{"image": "a.png", "prompt": "a red cube"}.'
        )
      row_id = str(entry.get("id", len(rows)))
      if row_id in seen:
        raise ValueError(f"{where}: id {row_id!r} is used twice; give every row a unique id.")
      seen.add(row_id)
      image = entry["image"]
      path = image if os.path.isabs(image) else os.path.join(base, image)
      rows.append(ScoreRow(row_id, image, entry["prompt"], path))
  if not rows:
    raise ValueError(f"manifest {manifest!r} has no rows; write one JSON object per line.")
  return rows


def folder_rows(folder: str, prompt: str) -> list[ScoreRow]:
  """One row per regular, non-hidden file of `folder` (sorted), all with `prompt`."""
  if not os.path.isdir(folder):
    raise NotADirectoryError(f"--images {folder!r} is not a folder; pass a folder of images.")
  names = sorted(
    n
    for n in os.listdir(folder)
    if not n.startswith(".") and os.path.isfile(os.path.join(folder, n))
  )
  if not names:
    raise ValueError(f"--images {folder!r} holds no files; pass a folder of images.")
  return [ScoreRow(n, os.path.join(folder, n), prompt, os.path.join(folder, n)) for n in names]
