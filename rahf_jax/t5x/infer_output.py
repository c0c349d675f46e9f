"""`t5x.infer` output a pipeline can read: one compact JSON line per image, heatmaps as files.

configs/t5x/runs/infer.gin binds `write_inferences` as t5x.infer's `write_fn` and
`merge_chunks` as its `merge_fn`. Each line of the infer file
(<INFER_OUTPUT_DIR>/<task>-predict_with_aux.jsonl-00000-of-00001) is

  {"uid": "cfdb4aaa-...", "prompt": "a green star on a blue background",
   "scores": {"plausibility": 0.61, "alignment": 0.48, "aesthetics": 0.52, "overall": 0.57},
   "misaligned_prompt_words": ["blue"],               # prompt words the decoder marked
   "marked_prompt": "a green star on a blue_0 background",  # the prompt's words, `_0` on those
   "decoded": "a green star on a blue_0 background",  # the decoder's own text
   "heatmap_shape": [384, 384],
   "heatmaps": {"implausibility": {"npy": "<rel>.npy", "png": "<rel>.png"}, "misalignment": ...}}

Heatmap paths are relative to the directory holding the infer file (t5x's INFER_OUTPUT_DIR;
`resolve` / `load_heatmap` join them): `<infer file name>-heatmaps/chunkNNNNN/<uid>.<type>.npy`
(float32, the model's map as is) and `.png` (8-bit greyscale, round(255 * clip(map, 0, 1))).

The words come from rahf_jax.inference.postprocess.misaligned_prompt_words (as the native
Predictor's "misaligned_prompt_words"): decoded words that are not prompt words are never
reported. The augmented-prompt variant runs each image once per output type; its rows (one
score, one map or the words each) are merged into ONE line per image: consecutive rows with the
same uid and prompt whose outputs do not overlap (`merge_records`), within a chunk by
`write_inferences` and across t5x's chunk boundaries by `merge_chunks`. A uid seen twice in a
row with the same outputs (a duplicate record) starts a new line.

The uid and the prompt come from the task features (`uid`, `inputs_pretokenized`) that t5x
hands to the write_fn in the order of the inferences; the model's aux outputs carry arrays only.
With `merge_chunked_results = False` the chunk files stay in INFER_OUTPUT_DIR/tmp-*/, their
heatmap paths still relative to INFER_OUTPUT_DIR, and an augmented image split by a chunk
boundary keeps two partial lines.

No t5x import: this module reads t5x's arguments (lists, numpy arrays, a tf.data dataset or
any iterable of example dicts) and writes through tf.io.gfile where TensorFlow is installed
(so gs:// output dirs work), plain files otherwise.
"""

import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rahf_jax import features as F
from rahf_jax.inference import postprocess

HEATMAP_FORMATS = ("npy", "png")
MAPS_SUFFIX = "-heatmaps"
_CHUNK_RE = re.compile(r"^(?P<name>.+)-chunk(?P<chunk>\d{5})$")
_TMP_PREFIX = "tmp-"


# --- files (tf.io.gfile where TensorFlow is installed: gs:// output dirs) -------------------


def _gfile():
  try:
    import tensorflow as tf  # noqa: PLC0415  (optional: plain files without it)
  except ImportError:
    return None
  return tf.io.gfile


def _open(path: str, mode: str):
  gfile = _gfile()
  if gfile is not None:
    return gfile.GFile(path, mode)
  return open(path, mode, encoding=None if "b" in mode else "utf-8")


def _makedirs(path: str) -> None:
  gfile = _gfile()
  if gfile is not None:
    gfile.makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


def _glob(pattern: str) -> list[str]:
  gfile = _gfile()
  if gfile is not None:
    return sorted(gfile.glob(pattern))
  import glob  # noqa: PLC0415

  return sorted(glob.glob(pattern))


# --- where things go ------------------------------------------------------------------------


def output_layout(path: str) -> tuple[str, str]:
  """(base dir, heatmap dir relative to it) for the file t5x asks a write_fn to write.

  t5x.infer writes chunk files `<dir>/tmp-<task>-<shard>/<fname>-chunkNNNNN` and merges them
  into `<dir>/<fname>`, deleting tmp-*/ afterwards; the maps of a chunk go to
  `<dir>/<fname>-heatmaps/chunkNNNNN/`. Any other path `<dir>/<fname>` gets `<fname>-heatmaps/`.
  """
  parent, name = os.path.split(path)
  match = _CHUNK_RE.match(name)
  if match and os.path.basename(parent).startswith(_TMP_PREFIX):
    base = os.path.dirname(parent)
    return base, f"{match['name']}{MAPS_SUFFIX}/chunk{match['chunk']}"
  return parent, f"{name}{MAPS_SUFFIX}"


def resolve(infer_file: str, relative: str) -> str:
  """The path of a heatmap file named in a line of `infer_file`."""
  return os.path.join(os.path.dirname(infer_file), relative)


def safe_name(uid: str) -> str:
  """A file-name stem for a uid: letters, digits, '.', '_' and '-' kept, anything else '_'."""
  name = re.sub(r"[^A-Za-z0-9._-]", "_", uid)[:128].lstrip(".")
  return name or "example"


def heatmap_to_uint8(heatmap: Any) -> np.ndarray:
  """uint8 [H, W]: round(255 * clip(map, 0, 1)) (the PNG files' values)."""
  heat = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
  return np.round(heat * 255.0).astype(np.uint8)


def write_heatmap(
  base_dir: str, stem: str, heatmap: Any, formats: Sequence[str] = HEATMAP_FORMATS
) -> dict[str, str]:
  """Writes `heatmap` as <base_dir>/<stem>.<format> per format; returns {format: stem.format}."""
  heat = np.asarray(heatmap, np.float32)
  if heat.ndim != 2:
    raise ValueError(f"heatmap {stem!r} must be [H, W], got shape {heat.shape}.")
  unknown = [f for f in formats if f not in HEATMAP_FORMATS]
  if unknown or not formats:
    raise ValueError(f"heatmap formats {list(formats)}: use one or more of {HEATMAP_FORMATS}.")
  _makedirs(os.path.dirname(os.path.join(base_dir, stem)))
  paths = {}
  for fmt in formats:
    rel = f"{stem}.{fmt}"
    buffer = io.BytesIO()
    if fmt == "npy":
      np.save(buffer, heat, allow_pickle=False)
    else:
      from PIL import Image  # noqa: PLC0415

      Image.fromarray(heatmap_to_uint8(heat)).save(buffer, format="PNG")
    with _open(os.path.join(base_dir, rel), "wb") as f:
      f.write(buffer.getvalue())
    paths[fmt] = rel
  return paths


def load_heatmap(infer_file: str, relative: str) -> np.ndarray:
  """A heatmap named in a line of `infer_file`: float32 [H, W] (a .png read back as value/255)."""
  with _open(resolve(infer_file, relative), "rb") as f:
    data = f.read()
  if relative.endswith(".npy"):
    return np.load(io.BytesIO(data), allow_pickle=False)
  from PIL import Image  # noqa: PLC0415

  return np.asarray(Image.open(io.BytesIO(data)), np.float32) / 255.0


def read_lines(infer_file: str) -> list[dict[str, Any]]:
  """The records of an infer file."""
  with _open(infer_file, "r") as f:
    return [json.loads(line) for line in f if line.strip()]


# --- one row of t5x's output -> a record ----------------------------------------------------


def _text(value: Any) -> str:
  if isinstance(value, np.ndarray):
    value = value.item()
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def variant_of(aux_values: Mapping[str, Any]) -> str:
  """The variant whose aux outputs these are ("output_type" present: augmented prompt)."""
  return F.AUGMENTED_PROMPT if "output_type" in aux_values else F.MULTI_HEAD


def task_prompt(example: Mapping[str, Any], variant: str) -> str:
  """The image's prompt: the task's inputs text, without the augmented variant's type prefix."""
  text = _text(example["inputs_pretokenized"])
  if variant == F.AUGMENTED_PROMPT:
    name = F.AUGMENTED_OUTPUT_TYPES[int(np.asarray(example["output_type"]))]
    prefix = F.augmented_prompt(name, "")
    if text.startswith(prefix):
      return text[len(prefix) :]
  return text


def word_marks(prompt: str, decoded: str) -> list[bool]:
  """Per prompt word: whether `misaligned_prompt_words(prompt, decoded)` reports it.

  As that function: by position when the decoder reproduced the prompt word for word, else
  each reported word marks the earliest unmarked occurrence of it.
  """
  words = F.split_prompt_words(prompt)
  chosen = postprocess.misaligned_prompt_words(prompt, decoded)
  suffix = F.MISALIGNED_SUFFIX
  tokens = decoded.split()
  if [t[: -len(suffix)] if t.endswith(suffix) else t for t in tokens] == words:
    return [t.endswith(suffix) for t in tokens]
  marks, j = [], 0
  for w in words:
    hit = j < len(chosen) and chosen[j] == w
    marks.append(hit)
    j += hit
  return marks


def words_record(prompt: str, decoded: str) -> dict[str, Any]:
  """The words part of a record: prompt words the decoder marked, the marked prompt, its text."""
  words = F.split_prompt_words(prompt)
  marks = word_marks(prompt, decoded)
  marked = [w + F.MISALIGNED_SUFFIX if m else w for w, m in zip(words, marks, strict=True)]
  return {
    "misaligned_prompt_words": postprocess.misaligned_prompt_words(prompt, decoded),
    "marked_prompt": " ".join(marked),
    "decoded": decoded,
  }


def row_prediction(
  aux_row: Mapping[str, Any], text: str, variant: str, want_words: bool = True
) -> dict[str, Any]:
  """One example's prediction dict (postprocess.prediction_dicts) from its aux values + text."""
  arrays = {k: np.asarray(v)[None] for k, v in aux_row.items()}
  return postprocess.prediction_dicts(arrays, [text] if want_words else None, variant)[0]


def _outputs(record: Mapping[str, Any]) -> set[str]:
  """The outputs a record holds: "scores/<s>", "heatmaps/<h>", "words"."""
  kinds = {f"scores/{s}" for s in record.get("scores", {})}
  kinds |= {f"heatmaps/{h}" for h in record.get("heatmaps", {})}
  if "decoded" in record:
    kinds.add("words")
  return kinds


def _canonical(record: Mapping[str, Any]) -> dict[str, Any]:
  """Keys in the module docstring's order, scores and heatmaps in features' type order."""
  out = {"uid": record["uid"], "prompt": record["prompt"]}
  if record.get("scores"):
    out["scores"] = {s: record["scores"][s] for s in F.SCORE_TYPES if s in record["scores"]}
  for key in ("misaligned_prompt_words", "marked_prompt", "decoded", "heatmap_shape"):
    if key in record:
      out[key] = record[key]
  if record.get("heatmaps"):
    out["heatmaps"] = {h: record["heatmaps"][h] for h in F.HEATMAP_TYPES if h in record["heatmaps"]}
  extra = {k: v for k, v in record.items() if k not in out and k not in ("scores", "heatmaps")}
  return {**out, **extra}


def merge_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Joins consecutive records of one image (same uid and prompt, outputs not overlapping)."""
  merged: list[dict[str, Any]] = []
  for record in records:
    last = merged[-1] if merged else None
    if (
      last is not None
      and last["uid"] == record["uid"]
      and last["prompt"] == record["prompt"]
      and not (_outputs(last) & _outputs(record))
    ):
      for key, value in record.items():
        if isinstance(value, Mapping):
          last.setdefault(key, {}).update(value)
        else:
          last.setdefault(key, value)
      merged[-1] = _canonical(last)
    else:
      merged.append(_canonical(dict(record)))
  return merged


def compact_records(
  examples: Iterable[Mapping[str, Any]],
  predictions: Sequence[Any],
  aux_values: Mapping[str, Sequence[Any]],
  vocabulary: Any,
  base_dir: str,
  maps_dir: str,
  formats: Sequence[str] = HEATMAP_FORMATS,
) -> list[dict[str, Any]]:
  """t5x's (task examples, predicted ids, aux values) -> merged records; writes the maps.

  Args:
    examples: the task features of each inferred example, in order (uid, inputs_pretokenized,
      and for the augmented variant output_type).
    predictions: greedy-decoded `_0`-marked prompt ids, one sequence per example.
    aux_values: {aux key: one value per example} (postprocess.output_arrays' keys).
    vocabulary: has `.decode(list[int]) -> str` (the task's output vocabulary).
    base_dir: directory the records' heatmap paths are relative to.
    maps_dir: heatmap directory, relative to base_dir.
    formats: heatmap file formats, "npy" and/or "png".
  """
  variant = variant_of(aux_values)
  words_index = F.AUGMENTED_OUTPUT_TYPES.index(F.WORDS_TYPE)
  used: dict[str, int] = {}
  records = []
  for i, example in enumerate(examples):
    if i >= len(predictions):
      raise ValueError(f"more task examples than the {len(predictions)} predictions.")
    aux_row = {k: v[i] for k, v in aux_values.items()}
    want_words = variant == F.MULTI_HEAD or int(np.asarray(aux_row["output_type"])) == words_index
    text = ""
    if want_words:
      text = postprocess.decode_texts(np.asarray(predictions[i])[None], vocabulary)[0]
    pred = row_prediction(aux_row, text, variant, want_words)
    uid, prompt = _text(example["uid"]), task_prompt(example, variant)
    record: dict[str, Any] = {"uid": uid, "prompt": prompt}
    if pred.get(postprocess.SCORES):
      record["scores"] = pred[postprocess.SCORES]
    if postprocess.WORDS in pred:
      record.update(words_record(prompt, pred[postprocess.WORDS]))
    if pred.get(postprocess.HEATMAPS):
      record["heatmaps"] = {}
      for name, heatmap in pred[postprocess.HEATMAPS].items():
        stem = f"{safe_name(uid)}.{name}"
        n = used.get(stem, 0)
        used[stem] = n + 1
        stem = f"{maps_dir}/{stem}" if n == 0 else f"{maps_dir}/{stem}-{n}"
        record["heatmaps"][name] = write_heatmap(base_dir, stem, heatmap, formats)
        record["heatmap_shape"] = list(np.shape(heatmap))
    records.append(record)
  if len(records) != len(predictions):
    raise ValueError(f"{len(records)} task examples for {len(predictions)} predictions.")
  return merge_records(records)


def _write_records(path: str, records: Iterable[Mapping[str, Any]]) -> None:
  with _open(path, "w") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")


# --- t5x.infer hooks ------------------------------------------------------------------------


def write_inferences(
  path: str,
  inferences: tuple[Sequence[Any], Mapping[str, Sequence[Any]]],
  task_ds: Any,
  mode: str,
  vocabulary: Any = None,
  heatmap_formats: Sequence[str] = HEATMAP_FORMATS,
) -> None:
  """t5x.infer's `write_fn`: compact lines in `path`, heatmap files beside (`output_layout`).

  Args:
    path: the (chunk) file t5x asks for.
    inferences: (predicted ids per example, {aux key: values per example}).
    task_ds: the task features of those examples (a tf.data dataset or an iterable of dicts).
    mode: must be "predict_with_aux" (runs/infer.gin sets it).
    vocabulary: the task's output vocabulary.
    heatmap_formats: "npy" (float32) and/or "png" (8-bit).
  """
  if mode != "predict_with_aux":
    raise ValueError(
      f"rahf_jax.t5x.infer_output.write_inferences needs infer mode 'predict_with_aux' (the "
      f"scores and heatmaps are aux outputs), got {mode!r}; set infer.mode as runs/infer.gin."
    )
  if vocabulary is None:
    raise ValueError("write_inferences needs the task's vocabulary to decode the words.")
  predictions, aux_values = inferences
  examples = task_ds.as_numpy_iterator() if hasattr(task_ds, "as_numpy_iterator") else task_ds
  base_dir, maps_dir = output_layout(path)
  records = compact_records(
    examples, predictions, aux_values, vocabulary, base_dir, maps_dir, heatmap_formats
  )
  _write_records(path, records)


def merge_chunks(output_dir: str, output_fname: str, tmp_dir: str, step: int | None) -> None:
  """t5x.infer's `merge_fn`: the chunk files in order, one line per image (`merge_records`).

  As t5x's merge_chunks_to_file, and an augmented image whose rows a chunk boundary split is
  joined into one line.
  """
  del step
  chunk_paths = _glob(os.path.join(tmp_dir, f"{output_fname}-chunk?????"))
  if not chunk_paths:
    raise FileNotFoundError(
      f"no chunk results in {tmp_dir}: the infer split had no examples, or the chunks were "
      "written by another write_fn."
    )
  records = []
  for chunk_path in chunk_paths:
    records.extend(read_lines(chunk_path))
  _write_records(os.path.join(output_dir, output_fname), merge_records(records))
