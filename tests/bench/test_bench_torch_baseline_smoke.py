"""Smoke test of bench/bench_torch_baseline.py at the tiny size: both implementations, both parts.

No timing is asserted; the table's figures are checked against the raw times they come from.
Where torch/transformers are not installed, the torch rows must say so and ours still run.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "bench", "bench_torch_baseline.py")
ONE_LAYER = {"vit.depth": 1, "t5.num_encoder_layers": 1, "t5.num_decoder_layers": 1}
HAVE_TORCH = all(importlib.util.find_spec(m) for m in ("torch", "transformers"))


@pytest.mark.slow  # the train part compiles the full train step: about 20 s
def test_tiny_side_by_side_prints_the_table(tmp_path):
  parts = "infer,train"  # the infer part alone runs the same code as its row here
  out_json = tmp_path / "baseline.json"
  args = ["--size", "test", "--parts", parts, "--dtypes", "float32", "--steps", "2"]
  args += ["--warmup", "1", "--prompt_len", "8", "--target_len", "4", "--json", str(out_json)]
  args += ["--in_process"]  # one process: jax and torch are imported once
  # One layer per stack on both sides (test_bench_smoke's model): every part runs its code.
  args += ["--model_overrides", json.dumps(ONE_LAYER)]
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  # One CPU device, as the bench runs; LLVM at -O1 as the tests compile (tests/conftest.py).
  env["XLA_FLAGS"] = "--xla_backend_optimization_level=1"
  proc = subprocess.run(
    [sys.executable, SCRIPT, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
    timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  lines = proc.stdout.rstrip().splitlines()
  rule = max(i for i, line in enumerate(lines) if line.startswith("|---"))
  cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
  header, rows = cells(lines[rule - 1]), [cells(line) for line in lines[rule + 1 :]]
  assert header[:4] == ["part", "precision", "batch", "ours ex/s"]
  assert [(r[0], r[1], r[2]) for r in rows] == [(p, "float32", "1") for p in parts.split(",")]

  payload = json.loads(out_json.read_text())
  for r in payload["rows"]:
    if r["impl"] == "torch" and not HAVE_TORCH:
      assert r["status"].startswith("torch absent")
      continue
    assert r["status"] == "ok", r
    if r["impl"] == "torch":  # the overrides' sizes built the torch side too
      assert r["layers"] == {"vit": 1, "t5_encoder": 1, "t5_decoder": 1}
    assert len(r["step_s_all"]) == 2
    assert r["ex_s"] == pytest.approx(1 / statistics.median(r["step_s_all"]))
  for row in payload["table"]:
    if HAVE_TORCH:
      assert row["ratio"] == pytest.approx(row["ours_ex_s"] / row["torch_ex_s"])
    else:
      assert "ratio" not in row and "torch absent" in row["status"]
