"""Smoke test of bench/bench_reward.py: it runs on CPU and prints a complete table last.

No timing is asserted; every rate is checked against the raw call times it comes from.
"""

import json
import os
import statistics
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(REPO, "bench")


@pytest.mark.slow
def test_bench_reward_tiny_prints_every_column(tmp_path):
  sys.path.insert(0, BENCH)
  import bench_reward

  out_json = tmp_path / "reward.json"
  args = [
    "--size",
    "test",
    "--batch_sizes",
    "2",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--source_size",
    "40",
    "--prompt_len",
    "12",
    "--target_len",
    "6",
    "--json",
    str(out_json),
    # The test model with one layer per stack, in float32 (test_bench_smoke's model): every part
    # runs its code, in less time.
    "--dtype",
    "float32",
    "--model_overrides",
    json.dumps({"vit.depth": 1, "t5.num_encoder_layers": 1, "t5.num_decoder_layers": 1}),
  ]
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  # One CPU device, as `make bench` runs it; LLVM at -O1 as the tests compile (tests/conftest.py).
  env["XLA_FLAGS"] = "--xla_backend_optimization_level=1"
  proc = subprocess.run(
    [sys.executable, os.path.join(BENCH, "bench_reward.py"), *args],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

  lines = proc.stdout.rstrip().splitlines()
  header = [c.strip() for c in lines[-3].strip().strip("|").split("|")]
  cells = [c.strip() for c in lines[-1].strip().strip("|").split("|")]
  assert lines[-2].startswith("|---") and header == [h for _, h, _ in bench_reward.COLUMNS]
  row = dict(zip(header, cells, strict=True))
  assert (row["size"], row["variant"], row["batch"], row["status"]) == (
    "test",
    "multihead",
    "2",
    "ok",
  )
  for name in ("compile s", "score ex/s", "words ex/s", "reward ex/s", "reward+grad ex/s"):
    assert float(row[name]) > 0.0, name

  (r,) = json.loads(out_json.read_text())["rows"]
  for part in ("score", "words", "reward", "reward_grad"):
    assert len(r[f"{part}_s_all"]) == 2
    assert r[f"{part}_ex_s"] == pytest.approx(2 / statistics.median(r[f"{part}_s_all"]))
    assert float(row[f"{part.replace('_grad', '+grad')} ex/s"]) == pytest.approx(
      r[f"{part}_ex_s"], rel=0.01, abs=0.06
    )
