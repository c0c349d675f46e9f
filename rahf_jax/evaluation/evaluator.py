"""Run a checkpoint over a split: `metrics.json`, the paper's tables, overlays and `_0` prompts.

  rahf-jax eval --workdir DIR --split test [--data_dir D] [--out DIR/eval_test]
                [--protocol paper|reproduction]

writes into the output folder

  metrics.json       every metric (rahf_jax.evaluation.tables.compute_all_metrics), nested,
                     the trivial baselines on the same ground truth ("baselines") and the
                     checkpoint evaluated ("checkpoint": its step, newest or best by a metric)
  metrics.md         the paper's three tables (scores, heatmaps, words) with the baseline rows;
                     with the published numbers beside ours when the split is the real
                     RichHF-18K test split
  words.tsv          predicted vs reference `_0`-marked prompts, one line per example
  overlays/*.png     image | predicted heatmaps | ground truth for the first examples

Heatmaps are compared at the model's output resolution (the data layer resizes the 512x512
ground truth to it, as the PyTorch reproduction does).

`protocol="reproduction"` (rahf_jax.evaluation.protocols lists each difference) evaluates as
the PyTorch reproduction does: the model reads the clean prompt and the PIL-resized image, the
words are decoded up to 100 tokens and scored against the raw labelled prompt of every
example, the ground-truth heatmaps are the uint8 maps resized by PIL, and the metrics use the
reproduction's MSE (all), AUC-Judd and scipy correlations. It reads those inputs from the TFDS
examples behind the batches (rahf_jax.evaluation.raw_examples), so it needs data.source "tfds".
"""

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rahf_jax import features as F
from rahf_jax.evaluation import protocols, raw_examples
from rahf_jax.evaluation.heatmap_metrics import resize_uint8_heatmaps_pil
from rahf_jax.evaluation.tables import compute_all_metrics, metrics_to_markdown
from rahf_jax.inference import postprocess
from rahf_jax.inference.overlays import save_overlay
from rahf_jax.inference.predictor import Predictor
from rahf_jax.sharding import workdir_files
from rahf_jax.train import input_batches

# Examples in the official RichHF-18K test split (test.tfrecord of the official release).
OFFICIAL_TEST_SIZE = 955


class _Collector:
  """Accumulates predictions and references per output type, in example order."""

  def __init__(self):
    self.pred = {t: [] for t in F.SCORE_TYPES + F.HEATMAP_TYPES + (F.WORDS_TYPE,)}
    self.ref = {t: [] for t in self.pred}
    self.examples: list[dict[str, Any]] = []

  def add(self, kind: str, pred: Any, ref: Any) -> None:
    self.pred[kind].append(pred)
    self.ref[kind].append(ref)

  def as_arrays(self) -> tuple[dict, dict]:
    def pack(d):
      out = {}
      for t, v in d.items():
        if not v:
          continue
        out[t] = list(v) if t == F.WORDS_TYPE else np.asarray(v, np.float32)
      return out

    return pack(self.pred), pack(self.ref)


def _collect_multihead(c: _Collector, batch, arrays, keep, tokenizer) -> None:
  pred_words = postprocess.decode_texts(arrays["decoded_ids"], tokenizer)
  ref_words = postprocess.decode_texts(batch["decoder_target_ids"], tokenizer)
  words_valid = np.asarray(batch["decoder_loss_weights"]).sum(axis=1) > 0
  for i in np.flatnonzero(keep):
    for s in F.SCORE_TYPES:
      c.add(s, arrays[f"score_{s}"][i], batch[f"score_{s}"][i])
    for h in F.HEATMAP_TYPES:
      c.add(h, arrays[f"heatmap_{h}"][i], batch[f"heatmap_{h}"][i])
    if words_valid[i]:
      c.add(F.WORDS_TYPE, pred_words[i], ref_words[i])
    c.examples.append({
      "image": batch["image"][i],
      "pred": {h: arrays[f"heatmap_{h}"][i] for h in F.HEATMAP_TYPES},
      "gt": {h: batch[f"heatmap_{h}"][i] for h in F.HEATMAP_TYPES},
      "pred_words": pred_words[i], "ref_words": ref_words[i],
    })  # fmt: skip


def _collect_augmented(c: _Collector, batch, arrays, keep, tokenizer) -> None:
  types = np.asarray(batch["output_type"])
  for i in np.flatnonzero(keep):
    name = F.AUGMENTED_OUTPUT_TYPES[types[i]]
    if name in F.SCORE_TYPES:
      c.add(name, arrays["score"][i], batch["score"][i])
    elif name in F.HEATMAP_TYPES:
      c.add(name, arrays["heatmap"][i], batch["heatmap"][i])
    elif np.asarray(batch["decoder_loss_weights"][i]).sum() > 0:
      ids = np.stack([arrays["decoded_ids"][i], batch["decoder_target_ids"][i]])
      pred, ref = postprocess.decode_texts(ids, tokenizer)
      c.add(name, pred, ref)
      c.examples.append({"image": batch["image"][i], "pred_words": pred, "ref_words": ref})


def _check_pairing(batch, i: int, row: Mapping, multi_head: bool) -> None:
  """Raises unless batch row i and the TFDS row are the same example (scores, output type)."""
  if multi_head:
    same = all(np.float32(batch[f"score_{s}"][i]) == row["scores"][s] for s in F.SCORE_TYPES)
  else:
    name = F.AUGMENTED_OUTPUT_TYPES[row["output_type"]]
    same = int(batch["output_type"][i]) == row["output_type"] and (
      name not in F.SCORE_TYPES or np.float32(batch["score"][i]) == row["scores"][name]
    )
  if not same:
    raise ValueError(
      "--protocol reproduction: the TFDS examples do not pair with the evaluation batches "
      f"(row {i}); evaluate on one host with the run's task and data dir."
    )


def _collect_reproduction(c: _Collector, predictor: Predictor, batch, rows: list) -> None:
  """Predicts the first len(rows) rows of `batch` on the reproduction's inputs and collects
  them with its references (raw_examples.raw_rows gives `rows`)."""
  k = len(rows)
  multi = predictor.variant == F.MULTI_HEAD
  batch = dict(batch)
  image = np.array(batch["image"], np.float32)
  prompt_ids = np.array(batch["prompt_ids"])
  if k:
    image[:k] = np.stack([r["image"] for r in rows])
    prompt_ids[:k] = predictor.encode_prompts([r["prompt"] for r in rows])
  batch.update(image=image, prompt_ids=prompt_ids)
  arrays = predictor.predict_batch(batch, decode=False)
  words_index = F.AUGMENTED_OUTPUT_TYPES.index(F.WORDS_TYPE)
  decode_rows = [i for i, r in enumerate(rows) if multi or r["output_type"] == words_index]
  texts = {}
  if decode_rows:
    ids = predictor.decode(
      image[decode_rows],
      prompt_ids[decode_rows],
      protocols.REPRODUCTION_MAX_NEW_TOKENS,
      [rows[i]["prompt"] for i in decode_rows],
    )
    texts = dict(zip(decode_rows, postprocess.decode_texts(ids, predictor.tokenizer), strict=True))
  for i, row in enumerate(rows):
    _check_pairing(batch, i, row, multi)
    if multi:
      pred = {h: arrays[f"heatmap_{h}"][i] for h in F.HEATMAP_TYPES}
      gt = {h: resize_uint8_heatmaps_pil(row["heatmaps"][h], pred[h].shape) for h in pred}
      for s in F.SCORE_TYPES:
        c.add(s, arrays[f"score_{s}"][i], batch[f"score_{s}"][i])
      for h in F.HEATMAP_TYPES:
        c.add(h, pred[h], gt[h])
      c.add(F.WORDS_TYPE, texts[i], row["reference"])
      c.examples.append({"image": image[i], "pred": pred, "gt": gt, "pred_words": texts[i],
                         "ref_words": row["reference"]})  # fmt: skip
      continue
    name = F.AUGMENTED_OUTPUT_TYPES[row["output_type"]]
    if name in F.SCORE_TYPES:
      c.add(name, arrays["score"][i], batch["score"][i])
    elif name in F.HEATMAP_TYPES:
      pred = arrays["heatmap"][i]
      c.add(name, pred, resize_uint8_heatmaps_pil(row["heatmaps"][name], pred.shape))
    else:
      c.add(name, texts[i], row["reference"])
      c.examples.append({"image": image[i], "pred_words": texts[i], "ref_words": row["reference"]})


def split_config(predictor: Predictor, split: str, data_dir: str | None, max_batches: int = -1):
  """The predictor's run config, set to read `max_batches` (-1: all) of `split` from `data_dir`
  (None: the run's)."""
  config = predictor.setup.config.copy_and_resolve_references()
  config.data.eval_split = split
  config.num_eval_batches = max_batches
  if data_dir:
    config.data.data_dir = data_dir
  return config


def evaluate(
  predictor: Predictor,
  split: str = "test",
  data_dir: str | None = None,
  max_batches: int = -1,
  protocol: str = protocols.PAPER,
) -> tuple[dict, _Collector]:
  """Predicts over a split of the run's task; returns (metrics, the collected values).

  Args:
    protocol: "paper" (the paper's definitions, on the task's batches) or "reproduction"
      (the PyTorch reproduction's inputs, references and metric choices; see the module
      docstring and rahf_jax.evaluation.protocols).
  """
  protocols.check_protocol(protocol)
  config = split_config(predictor, split, data_dir, max_batches)
  rows = None
  if protocol == protocols.REPRODUCTION:
    if config.data.source != "tfds":
      raise ValueError(
        "--protocol reproduction reads the TFDS examples behind the batches; it needs "
        f"data.source 'tfds', not {config.data.source!r}."
      )
    rows = raw_examples.raw_rows(config, predictor.model_config, split)
  collect = _collect_multihead if predictor.variant == F.MULTI_HEAD else _collect_augmented
  c = _Collector()
  for n, (batch, weights) in enumerate(input_batches.eval_batches(config, predictor.model_config)):
    if rows is None:
      arrays = predictor.predict_batch(batch)
      collect(c, batch, arrays, weights > 0, predictor.tokenizer)
    else:
      k = int(np.sum(weights > 0))  # real rows come first, padding rows last
      _collect_reproduction(c, predictor, batch, [next(rows) for _ in range(k)])
    if n % 10 == 0:
      logging.info("eval %s: %d batches", split, n + 1)
  preds, refs = c.as_arrays()
  if not refs:
    raise ValueError(f"split {split!r} yielded no examples; check --split and --data_dir.")
  return compute_all_metrics(preds, refs, protocol=protocol), c


def write_report(
  metrics: Mapping,
  collected: _Collector,
  out_dir: str,
  reference: bool,
  num_overlays: int = 8,
) -> str:
  """Writes metrics.json, metrics.md, words.tsv and overlays/ into out_dir; returns the tables."""
  os.makedirs(os.path.join(out_dir, "overlays"), exist_ok=True)
  with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
    json.dump(metrics, f, indent=2, sort_keys=True, allow_nan=False)
  tables = metrics_to_markdown(metrics, reference=reference)
  with open(os.path.join(out_dir, "metrics.md"), "w", encoding="utf-8") as f:
    f.write(tables)
  with open(os.path.join(out_dir, "words.tsv"), "w", encoding="utf-8") as f:
    f.write("predicted\treference\n")
    for pred, ref in zip(collected.pred[F.WORDS_TYPE], collected.ref[F.WORDS_TYPE], strict=True):
      f.write(f"{pred}\t{ref}\n")
  for i, ex in enumerate(collected.examples[:num_overlays]):
    if "pred" in ex:
      title = f"pred: {ex['pred_words']} | true: {ex['ref_words']}"
      save_overlay(os.path.join(out_dir, "overlays", f"example_{i:03d}.png"), ex["image"],
                   ex["pred"], ex["gt"], title=title)  # fmt: skip
  return tables


def checkpoint_info(workdir: str, best: bool = False) -> dict:
  """Which checkpoint `Predictor.from_workdir(workdir, best=best)` restores.

  Returns:
    {"kind": "best" or "newest", "step": the newest finished step of workdir/best (or
    workdir/checkpoints), or None; for the best one also "best_metric" and "best_value" as the
    training loop recorded them, when readable}.
  """
  steps = workdir_files.checkpoint_steps(workdir, best=best)
  info: dict[str, Any] = {
    "kind": "best" if best else "newest",
    "step": steps[-1] if steps else None,
  }
  if best and steps:
    meta_dir = os.path.join(os.path.abspath(workdir), "best", str(steps[-1]), "meta")
    for name in sorted(os.listdir(meta_dir)) if os.path.isdir(meta_dir) else []:
      try:
        with open(os.path.join(meta_dir, name), encoding="utf-8") as f:
          meta = json.load(f)
      except (OSError, ValueError):
        continue
      if isinstance(meta, dict) and "best_metric" in meta:
        info.update(best_metric=meta["best_metric"], best_value=meta.get("best_value"))
        break
  return info


def evaluate_workdir(
  workdir: str,
  split: str = "test",
  data_dir: str | None = None,
  out_dir: str | None = None,
  best: bool = False,
  max_batches: int = -1,
  reference: bool | None = None,
  protocol: str = protocols.PAPER,
  decoding: str = "constrained",
  mark_bias: float | None = None,
) -> dict:
  """Restores a run's checkpoint, evaluates it on `split` and writes the report.

  Args:
    reference: show the published numbers beside ours; None = when the split looks like the
      official test split (named "test" with its 955 examples).
    protocol: "paper" or "reproduction" (see `evaluate`); recorded in metrics.json and in the
      heading of metrics.md.
    decoding: how the misaligned words are decoded, "constrained" or "free" (Predictor);
      recorded in metrics.json.
    mark_bias: constrained decoding's mark bias; None: the one `rahf-jax calibrate` recorded for
      this checkpoint, else 0 (rahf_jax.inference.mark_bias); recorded in metrics.json.

  Returns:
    The metrics (as in metrics.json), with "checkpoint" (`checkpoint_info`).
  """
  predictor = Predictor.from_workdir(workdir, best=best, decoding=decoding, mark_bias=mark_bias)
  metrics, collected = evaluate(predictor, split, data_dir, max_batches, protocol)
  metrics["checkpoint"] = checkpoint_info(workdir, best)
  metrics["decoding"] = decoding
  if decoding == "constrained":
    metrics["mark_bias"] = predictor.mark_bias
  if reference is None:
    n = len(collected.ref[F.SCORE_TYPES[0]])
    reference = split == "test" and n == OFFICIAL_TEST_SIZE
  out_dir = out_dir or os.path.join(workdir, f"eval_{split}")
  write_report(metrics, collected, out_dir, reference)
  logging.info("Wrote %s/metrics.json and metrics.md", out_dir)
  return metrics
