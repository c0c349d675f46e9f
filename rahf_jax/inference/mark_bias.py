"""The constrained decoder's mark bias, as a workdir records it (`<workdir>/mark_bias.json`).

Constrained decoding (rahf_jax.models.constrained_decode) writes the `_0` mark after a word when
the decoder's logit of the mark plus `mark_bias` is above the logit of the next copied token.
Most prompt words are unmarked in training, so at bias 0 the decoder marks too few words;
`rahf-jax calibrate` (rahf_jax.evaluation.mark_calibration) chooses the bias that maximises the
misaligned-word F1 on a held-out split and records it here, for the checkpoint it was chosen on.
`Predictor.from_workdir` then decodes with it (0 when the record is absent or names another
checkpoint).

  {"mark_bias": 3.0, "checkpoint": {"kind": "best", "step": 1500}, "split": "dev",
   "num_examples": 200, "f1_by_bias": {"0.0": 0.387, ...}}
"""

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

MARK_BIAS_FILE = "mark_bias.json"


def mark_bias_path(workdir: str) -> str:
  return os.path.join(workdir, MARK_BIAS_FILE)


def write_mark_bias(workdir: str, record: Mapping[str, Any]) -> str:
  """Writes `record` (with "mark_bias" and "checkpoint") to the workdir; returns the path."""
  path = mark_bias_path(workdir)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(dict(record), f, indent=2)
  return path


def read_mark_bias(workdir: str, kind: str, step: int | None) -> float:
  """The recorded bias when it was chosen for this checkpoint (`kind` "best"/"newest", `step`);
  else 0.0, with a warning when a record exists for another checkpoint."""
  path = mark_bias_path(workdir)
  if not os.path.exists(path):
    return 0.0
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
    bias, chosen_for = float(record["mark_bias"]), dict(record["checkpoint"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    logging.warning("%s is unreadable (%s); decoding with mark bias 0.", path, e)
    return 0.0
  if chosen_for.get("kind") != kind or chosen_for.get("step") != step:
    logging.warning(
      "%s was chosen for the %s checkpoint of step %s, not this %s one of step %s; decoding "
      "with mark bias 0 (rerun `rahf-jax calibrate`).",
      path, chosen_for.get("kind"), chosen_for.get("step"), kind, step,
    )  # fmt: skip
    return 0.0
  return bias
