"""The demo's REPORT.md: the checkpoint evaluated, the baseline rows, the curves link."""

import json
import os

from rahf_jax import demo
from rahf_jax.evaluation import evaluator


def _fake_best_checkpoint(workdir, step, value):
  meta = os.path.join(workdir, "best", str(step), "meta")
  os.makedirs(os.path.join(workdir, "best", str(step), "state"))
  os.makedirs(meta)
  with open(os.path.join(meta, "commit_success.txt"), "w") as f:
    f.write("Checkpoint commit was successful")
  with open(os.path.join(meta, "metadata"), "w") as f:
    json.dump({"step": step, "best_metric": "dev/loss", "best_value": value}, f)


def test_checkpoint_info(tmp_path):
  assert evaluator.checkpoint_info(str(tmp_path)) == {"kind": "newest", "step": None}
  os.makedirs(tmp_path / "checkpoints" / "40" / "state")
  os.makedirs(tmp_path / "checkpoints" / "60" / "state")
  assert evaluator.checkpoint_info(str(tmp_path)) == {"kind": "newest", "step": 60}
  _fake_best_checkpoint(str(tmp_path), 40, 1.5)
  assert evaluator.checkpoint_info(str(tmp_path), best=True) == {
    "kind": "best", "step": 40, "best_metric": "dev/loss", "best_value": 1.5,
  }  # fmt: skip


def test_report_names_the_checkpoint_and_links_the_curves(tmp_path):
  out = tmp_path / "demo_out"
  os.makedirs(out / "eval_test")
  (out / "eval_test" / "words.tsv").write_text("predicted\treference\na b_0\ta_0 b\n")
  (out / "learning_curves.png").write_bytes(b"")
  checkpoint = {"kind": "best", "step": 1000, "best_metric": "dev/loss", "best_value": 2.5}
  tables_md = "| heatmap | source |\n| --- | --- |\n| implausibility | baseline: all zeros |\n"
  path = demo.write_report(
    str(out), str(tmp_path / "tfds"), {"train": 3.0}, tables_md, checkpoint,
    str(out / "learning_curves.png"),
  )  # fmt: skip
  report = open(path, encoding="utf-8").read()
  assert "## Checkpoint evaluated" in report
  assert "Checkpoint: step 1000, the best by dev/loss = 2.5" in report
  assert "baseline: all zeros" in report
  assert "![learning curves](learning_curves.png)" in report
  assert "own colour scale" in report


def test_a_run_of_another_demo_config_is_recognised(tmp_path):
  """An older demo_out's run (another config) cannot resume, so the demo starts it again."""
  from rahf_jax.sharding.workdir_files import save_config

  config = demo.load_config(*demo.DEMO_CONFIG)
  workdir = str(tmp_path / "workdir")
  assert not demo._is_other_run(workdir, config)  # no run yet
  save_config(config, workdir)
  assert not demo._is_other_run(workdir, config)  # the same config resumes
  older = demo.load_config(*demo.DEMO_CONFIG)
  older.model.overrides.image_size = 64
  assert demo._is_other_run(workdir, older)
