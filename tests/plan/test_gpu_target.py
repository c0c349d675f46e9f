"""`rahf-jax plan --topology h100:N`: XLA:GPU compiles the steps for H100s without a GPU.

The CUDA PJRT plugin (`jax-cuda12-plugin` and `jax-cuda12-pjrt`, about 180 MB; the `gpu` extra
brings them with the CUDA libraries) makes compile-only devices from a target description. It is
not in `dev` (installed, it makes every jax start look for a GPU), so the compile test skips
where it is absent, and the one-line error for that case runs everywhere else.
"""

import importlib.util
import json

import pytest
from plan_testlib import run_plan

HAS_PLUGIN = importlib.util.find_spec("jax_cuda12_plugin") is not None
CONFIG = "configs/rahf.py:tiny,multihead"
SMALL = [
  "--config.batch_size=16",
  "--config.eval_batch_size=8",
  "--config.model.overrides.image_size=64",
  "--config.model.overrides.vit.depth=1",
  "--config.model.overrides.t5.num_encoder_layers=1",
]


def _plan(*args):
  return run_plan(f"--config={CONFIG}", *args, timeout=900)


@pytest.mark.slow
@pytest.mark.skipif(
  not HAS_PLUGIN,
  reason="the CUDA plugin is not installed, so XLA:GPU cannot compile here; "
  "`pip install jax-cuda12-plugin==<jax version> jax-cuda12-pjrt==<jax version>`",
)
def test_steps_compile_for_two_h100s_without_a_gpu(tmp_path):
  proc = _plan("--topology=h100:2", f"--out={tmp_path}", "--steps=train,score", *SMALL)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "on h100:2: 2 devices (NVIDIA H100 80GB HBM3)" in proc.stdout.splitlines()[0]
  with open(tmp_path / "plan.json", encoding="utf-8") as f:
    rows = {r["step"]: r for r in json.load(f)["steps"]}
  assert list(rows) == ["train", "score"]
  for name, row in rows.items():
    assert row["capacity_bytes"] == 84929347584 and 0 < row["total_bytes"] < 2**30, name
    # The counts XLA:GPU does not give come from the lowered program, split over the 2 GPUs.
    assert 0.8 < row["executed_over_model"] < 1.3, (name, row["executed_over_model"])
    assert row["examples_per_s"] > 0, name
  # dp over the two GPUs: the gradients are all-reduced between them.
  assert rows["train"]["collectives"]["all-reduce"]["count"] > 0


@pytest.mark.skipif(HAS_PLUGIN, reason="the CUDA plugin is installed here")
def test_a_missing_cuda_plugin_is_one_line():
  proc = _plan("--topology=h100:1")
  assert proc.returncode == 2, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert "the CUDA plugin is not installed; `pip install jax-cuda12-plugin==" in last, last
  assert "Traceback" not in proc.stderr
