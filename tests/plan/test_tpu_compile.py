"""The test model's train, eval and scoring steps compile for a TPU (v5e 2x2) under every rule set.

XLA:TPU runs here without a TPU: libtpu (the `tpu` extra, which `dev` includes) compiles for
compile-only devices. A change that breaks TPU compilation (an op XLA:TPU rejects, a sharding
its partitioner cannot place) fails this test although every CPU test passes. It also checks
that each rule set shards as it says, in the TPU program: fsdp holds about a quarter of the
parameters per device and gathers them, dp holds them whole and gathers nothing.
The compiles take 80 s to 2 minutes on 2 busy cores, in one subprocess (libtpu loads once per
process): nearly all of it is XLA:TPU compiling the 9 programs (the fsdp_tp train step a third
of it); starting libtpu and lowering the steps take seconds.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = ("dp", "fsdp", "fsdp_tp")
STEPS = ("train", "eval", "score")

pytestmark = [
  pytest.mark.slow,
  pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu is not installed, so XLA:TPU cannot compile here; `pip install -e .[tpu]`",
  ),
]


@pytest.fixture(scope="module")
def compiled():
  env = dict(os.environ, ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  env.pop("XLA_FLAGS", None)  # the driver sets its own platform; no fake CPU device count
  proc = subprocess.run(
    [sys.executable, os.path.join(HERE, "tpu_compile_driver.py"), "v5e:2x2"],
    capture_output=True, text=True, env=env, timeout=1500,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout)
  if "skip" in result:
    pytest.skip(f"libtpu cannot load here: {result['skip']}")
  rows = {(r["rules"], r["step"]): r for r in result["rows"]}
  return rows, result["slices"]


def test_every_step_compiles_for_tpu_under_every_rule_set(compiled):
  rows, _ = compiled
  assert set(rows) == {(r, s) for r in RULES for s in STEPS}
  for key, row in rows.items():
    assert row["device_kind"] == "TPU v5 lite", key
    assert row["devices"] == 4 and row["chips"] == 4, key
    assert 0 < row["total_bytes"] < row["capacity_bytes"], key
    # The whole batch's work is done, and no more than the rule set explains: XLA counts a bit
    # more than the analytic matmul FLOPs; fsdp_tp repeats the conv heads on its 2 model devices.
    low, high = (1.2, 2.0) if key[0] == "fsdp_tp" else (0.9, 1.4)
    assert low < row["executed_over_model"] < high, (key, row["executed_over_model"])
    assert row["xla_optimal_s"] is not None and row["estimate_s"] > 0, key


def test_tpu_programs_shard_as_the_rules_say(compiled):
  rows, _ = compiled
  dp, fsdp = rows[("dp", "train")], rows[("fsdp", "train")]
  # Arguments: params + Adam moments (+ batch). fsdp splits them 4 ways (a few small ones stay
  # whole), dp replicates them.
  ratio = fsdp["memory_bytes"]["arguments"] / dp["memory_bytes"]["arguments"]
  assert 0.25 < ratio < 0.6, ratio
  assert "all-gather" not in dp["collectives"]
  assert fsdp["collectives"]["all-gather"]["count"] > 0
  # Gradients are reduced across the batch's devices in every rule set.
  for rules in RULES:
    assert rows[(rules, "train")]["collectives"]["all-reduce"]["count"] > 0, rules


def test_slices_map_to_chips_as_cloud_tpu_counts_them(compiled):
  """v4 compiles one program per TensorCore (2 per chip, half the chip's 32 GiB each); v5p and
  v6e one per chip."""
  _, slices = compiled
  gib = 1024**3
  assert slices["v4:2x2x1"] == [8, 4, 16 * gib, "TPU v4"]
  assert slices["v5p:2x2x1"] == [4, 4, 95 * gib, "TPU v5p"]
  assert slices["v6e:2x2"] == [4, 4, 32 * gib, "TPU v6e"]
