"""`rahf-jax plan` end to end on fake CPU devices: the report, plan.json, a saved executable that
runs the real train step, and one-line errors for a wrong topology."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from rahf_jax.sharding import mesh_context
from rahf_jax.train import loop
from rahf_jax.train.synthetic_batches import make_synthetic_batch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/rahf.py:tiny,multihead"
OVERRIDES = ["--config.num_microbatches=2", "--config.batch_size=16", "--config.eval_batch_size=8"]


def _plan(*args, timeout=600):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # plan sets the device count itself
  return subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", "plan", *args],
    capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
  )  # fmt: skip


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("plan"))
  proc = _plan(f"--config={CONFIG}", "--topology=cpu:8", f"--out={out}", "--save_executables",
               *OVERRIDES)  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(out, "plan.json"), encoding="utf-8") as f:
    return out, proc.stdout, json.load(f)


@pytest.mark.slow
def test_report_and_plan_json(planned):
  _, stdout, plan = planned
  assert stdout.splitlines()[0].startswith("rahf-jax plan: tiny, multihead, batch 16 (eval 8)")
  assert "microbatches 2, on cpu:8: 8 devices" in stdout.splitlines()[0]
  for name, batch in (("train", 16), ("eval", 8), ("score", 8)):
    assert f"{name} step, batch {batch} on 8 devices (CPU devices):" in stdout
  rows = {r["step"]: r for r in plan["steps"]}
  assert list(rows) == ["train", "eval", "score"]
  assert plan["mesh"] == {"data": 8, "fsdp": 1, "model": 1}
  for name, row in rows.items():
    assert row["total_bytes"] > 0 and row["capacity_bytes"] is None, name
    # dp: one device's share of the work on each; XLA counts ~the analytic FLOPs of the batch
    # (the microbatch loop's body scaled to its 2 trips: XLA alone counts it once, 0.5).
    assert 0.8 < row["executed_over_model"] < 1.3, (name, row["executed_over_model"])


@pytest.mark.slow
def test_saved_train_executable_runs_the_train_step(planned):
  """The executable plan wrote is the train step: a run given it as config.compiled_train_step
  loads it without compiling, and it gives the compiled step's result on a real state and batch."""
  out, _, _ = planned
  sys.path.insert(0, os.path.join(REPO, "configs"))
  import rahf  # noqa: PLC0415

  config = rahf.get_config("tiny,multihead")
  config.num_microbatches, config.batch_size, config.eval_batch_size = 2, 16, 8
  setup = loop.build_setup(config)
  config.compiled_train_step = os.path.join(out, "train.executable")
  loaded = loop.build_setup(config).train_step
  assert not hasattr(loaded, "jitted")  # an executable, not the jit-wrapped step
  batch = make_synthetic_batch(setup.model_config, 16, 32, 32, seed=1)
  want_state, want = setup.train_step(
    setup.init_fn(jax.random.PRNGKey(0)), mesh_context.shard_batch(batch, setup.mesh)
  )
  got_state, got = loaded(
    setup.init_fn(jax.random.PRNGKey(0)), mesh_context.shard_batch(batch, setup.mesh)
  )
  # The same program up to compiler options (the plan skips LLVM's optimisations), so float32
  # rounding apart: the same loss, gradient norm and Adam moments (which hold the gradients; the
  # warmup's first learning rate is 0, so the params are the init's on both sides). The moments
  # are compared as one vector: a near-zero gradient element is rounding noise either way.
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose(float(got[key]), float(want[key]), rtol=1e-5, err_msg=key)
  assert float(want["grad_norm"]) > 0

  def flat(tree):
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])

  a, b = flat(got_state.opt_state), flat(want_state.opt_state)
  assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)
  assert int(got_state.step) == 1


def test_missing_compiled_step_is_one_line():
  with pytest.raises(FileNotFoundError, match="write it with `rahf-jax plan"):
    loop.load_compiled_step("/nonexistent/train.executable")


@pytest.mark.parametrize(
  "topology,message",
  [
    ("v9:2x2", "--topology 'v9:2x2' unknown; use a TPU slice such as v5e:8x8"),
    ("cpu:x", "--topology 'cpu:x': write cpu:N with N a device count"),
  ],
)
def test_wrong_topology_is_one_line(topology, message):
  proc = _plan(f"--config={CONFIG}", f"--topology={topology}", timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == f"rahf-jax plan: error: {message}" or (
    message in proc.stderr.strip().splitlines()[-1]
  ), proc.stderr[-500:]
  assert "Traceback" not in proc.stderr
