"""The t5x route learns what the native route learns: the demo's run through both, side by side.

Both routes train configs/rahf.py:tiny,multihead (seeds 0, 1, 2; 1,500 steps of batch 32) on
one build of the demo's data (`rahf_jax.demo.make_data`: 8,000 + 200 + 200 synthetic scenes), are
scored on its test split by the same metric code: `rahf-jax eval --decoding free` for the native
run, `t5x.eval` with configs/t5x/runs/eval.gin (the tasks' SeqIO metric functions) for the t5x
one, both decoding the misaligned words freely (`--gin.DECODING="free"`; the adapter's default is
the native route's constrained decoding, which needs each run's own calibrated mark bias).

Six 1,500-step runs (a native one alone takes 11 minutes on 2 CPU cores), so it runs only with
t5x installed and when asked (RAHF_T5X_DEMO_PARITY_SEEDS picks the seeds, default 0,1,2):

  RAHF_T5X_DEMO_PARITY=1 pytest tests/t5x/test_t5x_demo_parity.py -s

The mean of each score and heatmap figure over the seeds must be within the bound of
route_parity_testlib of the native mean: 0.05, or the range of one route's own seeds where that
is wider (from these runs and from the recorded ones), never the range over both routes, which
would also hold the gap being bounded. One seed per route is not enough: the recorded seed-0
pair differs by 0.053 on alignment PLCC, while the three seeds' means differ by 0.034
(tests/t5x/test_route_parity.py checks the rule on the recorded figures without t5x). MSEs are
compared as ratios to their trivial baseline (the mean score, the all-zeros map), which the
native evaluation scores on the same split. The decoder is checked by its teacher-forced loss on
the dev split (t5x's train-eval over 192 of the 200 dev examples against the native dev loss)
under the same rule: the misaligned-word F1 is printed but not held to a bound (free decoding;
six runs scattered from 0.09 to 0.16).
"""

import json
import os
import subprocess
import sys

import pytest
import route_parity_testlib as rp

from rahf_jax.evaluation.curves import read_scalars

pytest.importorskip(
  "t5x.models",
  reason="t5x is not installed: the t5x route is not trained beside the native one (README.md, "
  "section t5x, installs it; the parity rule itself runs in test_route_parity.py)",
)
pytestmark = [
  pytest.mark.skipif(
    os.environ.get("RAHF_T5X_DEMO_PARITY") != "1",
    reason="six 1,500-step trainings; set RAHF_T5X_DEMO_PARITY=1 to run it",
  ),
  pytest.mark.filterwarnings("ignore:Sharding info not provided:UserWarning"),
]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASK = "richhf18k_multihead_tiny_demo_t5x"
SCORES = ("plausibility", "alignment", "aesthetics", "overall")
HEATMAPS = ("implausibility", "misalignment")


def _run(cmd, env):
  done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
  assert done.returncode == 0, done.stderr[-3000:]


def _figures(scores, heatmaps, baselines) -> dict:
  """{metric: value} with MSEs as ratios to the trivial baselines of `baselines`."""
  out = {}
  for k in SCORES:
    out[f"{k}/plcc"] = scores[k]["plcc"]
    out[f"{k}/mse_vs_mean_score"] = scores[k]["mse"] / baselines["scores"][k]["mean_score"]["mse"]
  for k in HEATMAPS:
    out[f"{k}/cc"] = heatmaps[k]["cc"]
    out[f"{k}/auc_judd"] = heatmaps[k]["auc_judd"]
    zeros = baselines["heatmaps"][k]["all_zeros"]["mse_all"]
    out[f"{k}/mse_vs_all_zeros"] = heatmaps[k]["mse_all"] / zeros
  return out


def _t5x_metrics(path: str) -> tuple[dict, dict, float]:
  with open(path, encoding="utf-8") as f:
    m = json.loads(f.read().strip().splitlines()[-1])
  scores = {k: {"plcc": m[f"{k}/plcc"], "mse": m[f"{k}/mse"]} for k in SCORES}
  heatmaps = {k: {t: m[f"{k}/{t}"] for t in ("cc", "auc_judd", "mse_all")} for k in HEATMAPS}
  return scores, heatmaps, m["misaligned_words/f1_gt_positive"]


def _native_figures(data_dir, out, seed, env) -> tuple[dict, dict, float]:
  """(figures, baselines, words F1) of `rahf-jax train` + `rahf-jax eval --decoding free`."""
  cli = [sys.executable, "-m", "rahf_jax.cli"]
  run, evaluated = out / f"native_{seed}", out / f"native_{seed}_eval"
  _run([*cli, "train", "--config=configs/rahf.py:tiny,multihead", f"--workdir={run}",
        f"--config.data.data_dir={data_dir}", f"--config.seed={seed}"], env)  # fmt: skip
  _run([*cli, "eval", f"--workdir={run}", "--split=test", f"--data_dir={data_dir}",
        "--decoding=free", f"--out={evaluated}"], env)  # fmt: skip
  with open(evaluated / "metrics.json", encoding="utf-8") as f:
    n = json.load(f)
  assert n["checkpoint"]["step"] == 1500
  figures = _figures(n["scores"], n["heatmaps"], n["baselines"])
  figures["dev text loss"] = read_scalars(str(run))["dev/text_loss"][-1][1]
  return figures, n["baselines"], n["words"]["f1_gt_positive"]


def _t5x_figures(out, seed, baselines, env) -> tuple[dict, float]:
  """(figures, words F1) of `t5x.train` + `t5x.eval` with the gin files."""
  model_dir = out / f"t5x_{seed}"
  t5x_run = [sys.executable, "-m"]
  gin_model = "--gin_file=configs/t5x/models/tiny_multihead.gin"
  _run([*t5x_run, "t5x.train", gin_model, "--gin_file=configs/t5x/runs/local_tiny_cpu.gin",
        f'--gin.MODEL_DIR="{model_dir}"', "--gin.TRAIN_STEPS=1500", "--gin.EVAL_PERIOD=500",
        "--gin.utils.SaveCheckpointConfig.period=500", "--gin.EVAL_STEPS=6",
        f"--gin.RANDOM_SEED={seed}", "--gin.train.infer_eval_dataset_cfg=None"], env)  # fmt: skip
  _run([*t5x_run, "t5x.eval", gin_model, "--gin_file=configs/t5x/runs/eval.gin",
        f'--gin.CHECKPOINT_PATH="{model_dir}/checkpoint_1500"',
        f'--gin.EVAL_OUTPUT_DIR="{model_dir}/eval_test"',
        '--gin.DECODING="free"'], env)  # fmt: skip
  scores, heatmaps, f1 = _t5x_metrics(f"{model_dir}/eval_test/inference_eval/{TASK}-metrics.jsonl")
  figures = _figures(scores, heatmaps, baselines)
  text_loss = read_scalars(f"{model_dir}/training_eval/{TASK}")["rahf/text_loss"]
  figures["dev text loss"] = text_loss[-1][1]
  return figures, f1


def test_t5x_demo_runs_match_the_native_runs(tmp_path):
  from rahf_jax import demo

  seeds = [int(s) for s in os.environ.get("RAHF_T5X_DEMO_PARITY_SEEDS", "0,1,2").split(",")]
  data_dir = demo.make_data(str(tmp_path / "demo"), {})
  env = dict(os.environ, RAHF_DATA_DIR=data_dir, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
  env.pop("XLA_FLAGS", None)  # one CPU device for both routes

  native, t5x, f1 = {}, {}, {"native": [], "t5x": []}
  for seed in seeds:
    figures, baselines, words = _native_figures(data_dir, tmp_path, seed, env)
    for k, v in figures.items():
      native.setdefault(k, []).append(v)
    f1["native"].append(words)
    figures, words = _t5x_figures(tmp_path, seed, baselines, env)
    for k, v in figures.items():
      t5x.setdefault(k, []).append(v)
    f1["t5x"].append(words)
  rows = rp.parity_table(native, t5x)
  print(f"\nseeds {seeds}\n| metric | native mean | t5x mean | t5x - native | bound |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['metric']} | {r['native']:.4f} | {r['t5x']:.4f} | {r['gap']:+.4f} | "
          f"{r['bound']:.3f} |")  # fmt: skip
  print(f"| misaligned words F1 (examples with one) | {sum(f1['native']) / len(seeds):.4f} | "
        f"{sum(f1['t5x']) / len(seeds):.4f} | | not bounded |")  # fmt: skip
  assert not rp.failures(rows), "; ".join(rp.failures(rows))
