"""Smoke tests of the benchmarks (bench/): they run on CPU and print complete tables.

No timing is asserted; the derived figures are checked against the raw ones they come from
and against the model's own FLOP counter.
"""

import json
import math
import os
import statistics
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(REPO, "bench")


def _run(script, args, tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [sys.executable, os.path.join(BENCH, script), *args],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _last_table(stdout):
  """The markdown table at the end of stdout: (header cells, row cell lists)."""
  lines = stdout.rstrip().splitlines()
  start = max(i for i, line in enumerate(lines) if line.startswith("|---"))
  cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
  rows = [cells(line) for line in lines[start + 1 :]]
  assert all(line.startswith("|") for line in lines[start - 1 :]), "table is not printed last"
  return cells(lines[start - 1]), rows


# The test model with one layer per stack, in float32: every column is measured and derived as
# for any model, and the run takes half the time (30 s against 60 s on 2 busy cores). Passed as
# --model_overrides, so the analytic FLOPs are checked for the model the bench built.
MODEL_OVERRIDES = {
  "dtype": "float32",
  "vit.depth": 1,
  "t5.num_encoder_layers": 1,
  "t5.num_decoder_layers": 1,
}


@pytest.mark.slow
def test_bench_model_tiny_prints_every_column(tmp_path):
  sys.path.insert(0, BENCH)
  import bench_model

  from rahf_jax.models import get_model_config

  out_json = tmp_path / "bench.json"
  args = [
    "--sizes",
    "test",
    "--variants",
    "multihead",
    "--batch_sizes",
    "2",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--infer_steps",
    "1",
    "--prompt_len",
    "16",
    "--target_len",
    "8",
    "--peak_n",
    "256",
    "--model_overrides",
    json.dumps(MODEL_OVERRIDES),
    "--json",
    str(out_json),
  ]
  header, rows = _last_table(_run("bench_model.py", args, tmp_path))

  assert header == [h for _, h, _ in bench_model.COLUMNS]
  assert len(rows) == 1
  row = dict(zip(header, rows[0], strict=True))
  assert (row["size"], row["variant"], row["batch"], row["status"]) == (
    "test",
    "multihead",
    "2",
    "ok",
  )
  assert row["peak GiB"] == "n/a"  # CPU devices keep no memory statistics
  measured = (
    "compile s",
    "step ms",
    "train ex/s",
    "fwd ex/s",
    "heads ex/s",
    "greedy ex/s",
    "XLA GFLOP/ex",
    "plan GiB",
  )
  for name in measured:
    assert float(row[name]) >= 0.0, name  # a number, not n/a

  payload = json.loads(out_json.read_text())
  r = payload["rows"][0]
  assert math.isfinite(r["train_loss"])
  assert len(r["step_s_all"]) == 2
  assert r["train_ex_s"] == pytest.approx(2 / statistics.median(r["step_s_all"]))
  assert r["xla_gflop_per_ex"] == pytest.approx(r["xla_train_flops"] / 2 / 1e9)
  assert r["params"] > 0 and r["plan_bytes"] > 0
  try:
    from rahf_jax.models import flops
  except ImportError:  # no analytic counter: n/a, and TFLOP/s from XLA's count instead
    assert row["GFLOP/ex"] == "n/a" and r["flops_source"] == "xla"
    assert r["tflops"] == pytest.approx(r["xla_train_flops"] / 2 * r["train_ex_s"] / 1e12)
    return
  assert r["flops_source"] == "analytic"
  model_config = get_model_config("test", "multihead")
  model_config.update_from_flattened_dict(MODEL_OVERRIDES)
  expected_flop = flops.train_flops_per_example(model_config, 16, 8)
  assert r["gflop_per_ex"] == pytest.approx(expected_flop / 1e9)
  assert r["tflops"] == pytest.approx(expected_flop * r["train_ex_s"] / 1e12)
  assert r["mfu_pct"] == pytest.approx(100 * r["tflops"] / payload["info"]["peak_tflops"])
  for name in ("GFLOP/ex", "TFLOP/s", "MFU %"):
    assert float(row[name]) >= 0.0, name


@pytest.mark.slow
def test_bench_input_pipeline_on_a_tiny_synthetic_build(tmp_path):
  out_json = tmp_path / "pipeline.json"
  args = [
    "--num_train",
    "8",
    "--source_image_size",
    "64",
    "--image_size",
    "64",
    "--heatmap_size",
    "32",
    "--batch_size",
    "4",
    "--batches",
    "4",
    "--warmup",
    "1",
    "--prompt_len",
    "16",
    "--target_len",
    "8",
    "--workdir",
    str(tmp_path),
    "--json",
    str(out_json),
  ]
  header, rows = _last_table(_run("bench_input_pipeline.py", args, tmp_path))

  assert header == [
    "variant",
    "batch",
    "image",
    "heatmap",
    "first batch s",
    "batch ms",
    "ex/s",
    "status",
  ]
  assert [r[0] for r in rows] == ["multihead", "augmented"]
  assert all(r[-1] == "ok" for r in rows)
  payload = json.loads(out_json.read_text())
  for r in payload["rows"]:
    steady = r["batch_s_all"][2:]  # the second half of the 4 timed batches
    assert r["ex_s"] == pytest.approx(4 * len(steady) / sum(steady))
    assert r["features"]["image"] == [4, 64, 64, 3]
    assert r["features"]["prompt_ids"] == [4, 16]
    assert r["features"]["decoder_target_ids"] == [4, 8]
  mh = payload["rows"][0]["features"]
  assert mh["heatmap_implausibility"] == [4, 32, 32]
  assert payload["rows"][1]["features"]["heatmap"] == [4, 32, 32]
