"""`rahf-jax score`: score (image, prompt) pairs at scale into a resumable JSONL file.

  rahf-jax score --workdir W --manifest pairs.jsonl --out results.jsonl [--rank] [--words] \
      [--masks DIR] [--gallery PATH.html] [--batch_size N] [--weights overall=1] [--best]
  rahf-jax score --workdir W --images DIR --prompt "a red cube" --out results.jsonl ...

Each results row: {"id", "image", "prompt", "scores": {4 scores}} plus, with --words,
"misaligned_words" and "marked_prompt"; with --masks, "mask" (the PNG written); with --rank,
"rank" (1 = best within its prompt) and "reward" (the --weights mix), and a ranks file
`<out stem>.ranks.jsonl` with one line per prompt. An image that is missing or unreadable gives
an error row {"id", "image", "prompt", "error"}, is counted and listed in the summary line, and
is not retried by a resumed run (delete its row to retry it). An interrupted run, started again
with the same flags, continues after the rows already in --out.

Flags defined here are the command's own; --workdir, --out, --prompt and --best are cli.py's.
"""

import logging
import os
import time
from typing import Any

from absl import flags

_MANIFEST = flags.DEFINE_string("manifest", None, "score: JSONL of {image, prompt[, id]} rows")
_IMAGES = flags.DEFINE_string("images", None, "score: folder of images (all with --prompt)")
_RANK = flags.DEFINE_bool("rank", False, "score: rank the images of each prompt")
_MASKS = flags.DEFINE_string("masks", None, "score: folder for inpainting-mask PNGs")
_GALLERY = flags.DEFINE_string("gallery", None, "score: write a static HTML gallery here")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "score: pairs per model call")
_WORDS = flags.DEFINE_bool("words", False, "score: decode the misaligned words (slower)")
_WEIGHTS = flags.DEFINE_string("weights", "overall=1", "score: rank by this mix, e.g. overall=1")
_MASK_THRESHOLD = flags.DEFINE_float("mask_threshold", 0.3, "score: --masks heat threshold")
_MASK_DILATION = flags.DEFINE_integer("mask_dilation", -1, "score: --masks dilation (-1: auto)")
_MASK_MIN_AREA = flags.DEFINE_integer("mask_min_area", -1, "score: --masks min area (-1: auto)")


def _hms(seconds: float) -> str:
  s = int(max(seconds, 0))
  return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def ranks_path(out: str) -> str:
  """`<out stem>.ranks.jsonl` beside the results file."""
  return os.path.splitext(out)[0] + ".ranks.jsonl"


def _result_row(row, result, mask_path: str | None) -> dict[str, Any]:
  out = {"id": row.id, "image": row.image, "prompt": row.prompt, **result.to_json()}
  if mask_path:
    out["mask"] = mask_path
  return out


def _add_ranks(rows: list[dict[str, Any]], weights) -> list[dict[str, Any]]:
  """Sets "rank" and "reward" on every scored row (ranked within its prompt); ranks per prompt."""
  from rahf_jax.reward.ranking import combined_score  # noqa: PLC0415

  groups: dict[str, list[dict[str, Any]]] = {}
  for r in rows:
    r.pop("rank", None)
    r.pop("reward", None)
    if "error" not in r:
      groups.setdefault(r["prompt"], []).append(r)
  ranks = []
  for prompt, members in groups.items():
    for r in members:
      r["reward"] = combined_score(r["scores"], weights)
    ordered = sorted(members, key=lambda r: -r["reward"])  # stable: ties keep file order
    for i, r in enumerate(ordered, start=1):
      r["rank"] = i
    ranks.append(
      {
        "prompt": prompt,
        "ranking": [
          {"rank": r["rank"], "id": r["id"], "image": r["image"], "reward": r["reward"]}
          for r in ordered
        ],
      }
    )
  return ranks


def run_score(
  workdir: str,
  out: str,
  *,
  manifest: str | None = None,
  images: str | None = None,
  prompt: str | None = None,
  rank: bool = False,
  masks: str | None = None,
  gallery: str | None = None,
  batch_size: int = 16,
  words: bool = False,
  best: bool | None = None,
  weights: str | dict = "overall=1",
  mask_threshold: float = 0.3,
  mask_dilation: int | None = None,
  mask_min_area: int | None = None,
  scorer: Any = None,
) -> dict[str, Any]:
  """Scores every row not yet in `out` (module docstring); returns the run's summary.

  `scorer`: an existing rahf_jax.reward.Scorer to use instead of loading `workdir`.
  """
  from rahf_jax.reward import gallery as gallery_lib  # noqa: PLC0415
  from rahf_jax.reward import ranking, results_file, score_rows  # noqa: PLC0415
  from rahf_jax.reward.image_inputs import ImageInputError, load_image  # noqa: PLC0415
  from rahf_jax.reward.inpainting import inpainting_mask  # noqa: PLC0415

  if bool(manifest) == bool(images):
    raise ValueError("`rahf-jax score` needs exactly one of --manifest FILE or --images DIR.")
  if images and not prompt:
    raise ValueError("`rahf-jax score --images DIR` needs --prompt TEXT (the prompt of them all).")
  if int(batch_size) < 1:
    raise ValueError(f"--batch_size must be a positive integer, got {batch_size}.")
  weights = (
    ranking.parse_weights(weights) if isinstance(weights, str) else ranking.check_weights(weights)
  )
  rows = score_rows.manifest_rows(manifest) if manifest else score_rows.folder_rows(images, prompt)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  done = {r["id"]: r for r in results_file.read_rows(out)}
  by_id = {r.id: r for r in rows}
  for row_id, r in done.items():
    if row_id in by_id and (r.get("image"), r.get("prompt")) != (
      by_id[row_id].image,
      by_id[row_id].prompt,
    ):
      raise ValueError(
        f"{out} holds row {row_id!r} for other inputs ({r.get('image')!r}); "
        "it was written for another manifest: pass a new --out."
      )
  todo = [r for r in rows if r.id not in done]
  thumbs = gallery_lib.thumbnails_dir(gallery) if gallery else None
  heatmaps = bool(masks or gallery)
  if todo and scorer is None:
    from rahf_jax.reward.scorer import Scorer  # noqa: PLC0415

    scorer = Scorer.from_workdir(workdir, best=best, batch_size=batch_size)
  if masks:
    os.makedirs(masks, exist_ok=True)
  start, scored = time.perf_counter(), 0
  for first in range(0, len(todo), int(batch_size)):
    chunk = todo[first : first + int(batch_size)]
    loaded, out_rows = [], {}
    for row in chunk:
      try:
        loaded.append((row, load_image(row.path)))
      except ImageInputError as e:
        out_rows[row.id] = {"id": row.id, "image": row.image, "prompt": row.prompt, "error": str(e)}
    if loaded:
      results = scorer.score(
        [p for _, p in loaded],
        [r.prompt for r, _ in loaded],
        batch_size=batch_size,
        heatmaps=heatmaps,
        words=words,
      )
      for (row, pixels), result in zip(loaded, results, strict=True):
        mask_path = None
        if masks:
          mask = inpainting_mask(
            result.implausibility_heatmap, mask_threshold, mask_dilation, mask_min_area
          )
          mask_path = os.path.join(masks, gallery_lib.safe_name(row.id) + ".png")
          from PIL import Image  # noqa: PLC0415

          Image.fromarray(mask.astype("uint8") * 255).save(mask_path)
        if thumbs:
          gallery_lib.save_thumbnail(
            os.path.join(thumbs, gallery_lib.safe_name(row.id) + ".png"), pixels, result.heatmaps
          )
        out_rows[row.id] = _result_row(row, result, mask_path)
    results_file.append_rows(out, [out_rows[r.id] for r in chunk])
    scored += len(chunk)
    rate = scored / max(time.perf_counter() - start, 1e-9)
    logging.info(
      "score: %d/%d rows  %.1f rows/s  ETA %s",
      len(done) + scored,
      len(rows),
      rate,
      _hms((len(todo) - scored) / rate),
    )
  all_rows = results_file.read_rows(out)
  if rank:
    ranks = _add_ranks(all_rows, weights)
    results_file.rewrite_rows(out, all_rows)
    results_file.rewrite_rows(ranks_path(out), ranks)
  if gallery:
    gallery_lib.write_gallery(gallery, all_rows)
  errors = [r for r in all_rows if "error" in r]
  summary = {
    "rows": len(all_rows),
    "new": len(todo),
    "resumed": len(done),
    "errors": len(errors),
    "error_ids": [r["id"] for r in errors],
    "out": out,
  }
  listed = "; ".join(f"{r['id']} ({r['error']})" for r in errors[:20])
  more = f"; and {len(errors) - 20} more" if len(errors) > 20 else ""
  print(
    f"score: {len(all_rows)} rows in {out} ({len(todo)} scored now, {len(done)} from an "
    f"earlier run); {len(errors)} unreadable" + (f": {listed}{more}" if errors else "")
  )
  return summary


def run() -> None:
  """The `rahf-jax score` command: reads the flags and calls run_score."""
  fl = flags.FLAGS
  for name in ("workdir", "out"):
    if not fl[name].value:
      raise ValueError(f"`rahf-jax score` needs --{name}; see `rahf-jax score --help`.")
  run_score(
    fl["workdir"].value,
    fl["out"].value,
    manifest=_MANIFEST.value,
    images=_IMAGES.value,
    prompt=fl["prompt"].value,
    rank=_RANK.value,
    masks=_MASKS.value,
    gallery=_GALLERY.value,
    batch_size=_BATCH_SIZE.value,
    words=_WORDS.value,
    best=fl["best"].value,
    weights=_WEIGHTS.value,
    mask_threshold=_MASK_THRESHOLD.value,
    mask_dilation=None if _MASK_DILATION.value < 0 else _MASK_DILATION.value,
    mask_min_area=None if _MASK_MIN_AREA.value < 0 else _MASK_MIN_AREA.value,
  )
