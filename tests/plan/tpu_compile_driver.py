"""Compiles the test model's train, eval and scoring steps for a TPU topology under each rule set.

Run as its own process (libtpu loads once per process; the test suite's jax runs on 8 fake CPU
devices): `python tests/plan/tpu_compile_driver.py v5e:2x2 > rows.json`. Prints one JSON object:
"rows", per rule set and step the figures of rahf_jax.plan.report.step_row plus the device kind,
and "slices", how a few other topologies map to devices and chips; or {"skip": reason} where
libtpu cannot make the topology.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))

from rahf_jax.plan import targets  # noqa: E402

MESHES = {"dp": (-1, 1, 1), "fsdp": (1, -1, 1), "fsdp_tp": (1, -1, 2)}


def main(topology: str) -> None:
  targets.prepare_environment(topology)
  import train_testlib  # noqa: PLC0415

  from rahf_jax.plan import programs, report  # noqa: PLC0415

  try:
    target = targets.get_target(topology)
  except ValueError as e:  # libtpu cannot load here: say why, the test skips with it
    json.dump({"skip": str(e)}, sys.stdout)
    return
  rows = []
  for rules, (data, fsdp, model) in MESHES.items():
    config = train_testlib.train_config(logical_rules=rules)
    config.mesh.data, config.mesh.fsdp, config.mesh.model = data, fsdp, model
    _, compiled = programs.compile_steps(config, target.devices)
    for step in compiled:
      row = report.step_row(step, target)
      row.update(rules=rules, device_kind=target.devices[0].device_kind)
      rows.append(row)
  # How libtpu lays out other slices: devices, chips, HBM per device.
  slices = {}
  for name in ("v4:2x2x1", "v5p:2x2x1", "v6e:2x2"):
    t = targets.get_target(name)
    slices[name] = [len(t.devices), t.num_chips, t.device_hbm_bytes, t.chip.name]
  json.dump({"rows": rows, "slices": slices}, sys.stdout)


if __name__ == "__main__":
  main(sys.argv[1])
