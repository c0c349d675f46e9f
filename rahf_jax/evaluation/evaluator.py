"""Run a checkpoint over a split: `metrics.json`, the paper's tables, overlays and `_0` prompts.

  rahf-jax eval --workdir DIR --split test [--data_dir D] [--out DIR/eval_test]

writes into the output folder

  metrics.json       every metric (rahf_jax.evaluation.tables.compute_all_metrics), nested
  metrics.md         the paper's three tables (scores, heatmaps, words); with the published
                     numbers beside ours when the split is the real RichHF-18K test split
  words.tsv          predicted vs reference `_0`-marked prompts, one line per example
  overlays/*.png     image | predicted heatmaps | ground truth for the first examples

Heatmaps are compared at the model's output resolution (the data layer resizes the 512x512
ground truth to it, as the PyTorch reproduction does).
"""

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rahf_jax import features as F
from rahf_jax.evaluation.tables import compute_all_metrics, metrics_to_markdown
from rahf_jax.inference import postprocess
from rahf_jax.inference.overlays import save_overlay
from rahf_jax.inference.predictor import Predictor
from rahf_jax.train import input_batches

# Examples in the official RichHF-18K test split (../shared/RAHF_REFERENCE.md s2).
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


def evaluate(
  predictor: Predictor,
  split: str = "test",
  data_dir: str | None = None,
  max_batches: int = -1,
) -> tuple[dict, _Collector]:
  """Predicts over a split of the run's task; returns (metrics, the collected values)."""
  config = predictor.setup.config.copy_and_resolve_references()
  config.data.eval_split = split
  config.num_eval_batches = max_batches
  if data_dir:
    config.data.data_dir = data_dir
  collect = _collect_multihead if predictor.variant == F.MULTI_HEAD else _collect_augmented
  c = _Collector()
  for n, (batch, weights) in enumerate(input_batches.eval_batches(config, predictor.model_config)):
    arrays = predictor.predict_batch(batch)
    collect(c, batch, arrays, weights > 0, predictor.tokenizer)
    if n % 10 == 0:
      logging.info("eval %s: %d batches", split, n + 1)
  preds, refs = c.as_arrays()
  if not refs:
    raise ValueError(f"split {split!r} yielded no examples; check --split and --data_dir.")
  return compute_all_metrics(preds, refs), c


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


def evaluate_workdir(
  workdir: str,
  split: str = "test",
  data_dir: str | None = None,
  out_dir: str | None = None,
  best: bool = False,
  max_batches: int = -1,
  reference: bool | None = None,
) -> dict:
  """Restores a run's checkpoint, evaluates it on `split` and writes the report.

  Args:
    reference: show the published numbers beside ours; None = when the split looks like the
      official test split (named "test" with its 955 examples).
  """
  predictor = Predictor.from_workdir(workdir, best=best)
  metrics, collected = evaluate(predictor, split, data_dir, max_batches)
  if reference is None:
    n = len(collected.ref[F.SCORE_TYPES[0]])
    reference = split == "test" and n == OFFICIAL_TEST_SIZE
  out_dir = out_dir or os.path.join(workdir, f"eval_{split}")
  write_report(metrics, collected, out_dir, reference)
  logging.info("Wrote %s/metrics.json and metrics.md", out_dir)
  return metrics
