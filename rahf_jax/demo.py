"""`rahf-jax demo` (`make demo`): synthetic RichHF-format data -> `tfds build` -> train -> eval.

Writes into the output folder (default demo_out/):
  raw/        the synthetic RichHF-18K: label TFRecords + Pick-a-Pic-style parquet (manual_dir)
  tfds/       the `tfds build` of the richhf18k builder over raw/ (+ its build report)
  workdir/    the training run of configs/rahf.py:tiny,multihead (checkpoints, TensorBoard)
  eval_test/  metrics.json, metrics.md, words.tsv and overlays/ on the synthetic test split,
              from the best checkpoint by the dev metric (config.best_metric) when one is kept,
              its words decoded with the mark bias chosen on dev (workdir/mark_bias.json)
  learning_curves.png  the train (line) and dev (dots) loss terms per output over the steps
  REPORT.md   the timings, the checkpoint evaluated, the tables with their baseline rows, the
              learning curves and where to look
Each stage is skipped when its output is already there, so an interrupted demo resumes.

`rahf-jax demo --applications` (after the demo) measures best-of-n and the repair loop against
the synthetic truth into APPLICATIONS.md and applications.json (rahf_jax.reward.applications).
"""

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import time

import rahf_jax
from rahf_jax import quiet_start

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(rahf_jax.__file__)))
BUILDER_DIR = os.path.join(REPO_ROOT, "rahf_jax", "data", "richhf18k")
DEMO_CONFIG = ("configs/rahf.py", "tiny,multihead")
# synthetic.SyntheticConfig fields. 8,000 training scenes: with 2,000 the score heads memorised
# them (train error falling, dev error rising past the labels' variance); making scenes costs
# about 40 s on 2 cores, far less than the training they feed.
DEMO_DATA = dict(num_train=8000, num_dev=200, num_test=200)


def config_module(path: str):
  """The module of a config file (relative paths are taken from the repository root)."""
  full = path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)
  if not os.path.exists(full):
    raise FileNotFoundError(f"config file {full!r} not found; run the demo from a repo checkout.")
  spec = importlib.util.spec_from_file_location("rahf_config", full)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(path: str, arg: str):
  """`get_config(arg)` of a config file (as `--config path:arg` would)."""
  return config_module(path).get_config(arg)


@contextlib.contextmanager
def _stage(name: str, timings: dict):
  """Prints a stage's start and end and records its duration in `timings`."""
  print(f"\n=== demo: {name}", flush=True)
  start = time.time()
  yield
  timings[name] = time.time() - start
  print(f"=== demo: {name} done in {timings[name]:.0f}s", flush=True)


def make_data(out_dir: str, timings: dict) -> str:
  """Synthetic RichHF-format data in out/raw, built by `tfds build` into out/tfds."""
  from rahf_jax.data import synthetic  # noqa: PLC0415 (TensorFlow)

  raw, data_dir = os.path.join(out_dir, "raw"), os.path.join(out_dir, "tfds")
  config = synthetic.SyntheticConfig(**DEMO_DATA)
  with _stage("synthetic RichHF-format data", timings):
    if not synthetic.is_current(raw, config):
      # Data of another generator version or size (an older demo_out) is made again; its build,
      # the run trained on it and that run's evaluation are removed with it.
      stale = (raw, os.path.join(data_dir, "richhf18k"), *_run_dirs(out_dir))
      _remove(stale, "made from another version of the demo's data")
      synthetic.write_synthetic_richhf(raw, config, workers=os.cpu_count() or 1)
  with _stage("tfds build richhf18k", timings):
    from rahf_jax.data.tasks import TFDS_VERSION  # noqa: PLC0415 (SeqIO)

    # A build of another builder version (an older demo_out) is built again beside it.
    if not os.path.isdir(os.path.join(data_dir, "richhf18k", TFDS_VERSION)):
      tfds_cli = os.path.join(os.path.dirname(sys.executable), "tfds")
      cmd = [tfds_cli, "build", BUILDER_DIR, f"--manual_dir={raw}", f"--data_dir={data_dir}"]
      print(" ".join(cmd), flush=True)
      quiet_start.run_filtered(cmd)  # TensorFlow's start-up notices left out (unless --verbose)
  return data_dir


def _run_dirs(out_dir: str) -> tuple[str, str]:
  return os.path.join(out_dir, "workdir"), os.path.join(out_dir, "eval_test")


def _remove(paths, why: str) -> None:
  for path in paths:
    if os.path.isdir(path):
      print(f"removing {path}: {why}", flush=True)
      shutil.rmtree(path)


def _is_other_run(workdir: str, config) -> bool:
  """True when workdir holds a run of another config (an older demo's), which cannot resume."""
  from rahf_jax.sharding.workdir_files import config_to_dict  # noqa: PLC0415

  try:
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, ValueError):
    return False
  return saved != json.loads(json.dumps(config_to_dict(config)))


def _build_report(data_dir: str) -> str:
  lines = []
  for root, _, files in os.walk(os.path.join(data_dir, "richhf18k")):
    for f in sorted(files):
      if f.startswith("build_report") and f.endswith(".json"):
        with open(os.path.join(root, f), encoding="utf-8") as fh:
          lines.append(f"`{f}`: " + json.dumps(json.load(fh).get("counts", {})))
  return "\n".join(f"- {line}" for line in lines) or "- (no build report found)"


def write_report(
  out_dir: str,
  data_dir: str,
  timings: dict,
  metrics_md: str,
  checkpoint: dict | None = None,
  curves: str | None = None,
) -> str:
  """out/REPORT.md: timings, the data build's counts, the checkpoint evaluated, the tables (with
  their baseline rows), the learning curves and where the pictures are.

  Args:
    checkpoint: evaluator.checkpoint_info's dict of the evaluated checkpoint.
    curves: path of the learning-curves PNG (linked relative to out_dir), or None.
  """
  from rahf_jax.evaluation.tables import checkpoint_line  # noqa: PLC0415

  path = os.path.join(out_dir, "REPORT.md")
  timing_rows = "\n".join(f"| {k} | {v:.0f} |" for k, v in timings.items())
  with open(os.path.join(out_dir, "eval_test", "words.tsv"), encoding="utf-8") as f:
    words = f.read().splitlines()[1:9]
  sample = "\n".join(
    f"- predicted `{p}`\n  true      `{t}`" for p, t in (w.split("\t") for w in words)
  )
  ckpt = checkpoint_line(checkpoint) if checkpoint else "Checkpoint: not recorded."
  if curves:
    rel = os.path.relpath(curves, out_dir)
    curves_md = (
      f"[`{rel}`]({rel}): one panel per loss term (the total, each score, each heatmap, the "
      "words' text loss, the weighted sums), train as a line, dev as dots.\n\n"
      f"![learning curves]({rel})"
    )
  else:
    curves_md = "No train scalars were found in the workdir's event files."
  with open(path, "w", encoding="utf-8") as f:
    f.write(
      "# rahf-jax demo report\n\n"
      "Tiny RAHF (multi-head) trained on CPU on synthetic RichHF-format data, evaluated on the "
      "synthetic test split with the paper's metrics.\n\n"
      f"## Timings (seconds)\n\n| stage | s |\n|---|---|\n{timing_rows}\n"
      f"| total | {sum(timings.values()):.0f} |\n\n"
      f"## Data build\n\n{_build_report(data_dir)}\n\n"
      f"## Checkpoint evaluated\n\n{ckpt}\n\n"
      "## Metrics (synthetic test split)\n\n"
      "Each table has the trivial baselines under the model's row, scored on the same split and "
      "ground truth: a model that does not beat them has not learned that output.\n\n"
      f"{metrics_md}\n\n"
      f"## Learning curves\n\n{curves_md}\n\n"
      f"## Misaligned words (first examples)\n\n{sample}\n\n"
      "## Pictures\n\n`eval_test/overlays/*.png`: image | predicted heatmaps | ground truth. "
      "Each heatmap is drawn on its own colour scale, 0 to the map's maximum, written under the "
      "panel beside the colour bar, so a weak prediction shows; compare values by those ranges, "
      "not by colour across panels.\n"
    )
  return path


def evaluate_and_report(out_dir: str, workdir: str, data_dir: str, timings: dict) -> str:
  """Evaluates workdir's checkpoint on the test split into out/eval_test (the best checkpoint
  by the dev metric when the run kept one, else the newest; its misaligned words decoded with the
  mark bias chosen on the dev split, workdir/mark_bias.json), draws out/learning_curves.png from
  the run's events and writes out/REPORT.md; returns the report's path."""
  from rahf_jax.evaluation.curves import write_learning_curves  # noqa: PLC0415
  from rahf_jax.evaluation.evaluator import evaluate_workdir  # noqa: PLC0415
  from rahf_jax.evaluation.mark_calibration import calibrate_workdir  # noqa: PLC0415
  from rahf_jax.evaluation.tables import metrics_to_markdown  # noqa: PLC0415
  from rahf_jax.sharding.workdir_files import checkpoint_steps  # noqa: PLC0415

  eval_dir = os.path.join(out_dir, "eval_test")
  best = bool(checkpoint_steps(workdir, best=True))
  with _stage("choose the mark bias on the dev split", timings):
    calibrate_workdir(workdir, "dev", data_dir, best=best)
  with _stage("evaluate on the synthetic test split", timings):
    metrics = evaluate_workdir(workdir, "test", data_dir, eval_dir, best=best, reference=False)
  curves = write_learning_curves(
    workdir, os.path.join(out_dir, "learning_curves.png"), title=f"{':'.join(DEMO_CONFIG)}"
  )
  # The report names the checkpoint in its own section, so the tables go in without that line.
  metrics_md = metrics_to_markdown({k: v for k, v in metrics.items() if k != "checkpoint"})
  return write_report(out_dir, data_dir, timings, metrics_md, metrics.get("checkpoint"), curves)


def run_applications(out_dir: str = "demo_out", num_prompts: int | None = None) -> None:
  """Best-of-n and the repair loop measured on the finished demo in out_dir (its model and its
  data's test split) into out/APPLICATIONS.md and out/applications.json."""
  from rahf_jax.reward import applications_report  # noqa: PLC0415

  num = applications_report.DEFAULT_NUM_PROMPTS if num_prompts is None else num_prompts
  md_path, json_path = applications_report.run(out_dir, num)
  with open(md_path, encoding="utf-8") as f:
    print(f.read())
  print(f"wrote {md_path} and {json_path}")


def run_demo(out_dir: str = "demo_out", data_only: bool = False) -> None:
  """Runs every stage of the demo into out_dir (see the module docstring)."""
  from rahf_jax.train.loop import train_and_evaluate  # noqa: PLC0415

  logging.getLogger().setLevel(logging.INFO)
  timings: dict[str, float] = {}
  out_dir = os.path.abspath(out_dir)
  data_dir = make_data(out_dir, timings)
  if data_only:
    print(f"data ready: --data_dir={data_dir}")
    return
  workdir = os.path.join(out_dir, "workdir")
  config = load_config(*DEMO_CONFIG)
  config.data.data_dir = data_dir
  if _is_other_run(workdir, config):
    _remove(_run_dirs(out_dir), "a run of another demo config")
  with _stage(f"train {':'.join(DEMO_CONFIG)} ({config.num_train_steps} steps)", timings):
    train_and_evaluate(config, workdir)
  report = evaluate_and_report(out_dir, workdir, data_dir, timings)
  with open(os.path.join(out_dir, "eval_test", "metrics.md"), encoding="utf-8") as f:
    metrics_md = f.read()
  print(f"\n{metrics_md}\n\nDemo finished in {sum(timings.values()):.0f}s; report: {report}")
