"""One self-contained static HTML page of scored rows: overlays, scores, marked words, ranks.

Overlay thumbnails (image | implausibility | misalignment, rahf_jax.inference.overlays) are
written as PNG files into a folder beside the page while rows are scored (`save_thumbnail`), so
that a resumed run keeps them; `write_gallery` embeds them into the page as data URIs, so the
one HTML file is all a reader needs.
"""

import base64
import html
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from rahf_jax import features as F
from rahf_jax.inference.overlays import compose_overlay
from rahf_jax.reward.score_result import prompt_words

THUMBNAIL_SIDE = 192

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin:24px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;max-width:640px}
.card img{max-width:100%;display:block}
.rank{font-weight:bold;font-size:15px}
table{border-collapse:collapse;margin:4px 0} td{padding:1px 8px 1px 0;font-size:13px}
.prompt{font-size:13px} mark{background:#fbb;padding:0 2px}
.id{color:#777;font-size:11px;word-break:break-all}
.errors{background:#fee;border:1px solid #e99;padding:8px}
"""


def thumbnails_dir(gallery_path: str) -> str:
  """The folder of overlay PNGs for the page at `gallery_path` (`<stem>_files`)."""
  return os.path.splitext(gallery_path)[0] + "_files"


def safe_name(row_id: str) -> str:
  """A file name for a row id (characters other than letters, digits, `._-` become `_`)."""
  name = re.sub(r"[^A-Za-z0-9._-]", "_", str(row_id)).lstrip(".") or "row"
  return name[:120]


def save_thumbnail(path: str, image: np.ndarray, heatmaps: Mapping[str, np.ndarray]) -> None:
  """Writes the overlay strip of one row, the image scaled to THUMBNAIL_SIDE on its long side."""
  h, w = image.shape[:2]
  scale = THUMBNAIL_SIDE / max(h, w)
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
  maps = {
    k: np.asarray(Image.fromarray(np.asarray(v, np.float32), mode="F").resize(size, Image.BILINEAR))
    for k, v in heatmaps.items()
  }
  os.makedirs(os.path.dirname(path), exist_ok=True)
  compose_overlay(small, maps).save(path, format="PNG")


def _data_uri(path: str) -> str | None:
  if not os.path.isfile(path):
    return None
  with open(path, "rb") as f:
    return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def marked_prompt_html(prompt: str, misaligned: Sequence[str] | None) -> str:
  """The prompt, HTML-escaped, with each misaligned word wrapped in <mark>."""
  if not misaligned:
    return html.escape(prompt)
  pool: dict[str, int] = {}
  for w in misaligned:
    pool[w] = pool.get(w, 0) + 1
  out = []
  for piece in re.split(r"([,.?!\":; ])", prompt):
    if piece in prompt_words(piece) and pool.get(piece, 0) > 0:
      pool[piece] -= 1
      out.append(f"<mark>{html.escape(piece)}</mark>")
    else:
      out.append(html.escape(piece))
  return "".join(out)


def _card(row: Mapping[str, Any], thumbs: str) -> str:
  parts = ['<div class="card">']
  if "rank" in row:
    parts.append(f'<div class="rank">#{row["rank"]} &middot; reward {row["reward"]:.3f}</div>')
  uri = _data_uri(os.path.join(thumbs, safe_name(row["id"]) + ".png"))
  parts.append(
    f'<img alt="overlay" src="{uri}">' if uri else "<p>(no overlay: scored without --gallery)</p>"
  )
  cells = "".join(f"<tr><td>{s}</td><td>{row['scores'][s]:.3f}</td></tr>" for s in F.SCORE_TYPES)
  parts.append(f"<table>{cells}</table>")
  marked = marked_prompt_html(row["prompt"], row.get("misaligned_words"))
  parts.append(f'<div class="prompt">{marked}</div>')
  parts.append(f'<div class="id">{html.escape(str(row["id"]))}: {html.escape(row["image"])}</div>')
  parts.append("</div>")
  return "".join(parts)


def write_gallery(path: str, rows: Sequence[Mapping[str, Any]], title: str = "RAHF scores") -> str:
  """Writes the page: error rows first, then one section per prompt (ranked when ranks exist)."""
  thumbs = thumbnails_dir(path)
  ok = [r for r in rows if "error" not in r]
  errors = [r for r in rows if "error" in r]
  body = [f"<h1>{html.escape(title)}: {len(ok)} scored, {len(errors)} unreadable</h1>"]
  if errors:
    items = "".join(
      f"<li>{html.escape(str(r['id']))}: {html.escape(r['error'])}</li>" for r in errors
    )
    body.append(f'<div class="errors"><b>Not scored</b><ul>{items}</ul></div>')
  groups: dict[str, list[Mapping[str, Any]]] = {}
  for r in ok:
    groups.setdefault(r["prompt"], []).append(r)
  for prompt, members in groups.items():
    if all("rank" in r for r in members):
      members = sorted(members, key=lambda r: r["rank"])
    body.append(f"<h2>{html.escape(prompt)} ({len(members)})</h2>")
    body.append('<div class="cards">' + "".join(_card(r, thumbs) for r in members) + "</div>")
  page = (
    f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
    f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
  )
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)
  return path
