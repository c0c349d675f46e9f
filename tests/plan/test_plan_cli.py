"""`rahf-jax plan` end to end on fake CPU devices: the report, plan.json, a saved executable that
runs the real train step, and one-line errors for a wrong topology.

The demo's tiny config at 64x64 pixels with one ViT layer, one T5 encoder layer and a stem of
8-channel convolutions (`SMALLER`, on the command line and in the in-process config alike): what
is checked (the report's lines and rows, the FLOPs XLA counts against the analytic count, a saved
executable that is the train step) holds at any size, and a smaller model is a smaller program to
compile and, for the plan's executable (compiled without LLVM's optimisations), much less
unoptimised code to run: the stem's convolutions were most of it (one train step of the
executable took 7 s with the demo's 32 to 64 channels and 2.5 s with 8, on 2 busy cores).
"""

import json
import os
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest
from host_params import random_like
from plan_testlib import REPO, run_plan

from rahf_jax.plan import targets
from rahf_jax.sharding import mesh_context
from rahf_jax.train import loop
from rahf_jax.train.synthetic_batches import make_synthetic_batch

CONFIG = "configs/rahf.py:tiny,multihead"
SMALLER = {  # model.overrides
  "image_size": 64,
  "vit.depth": 1,
  "vit.stem_channels": (8, 8, 8, 8),
  "t5.num_encoder_layers": 1,
}
OVERRIDES = ["--config.num_microbatches=2", "--config.batch_size=16", "--config.eval_batch_size=8"]
OVERRIDES += [f"--config.model.overrides.{k}={v}" for k, v in SMALLER.items()]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("plan"))
  proc = run_plan(f"--config={CONFIG}", "--topology=cpu:8", f"--out={out}", "--save_executables",
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
  config.model.overrides.update_from_flattened_dict(SMALLER)
  setup = loop.build_setup(config)
  config.compiled_train_step = os.path.join(out, "train.executable")
  loaded = loop.build_setup(config).train_step
  assert not hasattr(loaded, "jitted")  # an executable, not the jit-wrapped step
  batch = mesh_context.shard_batch(
    make_synthetic_batch(setup.model_config, 16, 32, 32, seed=1), setup.mesh
  )

  # The reference: this process's train step compiled with the plan's compiler options, so
  # the same program with the same options, and the same bits. Each call gets a fresh state, as
  # the step donates it: random params (seed 0) and a fresh optimizer state (zeros), made on the
  # host from the abstract state, so no init is compiled.
  def initial_state():
    abstract = setup.abstract_state
    host = abstract.replace(
      step=np.zeros((), abstract.step.dtype),
      params=random_like(abstract.params),
      opt_state=jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract.opt_state),
      rng=np.array([0, 7], abstract.rng.dtype),
    )
    return jax.device_put(host, setup.state_shardings)

  state = initial_state()
  with jax.set_mesh(setup.mesh), nn.logical_axis_rules(setup.rules):
    lowered = setup.train_step.jitted.lower(state, batch)
  reference = lowered.compile(compiler_options=targets.CPU_COMPILE_OPTIONS)
  want_state, want = reference(state, batch)
  got_state, got = loaded(initial_state(), batch)
  assert float(want["grad_norm"]) > 0 and int(got_state.step) == 1
  for a, b in zip(jax.tree.leaves((got_state, got)), jax.tree.leaves((want_state, want)),
                  strict=True):  # fmt: skip
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


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
  proc = run_plan(f"--config={CONFIG}", f"--topology={topology}", timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == f"rahf-jax plan: error: {message}" or (
    message in proc.stderr.strip().splitlines()[-1]
  ), proc.stderr[-500:]
  assert "Traceback" not in proc.stderr
