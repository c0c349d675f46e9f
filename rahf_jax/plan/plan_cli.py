"""`rahf-jax plan`: will this run fit, and how fast could it go? Compiled, not guessed.

  rahf-jax plan --config configs/rahf.py:L16_t5base_384,multihead --topology v5e:8x8 \
      [--config.num_microbatches=2] [--steps train,eval,score] [--out DIR] [--save_executables]

Compiles the config's train, eval and heads-only scoring steps for the target's devices (a TPU
slice through libtpu's compile-only client, H100s through the CUDA plugin's, fake CPU devices,
or this runtime's devices; rahf_jax.plan.targets) and prints, per step, the HBM per device
against the chip's capacity, FLOPs, a roofline estimate of the step time with the examples/s
and MFU it implies, collectives and compile time (rahf_jax.plan.report). With --out it writes
plan.json (every figure) and, with --save_executables, each step's serialized executable
(`<step>.executable`: jax.experimental.serialize_executable's payload and trees, pickled), which
`deserialize_and_load` turns back into a callable on the same kind of devices.
Exit status 1, after the report, when a step does not fit, with one line naming the step and
the overshoot.
"""

import contextlib
import json
import os
import pickle
import sys

from rahf_jax.plan import targets


def run_plan(
  config, topology: str, step_names, out: str | None, save_executables: bool, quiet: bool = False
) -> int:
  """Compiles, reports and returns the exit status (0: every step fits or no capacity known).

  `quiet`: leave out libtpu's start-up notices (rahf_jax.quiet_start) while it loads.
  """
  targets.prepare_environment(topology)
  import jax  # noqa: PLC0415

  from rahf_jax import quiet_start  # noqa: PLC0415
  from rahf_jax.plan import programs, report  # noqa: PLC0415

  if save_executables and not out:
    raise ValueError("--save_executables writes into --out; give --out DIR.")
  with quiet_start.filtered_stderr() if quiet else contextlib.nullcontext():
    target = targets.get_target(topology)
  print(
    f"rahf-jax plan: {config.model.size}, {config.model.variant}, batch {config.batch_size} "
    f"(eval {config.eval_batch_size}), rules {config.logical_rules}, microbatches "
    f"{config.get('num_microbatches', 1)}, on {target.name}: {len(target.devices)} devices "
    f"({target.devices[0].device_kind}), jax {jax.__version__}",
    flush=True,
  )
  setup, compiled = programs.compile_steps(config, target.devices, step_names)
  mesh = dict(setup.mesh.shape)
  print(f"mesh data x fsdp x model = {mesh['data']} x {mesh['fsdp']} x {mesh['model']}")
  rows = []
  for step in compiled:
    row = report.step_row(step, target)
    rows.append(row)
    print(report.format_row(row, target), flush=True)
  if out:
    os.makedirs(out, exist_ok=True)
    payload = {
      "topology": target.name,
      "device_kind": target.devices[0].device_kind,
      "jax": jax.__version__,
      "mesh": mesh,
      "config": json.loads(config.to_json_best_effort()),
      "steps": rows,
    }
    with open(os.path.join(out, "plan.json"), "w", encoding="utf-8") as f:
      json.dump(payload, f, indent=2)
    if save_executables:
      from jax.experimental import serialize_executable  # noqa: PLC0415

      for step in (s for s in compiled if s.compiled is not None):
        with open(os.path.join(out, f"{step.name}.executable"), "wb") as f:
          pickle.dump(serialize_executable.serialize(step.compiled), f)
    print(f"wrote {out}/plan.json" + (" and the executables" if save_executables else ""))
  too_big = [row for row in rows if report.fits(row) is False]
  for row in too_big:
    print(f"rahf-jax plan: {report.overshoot_line(row, target)}", file=sys.stderr)
  return 1 if too_big else 0
