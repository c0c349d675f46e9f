"""End to end on CPU: synthetic RichHF data -> richhf18k build -> train -> eval -> predict.

Small but real: the builder, the SeqIO task, the trainer, the evaluator and the CLI's predict
run exactly as `make demo` runs them, on 48 training examples for 240 steps of batch 8, with
the demo's model at a 64x64 input (the scenes are rendered at 64x64; an 8x8 grid from a
three-conv stem). The training runs on one CPU device, as the demo's does; the evaluation, the
CLI's predict and calibrate on the 8 fake devices of tests/conftest.py.

What a run this small shows: the model fits the images it trains on, every output from the
image (each map and score its own example's). The learning check holds the trained model, on
its training split, to more than the trivial baselines the evaluator scores beside it: heatmap
CC above the mean ground-truth map's, score PLCC well above 0 (a constant score has none) with
an MSE below the mean score's, and misaligned-word F1 above the unmarked prompt's (0) and the
all-marked prompt's. It does not show generalisation: at this size the held-out maps stay at
the mean map's CC or below (measured up to 360 steps on 96 examples); the demo's 1,500 steps on
8,000 scenes are where held-out figures are measured (README.md, "Demo results").
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from data_testlib import build_synthetic_richhf18k

from rahf_jax import features as F
from rahf_jax.demo import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


STEPS = 240


def _tiny_config(data_dir):
  c = load_config("configs/rahf.py", "tiny,multihead")
  c.data.data_dir = str(data_dir)
  # The demo's model at the scenes' own 64x64 (not upsampled to 128): a 3-conv stem to the same
  # 8x8 grid, a quarter of the stem's work.
  c.model.overrides.image_size = 64
  c.model.overrides.vit.patch_size = 8
  c.model.overrides.vit.stem_channels = (32, 64, 64)
  c.batch_size = 8
  c.eval_batch_size = 16
  c.num_train_steps = STEPS
  c.warmup_steps = 10
  c.log_every = 40
  c.eval_every = 40
  c.checkpoint_every = 80
  # Maps start at 0.5 (the model's default), not the demo's 0.01: a constant the learning
  # check must leave behind, and a loss that starts high (test_losses_fall).
  c.model.overrides.heatmap_head.init_value = 0.5
  return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("e2e")
  sizes = dict(num_train=48, num_dev=16, num_test=16, image_size=64, rows_per_group=16, seed=5)
  build_synthetic_richhf18k(str(root), **sizes)
  config = _tiny_config(root / "tfds")
  return root, config, _train_on_one_device(root / "tfds", root / "run")


_TRAIN = """
import json, sys
sys.path.insert(0, {tests!r})
from test_end_to_end import _tiny_config
from rahf_jax.train.loop import train_and_evaluate
summary = train_and_evaluate(_tiny_config({data_dir!r}), {workdir!r})
with open({out!r}, "w") as f:
  json.dump({{k: summary[k] for k in ("train_losses", "eval")}}, f, default=float)
"""


def _train_on_one_device(data_dir, workdir) -> dict:
  """`train_and_evaluate(_tiny_config(data_dir), workdir)` in a child process with one CPU
  device, as `make demo` trains on a CPU machine (this process has tests/conftest.py's 8 fake
  devices, whose per-device launches and gradient all-reduce a model this small pays for: on 2
  cores of an Intel Xeon, this run plus an evaluation of its training split took 76 s in a
  one-device process and 108 s in an 8-device one). Returns the summary's train losses and dev
  evaluations, keyed by step."""
  out = f"{workdir}.summary.json"
  code = _TRAIN.format(tests=os.path.dirname(__file__), data_dir=str(data_dir),
                       workdir=str(workdir), out=out)  # fmt: skip
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ["XLA_FLAGS"])
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=1 {flags}")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                        timeout=1200, cwd=REPO)  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out, encoding="utf-8") as f:
    summary = json.load(f)
  return {key: {int(step): v for step, v in summary[key].items()} for key in summary}


def test_predict_through_the_cli(trained, tmp_path):
  """`rahf-jax predict` on the trained run: JSON on stdout, overlay and prediction.json written.
  (The evaluation's files are checked in test_demo_report_from_the_run.)"""
  from PIL import Image

  root, _, _ = trained
  run = root / "run"
  assert (run / "config.json").exists()

  image = (np.random.default_rng(0).uniform(size=(80, 96, 3)) * 255).astype(np.uint8)
  Image.fromarray(image).save(tmp_path / "x.png")
  out = tmp_path / "pred"
  proc = subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", "predict", f"--workdir={run}",
     f"--image={tmp_path / 'x.png'}", "--prompt=a red circle and a blue square", f"--out={out}"],
    capture_output=True, text=True, timeout=600, cwd=REPO,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout[proc.stdout.index("{") :])
  assert set(result["scores"]) == {"plausibility", "alignment", "aesthetics", "overall"}
  assert all(0.0 <= v <= 1.0 for v in result["scores"].values())
  assert (out / "overlay.png").exists() and (out / "prediction.json").exists()


def learning_failures(metrics) -> list[str]:
  """What of `metrics` (the evaluator's, with its "baselines") does not beat a trivial
  baseline: each map's CC must exceed the mean ground-truth map's and its MSE the all-zeros
  and mean map's; each score's PLCC must be above 0.5 (a constant has none; 0.5 is beyond
  chance for 48 examples, p < 1e-3) with an MSE under half the mean score's; the misaligned
  words' F1 must exceed the all-marked prompt's, which exceeds the unmarked prompt's 0."""
  base, failures = metrics["baselines"], []
  for h in F.HEATMAP_TYPES:
    ours, mean_map = metrics["heatmaps"][h], base["heatmaps"][h]["mean_gt_map"]
    zeros = base["heatmaps"][h]["all_zeros"]
    if not ours["cc"] > mean_map["cc"]:
      failures.append(f"{h} CC {ours['cc']} <= the mean map's {mean_map['cc']:.3f}")
    if not ours["mse_all"] < min(zeros["mse_all"], mean_map["mse_all"]):
      failures.append(f"{h} MSE {ours['mse_all']} >= all-zeros' or the mean map's")
  for s in F.SCORE_TYPES:
    ours, mean = metrics["scores"][s], base["scores"][s]["mean_score"]
    if not (ours["plcc"] is not None and ours["plcc"] > 0.5):
      failures.append(f"{s} PLCC {ours['plcc']} <= 0.5")
    if not ours["mse"] < 0.5 * mean["mse"]:
      failures.append(f"{s} MSE {ours['mse']} >= half the mean score's {mean['mse']:.4f}")
  words, marked = metrics["words"]["f1"], base["words"]["all_marked"]["f1"]
  if not words > marked > base["words"]["unmarked_prompt"]["f1"] == 0.0:
    failures.append(f"word F1 {words} <= the all-marked prompt's {marked:.3f}")
  return failures


def test_the_model_beats_the_trivial_baselines_on_its_training_images(trained):
  """The final checkpoint on the 48 training examples, words decoded at mark bias 0."""
  from rahf_jax.evaluation.evaluator import evaluate
  from rahf_jax.inference.predictor import Predictor

  root, _, _ = trained
  predictor = Predictor.from_workdir(str(root / "run"), best=False, mark_bias=0.0)
  assert predictor.step == STEPS
  metrics = evaluate(predictor, "train")[0]
  assert not learning_failures(metrics), learning_failures(metrics)


def test_losses_fall(trained):
  _, _, summary = trained
  losses = [summary["train_losses"][k] for k in sorted(summary["train_losses"])]
  assert len(losses) == STEPS
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
  # The dev loss falls, then rises as the run fits its 48 images (the best checkpoint by dev
  # loss, test_demo_report_from_the_run, is the lowest).
  dev = [summary["eval"][k]["dev/loss"] for k in sorted(summary["eval"])]
  assert min(dev) < dev[0]


def test_demo_report_from_the_run(trained, tmp_path):
  """The demo's evaluation and REPORT.md on this run: the evaluator's files (metrics, words,
  overlays), the best checkpoint by dev/loss, named by its step, the baseline rows beside ours
  and the learning curves from the run's events."""
  from rahf_jax.demo import evaluate_and_report
  from rahf_jax.sharding.workdir_files import checkpoint_steps

  root, config, summary = trained
  run = str(root / "run")
  assert config.best_metric == "dev/loss"
  best_step = checkpoint_steps(run, best=True)[-1]
  dev = {step: values["dev/loss"] for step, values in summary["eval"].items()}
  assert best_step == min(dev, key=dev.get)
  out = tmp_path / "demo_out"
  report = open(evaluate_and_report(str(out), run, str(root / "tfds"), {}), encoding="utf-8").read()
  assert f"Checkpoint: step {best_step}, the best by dev/loss" in report
  for name in ("metrics.json", "metrics.md", "words.tsv"):
    assert (out / "eval_test" / name).stat().st_size > 0
  assert len(list((out / "eval_test" / "overlays").glob("*.png"))) == 8
  tables = (out / "eval_test" / "metrics.md").read_text()
  assert "PLCC" in tables and "AUC-Judd" in tables and "F1" in tables
  metrics = json.loads((out / "eval_test" / "metrics.json").read_text())
  assert metrics["checkpoint"]["kind"] == "best" and metrics["checkpoint"]["step"] == best_step
  # The words are decoded with the mark bias chosen on dev for this checkpoint.
  record = json.loads((root / "run" / "mark_bias.json").read_text())
  assert record["checkpoint"]["kind"] == "best" and record["checkpoint"]["step"] == best_step
  assert record["split"] == "dev"
  assert metrics["mark_bias"] == record["mark_bias"]
  assert f"constrained decoding, mark bias {record['mark_bias']:g}" in report
  for row in ("baseline: mean score", "baseline: all zeros", "baseline: mean GT map",
              "baseline: unmarked prompt"):  # fmt: skip
    assert row in report
  # The all-zeros map is exact on the GT=0 maps and has no CC (a constant map).
  for h in ("implausibility", "misalignment"):
    zeros = metrics["baselines"]["heatmaps"][h]["all_zeros"]
    assert zeros["mse_gt0"] == 0.0 and zeros["cc"] is None
  assert "![learning curves](learning_curves.png)" in report
  from PIL import Image

  curves = Image.open(out / "learning_curves.png")
  assert curves.size[0] > 0 and curves.size[1] > 0


def test_calibrate_records_the_best_dev_bias_and_predictions_use_it(trained):
  """`rahf-jax calibrate` decodes dev once per bias; each F1 is the evaluator's at that bias, the
  record holds the best, and a restored predictor of that checkpoint decodes with it. A bias
  too large to lose marks every word: the all-marked baseline's F1."""
  from rahf_jax import features as F
  from rahf_jax.evaluation import baselines, evaluator, mark_calibration
  from rahf_jax.inference.predictor import Predictor

  root, _, _ = trained
  run = str(root / "run")
  proc = subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", "calibrate", f"--workdir={run}"],
    capture_output=True, text=True, timeout=600, cwd=REPO,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = json.loads((root / "run" / "mark_bias.json").read_text())
  assert f"chose mark bias {record['mark_bias']:g} on dev" in proc.stdout
  f1 = {float(b): v for b, v in record["f1_by_bias"].items()}
  assert sorted(f1) == list(mark_calibration.CANDIDATES)
  assert f1[record["mark_bias"]] == max(f1.values())
  # By default the best checkpoint (the run keeps one), keyed by its step and params' digest.
  from rahf_jax.sharding.workdir_files import checkpoint_steps

  assert record["checkpoint"]["kind"] == "best"
  assert record["checkpoint"]["step"] == checkpoint_steps(run, best=True)[-1]
  assert len(record["checkpoint"]["params_digest"]) == 24

  predictor = Predictor.from_workdir(run)
  assert predictor.mark_bias == record["mark_bias"]
  for bias in {0.0, record["mark_bias"]}:
    predictor.mark_bias = bias
    metrics, collected = evaluator.evaluate(predictor, "dev")
    assert metrics["words"]["f1"] == f1[bias], bias

  by_bias, n = mark_calibration.f1_by_mark_bias(predictor, "dev", candidates=(1e6,))
  refs = collected.ref[F.WORDS_TYPE]
  assert n == len(refs) > 0
  assert by_bias[1e6]["f1"] == baselines.word_baselines(refs)[baselines.ALL_MARKED]["f1"]
