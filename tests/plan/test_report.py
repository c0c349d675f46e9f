"""plan.report: memory sums, the fit verdict and its one line, the roofline, on known figures."""

import types

import pytest

from rahf_jax.plan import report
from rahf_jax.plan.programs import CompiledStep
from rahf_jax.plan.targets import CHIPS, GIB, Target

_HLO = """
  %ag = f32[64,128]{1,0} all-gather-start(f32[16,128]{1,0} %p), replica_groups=[1,4]<=[4]
  %ar = f32[1024]{0} all-reduce(f32[1024]{0} %g), replica_groups=[1,4]<=[4]
"""


class _Compiled:
  """The three things report reads of a jax Compiled, with chosen figures."""

  def __init__(self, arguments, temporaries, outputs, aliased, code, flops, bytes_accessed,
               optimal):  # fmt: skip
    self._mem = types.SimpleNamespace(
      argument_size_in_bytes=arguments, temp_size_in_bytes=temporaries,
      output_size_in_bytes=outputs, alias_size_in_bytes=aliased,
      generated_code_size_in_bytes=code,
    )  # fmt: skip
    self._cost = {"flops": flops, "bytes accessed": bytes_accessed, "optimal_seconds": optimal}

  def memory_analysis(self):
    return self._mem

  def cost_analysis(self):
    return self._cost

  def as_text(self):
    return _HLO


def _v5e(n=4):
  return Target(f"v5e:{n}", tuple(range(n)), CHIPS["TPU v5 lite"])


def _row(target, optimal=-5.0, temporaries=10 * GIB, flops=197e12 * 0.1):
  compiled = _Compiled(
    arguments=2 * GIB, temporaries=temporaries, outputs=GIB, aliased=GIB, code=GIB // 2,
    flops=flops, bytes_accessed=819e9 * 0.05, optimal=optimal,
  )  # fmt: skip
  step = CompiledStep("train", 16, compiled, 1.0, 2.0, model_flops=flops * 4 / 1.25)
  return report.step_row(step, target)


def test_memory_is_arguments_temporaries_outputs_less_aliased_plus_code():
  row = _row(_v5e())
  assert row["total_bytes"] == 2 * GIB + 10 * GIB + GIB - GIB + GIB // 2
  assert row["capacity_bytes"] == 16 * GIB
  assert report.fits(row) is True
  big = _row(_v5e(), temporaries=14 * GIB)
  assert report.fits(big) is False
  line = report.overshoot_line(big, _v5e())
  assert line.startswith("the train step does not fit v5e:4: 16.50 GiB per device")
  assert "(0.50 GiB over)" in line and "num_microbatches" in line


def test_roofline_takes_the_slower_of_compute_and_hbm_traffic():
  row = _row(_v5e())
  # 0.1 s of peak compute against 0.05 s of HBM traffic: compute-bound, 0.1 s.
  assert row["estimate_s"] == pytest.approx(0.1)
  assert row["bound"] == "compute"
  assert row["examples_per_s"] == pytest.approx(160.0)
  assert row["executed_over_model"] == pytest.approx(1.25)
  assert row["mfu"] == pytest.approx(0.8)  # model FLOPs are 1/1.25 of those executed
  slow_memory = _row(_v5e(), flops=197e12 * 0.01)
  assert slow_memory["bound"] == "HBM bandwidth"
  assert slow_memory["estimate_s"] == pytest.approx(0.05)


def test_invalid_xla_estimate_is_dropped_and_collectives_counted():
  assert _row(_v5e(), optimal=-1509.6)["xla_optimal_s"] is None
  assert _row(_v5e(), optimal=0.012)["xla_optimal_s"] == pytest.approx(0.012)
  colls = _row(_v5e())["collectives"]
  assert colls["all-gather"] == {"count": 1, "wire_bytes": pytest.approx(0.75 * 64 * 128 * 4)}
  assert colls["all-reduce"]["wire_bytes"] == pytest.approx(2 * 0.75 * 1024 * 4)


def test_v4_devices_are_tensorcores_with_half_a_chip_each():
  v4 = Target("v4:2x2x1", tuple(range(8)), CHIPS["TPU v4"], devices_per_chip=2)
  assert v4.num_chips == 4
  assert v4.device_hbm_bytes == 16 * GIB
  assert v4.device_peak_flops == pytest.approx(137.5e12)


def test_cpu_target_has_no_capacity_and_no_estimate():
  row = _row(Target("cpu:4", tuple(range(4)), None))
  assert report.fits(row) is None
  assert row["estimate_s"] is None and row["mfu"] is None
  text = report.format_row(row, Target("cpu:4", tuple(range(4)), None))
  assert "CPU devices" in text and "estimate" not in text


def test_a_step_the_compiler_refused_does_not_fit_and_says_by_how_much():
  message = (
    "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
    "temporaries (15.81G) exceeds available HBM (15.75G)."
  )
  step = CompiledStep("train", 256, None, 1.0, 352.0, 1e15, out_of_memory=message)
  row = report.step_row(step, _v5e(64))
  assert report.fits(row) is False
  assert row["total_bytes"] == pytest.approx(15.81 * GIB)
  line = report.overshoot_line(row, _v5e(64))
  assert line.startswith("the train step does not fit v5e:64: XLA:TPU needs 15.81 GiB per device")
  assert "for HLO temporaries alone, over the 15.75 GiB it can use (0.06 GiB over)" in line
  assert "DOES NOT FIT" in report.format_row(row, _v5e(64))
