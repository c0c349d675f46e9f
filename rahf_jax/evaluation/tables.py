"""All metrics at once, and the paper's three result tables as markdown.

`compute_all_metrics` takes predictions and references keyed by the shared names of
`rahf_jax.features`:
  {"plausibility": [N], ..., "implausibility": [N, H, W], ..., "misaligned_words": [str]}
(score types `SCORE_TYPES`, heatmap types `HEATMAP_TYPES`, words `WORDS_TYPE`; the
multi-head model feature names `score_<s>` / `heatmap_<h>` are accepted too) and returns
a nested JSON-serialisable dict {"scores": ..., "heatmaps": ..., "words": ...}.

It also scores the trivial baselines of rahf_jax.evaluation.baselines (mean score, all-zero
and mean ground-truth map, unmarked and all-marked prompt) on the same ground truth, under
"baselines" with the same sections.

`metrics_to_markdown` renders that dict as the paper's tables (scores, heatmaps,
misaligned words), each with the baseline rows under ours; with `reference=True` (the real
RichHF-18K test split) the published numbers (the paper and the PyTorch reproduction's README)
are printed beside ours.
"n/a" marks a metric that is undefined for a baseline, "—" a number that is missing (not
published, or an empty subset).
"""

import math
from collections.abc import Mapping

import numpy as np

from rahf_jax import features
from rahf_jax.evaluation import baselines as baselines_lib
from rahf_jax.evaluation import heatmap_metrics, protocols, score_metrics, word_metrics

OURS = "rahf-jax (this run)"
REPRODUCTION = "PyTorch reproduction (multi-head, ViT-L/16-384)"
PAPER_MULTI_HEAD = "paper: RAHF multi-head"
PAPER_AUGMENTED = "paper: RAHF augmented prompt"
PAPER_CLIP = "paper: CLIP encoder, fine-tuned"

# Published test-split numbers (the paper; the PyTorch reproduction's README). The paper's
# numbers are second-hand (a later paper's comparison table); words are percentages.
PUBLISHED = {
  "scores": {
    REPRODUCTION: {
      "plausibility": {"plcc": 0.739, "srcc": 0.726},
      "alignment": {"plcc": 0.565, "srcc": 0.564},
      "aesthetics": {"plcc": 0.629, "srcc": 0.621},
      "overall": {"plcc": 0.642, "srcc": 0.634},
    },
    PAPER_CLIP: {"plausibility": {"plcc": 0.390, "srcc": 0.378}},
    PAPER_MULTI_HEAD: {"plausibility": {"plcc": 0.666, "srcc": 0.654}},
    PAPER_AUGMENTED: {
      "plausibility": {"plcc": 0.693, "srcc": 0.681},
      "alignment": {"plcc": 0.474},
      "aesthetics": {"plcc": 0.600},
      "overall": {"plcc": 0.580},
    },
  },
  "heatmaps": {
    REPRODUCTION: {
      "implausibility": {
        "mse_all": 0.00724,
        "mse_gt0": 0.00078,
        "cc": 0.525,
        "kld": 1.649,
        "sim": 0.339,
        "nss": 2.029,
        "auc_judd": 0.905,
      },
      "misalignment": {
        "mse_all": 0.00324,
        "mse_gt0": 0.00035,
        "cc": 0.232,
        "kld": 2.848,
        "sim": 0.104,
        "nss": 1.256,
        "auc_judd": 0.797,
      },
    },
    PAPER_CLIP: {
      "implausibility": {
        "mse_all": 0.01437,
        "mse_gt0": 0.00425,
        "cc": 0.251,
        "kld": 2.462,
        "sim": 0.122,
        "auc_judd": 0.747,
      },
    },
    PAPER_MULTI_HEAD: {
      "implausibility": {
        "mse_all": 0.01216,
        "mse_gt0": 0.00141,
        "cc": 0.425,
        "kld": 1.971,
        "sim": 0.302,
        "auc_judd": 0.877,
      },
    },
    PAPER_AUGMENTED: {
      "implausibility": {
        "mse_all": 0.00920,
        "mse_gt0": 0.00095,
        "cc": 0.556,
        "kld": 1.652,
        "sim": 0.409,
        "auc_judd": 0.913,
      },
      # Quoted second-hand as "misalignment heatmap MSE"; taken here as MSE over all maps.
      "misalignment": {"mse_all": 0.00304},
    },
  },
  "words": {REPRODUCTION: {"precision": 56.5, "recall": 45.2, "f1": 47.5}},
}

PROTOCOL_NOTES = {
  protocols.PAPER: "The paper's metric definitions (rahf_jax.evaluation.protocols).",
  protocols.REPRODUCTION: (
    "The PyTorch reproduction's evaluation choices (PIL-resized uint8 ground truth, MSE (all) "
    "as a mean of per-batch means, its AUC-Judd, the raw labelled prompt as word reference; "
    "rahf_jax.evaluation.protocols)."
  ),
}

SCORE_COLUMNS = (("plcc", "PLCC"), ("srcc", "SRCC"), ("mse", "MSE"))
HEATMAP_COLUMNS = (
  ("mse_all", "MSE (all)"),
  ("mse_gt0", "MSE (GT=0)"),
  ("cc", "CC"),
  ("kld", "KLD"),
  ("sim", "SIM"),
  ("nss", "NSS"),
  ("auc_judd", "AUC-Judd"),
)
WORD_COLUMNS = (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"))

BASELINE_LABELS = {
  baselines_lib.MEAN_SCORE: "baseline: mean score",
  baselines_lib.TRAIN_MEAN_SCORE: "baseline: train-mean score",
  baselines_lib.ALL_ZEROS: "baseline: all zeros",
  baselines_lib.MEAN_GT_MAP: "baseline: mean GT map",
  baselines_lib.UNMARKED_PROMPT: "baseline: unmarked prompt",
  baselines_lib.ALL_MARKED: "baseline: every word marked",
}
NOT_DEFINED = "n/a"
BASELINE_NOTES = {
  "scores": (
    "Baselines: the same constant score for every example (mean score: the mean of this "
    "split's ground truth, so its MSE is the ground truth's variance). n/a: PLCC and SRCC of a "
    "constant prediction are undefined (zero variance)."
  ),
  "heatmaps": (
    "Baselines: the same map for every example (mean GT map: the pixel-wise mean of this "
    "split's ground-truth maps of the type). n/a: CC, NSS and AUC-Judd are undefined for a "
    "constant map (zero variance), KLD and SIM for a map that sums to 0."
  ),
  "words": (
    "Baselines: the reference prompt with no word marked (it predicts no misaligned word, so "
    "every per-example value is 0) and with every word marked `_0`."
  ),
}


def _canonical(data: Mapping, role: str) -> dict:
  """Maps model feature names (`score_<s>`, `heatmap_<h>`) to the output type names."""
  out = {}
  for key, value in data.items():
    name = key
    for prefix in ("score_", "heatmap_"):
      if key.startswith(prefix) and key[len(prefix) :] in (
        features.SCORE_TYPES + features.HEATMAP_TYPES
      ):
        name = key[len(prefix) :]
    known = features.SCORE_TYPES + features.HEATMAP_TYPES + (features.WORDS_TYPE,)
    if name not in known:
      raise ValueError(f"{role}: unknown output '{key}'; expected names from {known}.")
    out[name] = value
  return out


def compute_all_metrics(
  predictions: Mapping,
  references: Mapping,
  seed: int = 0,
  protocol: str = protocols.PAPER,
  baselines: bool = True,
  train_score_means: Mapping[str, float] | None = None,
) -> dict:
  """The paper's metrics for every output type present in both dicts.

  Args:
    predictions: {output type: values}: scores [N], heatmaps [N, H, W] in [0, 1],
      "misaligned_words" a list of N `_0`-marked prompts.
    references: the ground truth, same keys; heatmaps may have another resolution
      (they are resized to the prediction's, see heatmap_metrics.resize_heatmaps).
    seed: seed of the AUC-Judd jitter.
    protocol: "paper" or "reproduction" (rahf_jax.evaluation.protocols): how the score
      correlations, MSE (all) and AUC-Judd are computed. The reproduction's ground-truth
      heatmaps and word references are the caller's to make (the evaluator does).
    baselines: also score the trivial baselines (rahf_jax.evaluation.baselines).
    train_score_means: {score type: training-split mean}, for the train-mean score baseline.

  Returns:
    {"protocol": protocol, "scores": {s: {...}}, "heatmaps": {h: {...}}, "words": {...},
     "baselines": {the same sections: {type: {baseline: {...}}}}}, with only the sections that
    have data; plain Python floats/ints/None (JSON-serialisable).
  """
  protocols.check_protocol(protocol)
  pred = _canonical(predictions, "predictions")
  ref = _canonical(references, "references")
  if set(pred) != set(ref):
    raise ValueError(
      f"predictions have outputs {sorted(pred)} but references {sorted(ref)}; pass the same."
    )
  out = {"protocol": protocol}
  scores = {s: np.asarray(pred[s]) for s in features.SCORE_TYPES if s in pred}
  if scores:
    out["scores"] = score_metrics.all_score_metrics(scores, {s: ref[s] for s in scores}, protocol)
  maps = [h for h in features.HEATMAP_TYPES if h in pred]
  if maps:
    out["heatmaps"] = {
      h: heatmap_metrics.heatmap_metrics(pred[h], ref[h], seed, protocol=protocol) for h in maps
    }
  if features.WORDS_TYPE in pred:
    out["words"] = word_metrics.word_metrics(
      list(pred[features.WORDS_TYPE]), list(ref[features.WORDS_TYPE])
    )
  if baselines:
    out["baselines"] = baselines_lib.compute_baselines(pred, ref, seed, protocol, train_score_means)
  return out


def _fmt(value, digits: int) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  return f"{value:.{digits}f}"


def _cells(values: Mapping, columns, digits) -> list[str]:
  """Formatted cells of `columns`; "n/a" where values["undefined"] names the metric."""
  undefined = values.get("undefined", {})
  return [
    NOT_DEFINED
    if k in undefined
    else _fmt(values.get(k), digits(k) if callable(digits) else digits)
    for k, _ in columns
  ]


def _baseline_rows(metrics: Mapping, section: str, name: str | None) -> list[tuple[str, Mapping]]:
  """(label, values) of the baselines of one output type (name None: the words section)."""
  table = metrics.get("baselines", {}).get(section, {})
  table = table if name is None else table.get(name, {})
  return [(BASELINE_LABELS.get(k, f"baseline: {k}"), v) for k, v in table.items()]


def _row(cells) -> str:
  return "| " + " | ".join(cells) + " |"


def _table(header, rows) -> list[str]:
  return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _sources(section: str, reference: bool) -> list[tuple[str, Mapping]]:
  return list(PUBLISHED[section].items()) if reference else []


def checkpoint_line(checkpoint: Mapping) -> str:
  """One line naming the evaluated checkpoint (evaluator.checkpoint_info's dict)."""
  step = checkpoint.get("step")
  where = f"step {step}" if step is not None else "step unknown"
  if checkpoint.get("kind") == "best":
    metric, value = checkpoint.get("best_metric"), checkpoint.get("best_value")
    chosen = f"{metric} = {value:.6g}" if metric and value is not None else "the dev metric"
    return f"Checkpoint: {where}, the best by {chosen} (the best checkpoint kept in training)."
  return f"Checkpoint: {where}, the newest of the run."


def metrics_to_markdown(metrics: Mapping, reference: bool = False) -> str:
  """The paper's three tables (scores, heatmaps, misaligned words) as markdown.

  Args:
    metrics: the output of `compute_all_metrics` (sections may be missing).
    reference: print the published test-split numbers beside ours (only meaningful
      on the real RichHF-18K test split).

  Returns:
    Markdown text: one table per section present, words in percent as published.
  """
  protocol = metrics.get("protocol", protocols.PAPER)
  score_digits = lambda k: 4 if k == "mse" else 3
  lines = [f"### Evaluation protocol: {protocol}", "", PROTOCOL_NOTES[protocol], ""]
  if metrics.get("checkpoint"):
    lines += [checkpoint_line(metrics["checkpoint"]), ""]
  if "scores" in metrics:
    rows = []
    for s in features.SCORE_TYPES:
      ours = metrics["scores"].get(s)
      if ours is None:
        continue
      rows.append([s, OURS] + _cells(ours, SCORE_COLUMNS, score_digits))
      for label, values in _baseline_rows(metrics, "scores", s):
        label += f" ({values['value']:.3f})" if values.get("value") is not None else ""
        rows.append([s, label] + _cells(values, SCORE_COLUMNS, score_digits))
      for source, table in _sources("scores", reference):
        if s in table:
          rows.append([s, source] + _cells(table[s], SCORE_COLUMNS, score_digits))
    n = max((v.get("num_examples", 0) for v in metrics["scores"].values()), default=0)
    lines += [f"### Scores ({n} examples)", ""]
    lines += _table(["score", "source"] + [c for _, c in SCORE_COLUMNS], rows) + [""]
    if "scores" in metrics.get("baselines", {}):
      lines += [BASELINE_NOTES["scores"], ""]
  if "heatmaps" in metrics:
    rows = []
    for h in features.HEATMAP_TYPES:
      ours = metrics["heatmaps"].get(h)
      if ours is None:
        continue
      counts = f"{ours.get('num_maps', '?')} maps, {ours.get('num_gt_positive', '?')} GT>0"
      digits = lambda k: 5 if k.startswith("mse") else 3
      rows.append([h, f"{OURS} ({counts})"] + _cells(ours, HEATMAP_COLUMNS, digits))
      for label, values in _baseline_rows(metrics, "heatmaps", h):
        rows.append([h, label] + _cells(values, HEATMAP_COLUMNS, digits))
      for source, table in _sources("heatmaps", reference):
        if h in table:
          rows.append([h, source] + _cells(table[h], HEATMAP_COLUMNS, digits))
    lines += ["### Heatmaps (CC, KLD, SIM, NSS, AUC-Judd on GT>0 maps)", ""]
    lines += _table(["heatmap", "source"] + [c for _, c in HEATMAP_COLUMNS], rows) + [""]
    if "heatmaps" in metrics.get("baselines", {}):
      lines += [BASELINE_NOTES["heatmaps"], ""]
  if "words" in metrics:
    ours = metrics["words"]
    pct = lambda v: None if v is None else 100.0 * v
    rows = [[f"{OURS} ({ours.get('num_examples', '?')} examples)"]]
    rows[0] += [_fmt(pct(ours.get(k)), 1) for k, _ in WORD_COLUMNS]
    if "f1_gt_positive" in ours:
      n_pos = ours["num_examples"] - ours["num_without_reference_positive"]
      rows.append([f"{OURS}, only the {n_pos} examples with misaligned words"])
      rows[-1] += [_fmt(pct(ours.get(f"{k}_gt_positive")), 1) for k, _ in WORD_COLUMNS]
    for label, values in _baseline_rows(metrics, "words", None):
      rows.append([label] + [_fmt(pct(values.get(k)), 1) for k, _ in WORD_COLUMNS])
    for source, table in _sources("words", reference):
      rows.append([source] + [_fmt(table.get(k), 1) for k, _ in WORD_COLUMNS])
    decoding = f", {metrics['decoding']} decoding" if metrics.get("decoding") else ""
    if metrics.get("mark_bias") is not None:
      decoding += f", mark bias {metrics['mark_bias']:g}"
    lines += [f"### Misaligned words (per-example mean, %{decoding})", ""]
    lines += _table(["source"] + [c for _, c in WORD_COLUMNS], rows) + [""]
    if "words" in metrics.get("baselines", {}):
      lines += [BASELINE_NOTES["words"], ""]
  if reference:
    lines.append(
      "Published numbers: the PyTorch reproduction's README (github.com/youweiliang/RichHF) and "
      "the paper (Liang et al., CVPR 2024), the latter second-hand from a later paper's table; "
      "the paper's misalignment MSE is quoted without its subset and shown as MSE (all)."
    )
  return "\n".join(lines).rstrip() + "\n"
