"""The mark-bias record: used only for the checkpoint it was chosen on; the choice of the best."""

import json
import logging

from rahf_jax.evaluation.mark_calibration import choose_mark_bias
from rahf_jax.inference.mark_bias import MARK_BIAS_FILE, read_mark_bias, write_mark_bias


def test_the_record_applies_to_its_checkpoint_only(tmp_path, caplog):
  workdir = str(tmp_path)
  assert read_mark_bias(workdir, "best", 100) == 0.0  # no record: no bias, no warning
  write_mark_bias(workdir, {"mark_bias": 2.5, "checkpoint": {"kind": "best", "step": 100}})
  assert read_mark_bias(workdir, "best", 100) == 2.5
  with caplog.at_level(logging.WARNING):
    assert read_mark_bias(workdir, "best", 200) == 0.0
    assert read_mark_bias(workdir, "newest", 100) == 0.0
  assert sum("rerun `rahf-jax calibrate`" in r.message for r in caplog.records) == 2


def test_an_unreadable_record_means_no_bias(tmp_path, caplog):
  (tmp_path / MARK_BIAS_FILE).write_text("{not json")
  with caplog.at_level(logging.WARNING):
    assert read_mark_bias(str(tmp_path), "best", 1) == 0.0
  assert "unreadable" in caplog.text
  (tmp_path / MARK_BIAS_FILE).write_text(json.dumps({"mark_bias": 1.0}))  # no checkpoint
  assert read_mark_bias(str(tmp_path), "best", 1) == 0.0


def test_the_best_f1_wins_and_a_tie_goes_to_the_smaller_bias():
  by_bias = {0.0: {"f1": 0.1}, 1.0: {"f1": 0.4}, 2.0: {"f1": 0.4}, 3.0: {"f1": 0.3}}
  assert choose_mark_bias(by_bias) == 1.0
  assert choose_mark_bias({0.0: {"f1": None}, 0.5: {"f1": 0.0}}) == 0.0
