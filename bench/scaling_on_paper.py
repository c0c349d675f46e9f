r"""Scaling on paper: the sharded train step, compiled for a fake device mesh, projected onto TPUs.

For each model size and logical rule set (rahf_jax.sharding.partitioning: dp, fsdp, fsdp_tp) this
builds OUR train step (rahf_jax.train.steps.make_train_step on the abstract state of
rahf_jax.train.state.get_abstract_state), lowers and compiles it for N fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N; shapes only, nothing is initialised or
run), and reads from the compiled per-device program:

  FLOPs       compiled.cost_analysis()["flops"] (per device; x N per step)
  collectives every all-reduce / all-gather / reduce-scatter / all-to-all / collective-permute
              in compiled.as_text(): its result bytes and group size n; wire bytes per device
              with ring algorithms: all-gather and all-to-all (n-1)/n x result, reduce-scatter
              (n-1) x result, all-reduce 2 (n-1)/n x result, collective-permute 1 x result
  memory      compiled.memory_analysis(): arguments + outputs - aliased (donated) + temporaries

"TPU wire bytes" re-costs the all-reduces of gradients of sharded parameters as the
reduce-scatters the TPU/GPU pipelines turn them into (the CPU pipeline reduces them in full and
slices; see parse_collectives). The fsdp axis is capped at --fsdp_max (16) devices, the rest
going to data (see mesh_shape).

Those are measured (from XLA's partitioned program on the CPU backend). The projection onto
TPU chips then ASSUMES, per chip: a peak bf16 rate and the fraction of it reached on XLA's
counted FLOPs (--mfu), and an effective collective bandwidth (--ici_efficiency of the one-way
ICI bandwidth, half the published bidirectional figure):

  compute s = FLOPs per device / (peak x mfu)
  comm s    = TPU wire bytes per device / (one-way ICI x ici_efficiency)
  step s    between max(compute, comm) (collectives fully overlapped with compute) and
            compute + comm (none overlapped); ex/s = global batch / step s

Published per-chip figures used (Cloud TPU documentation, docs.cloud.google.com/tpu/docs/v5e
and /v5p): v5e 197 TFLOP/s bf16, 16 GB HBM, 400 GB/s bidirectional ICI (4 ports, 2D torus);
v5p 459 TFLOP/s bf16, 95 GiB HBM, 1200 GB/s bidirectional ICI (6 ports, 3D torus).

Examples (64 fake devices = a v5e-64 / 64-chip v5p slice, the paper's batch 256 = 4 per chip;
about 80 s per row on 2 CPU cores, LLVM optimisation off since the CPU code never runs):
  python bench/scaling_on_paper.py --devices 64 --global_batch 256 --json /tmp/scaling.json
  python bench/scaling_on_paper.py --devices 64 --sizes L16 --rules fsdp \
      --param_dtypes float32,bfloat16 --remat_policy full --heatmap_head_remat full
"""

import argparse
import json
import os
import re
import sys
import time


def _set_device_count(argv):
  """XLA_FLAGS must name the device count before jax is imported."""
  n = 8
  for i, a in enumerate(argv):
    if a.startswith("--devices="):
      n = int(a.split("=", 1)[1])
    elif a == "--devices" and i + 1 < len(argv):
      n = int(argv[i + 1])
  flags = os.environ.get("XLA_FLAGS", "")
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", flags)
  # The CPU code is never run: skip LLVM's optimisations (compile ~3x faster; the HLO, its FLOP
  # count, collectives and buffer plan are unchanged).
  fast = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  os.environ["XLA_FLAGS"] = f"{flags} {fast} --xla_force_host_platform_device_count={n}".strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  return n


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rahf_jax.plan.collectives import parse_collectives  # noqa: E402

SIZE_ALIASES = {"B16": "B16_t5base_384", "L16": "L16_t5base_384"}
GIB = 1024**3
CHIPS = {
  # name: (peak bf16 TFLOP/s, HBM bytes, bidirectional ICI bytes/s per chip)
  "v5e": (197.0, 16e9, 400e9),
  "v5p": (459.0, 95 * GIB, 1200e9),
}


def mesh_shape(rules: str, n: int, model_axis: int, fsdp_max: int) -> dict:
  """(data, fsdp, model) sizes of a rule set on n devices.

  The fsdp axis is at most `fsdp_max` (the rest of the devices go to data): the rules shard
  every conv kernel's input channels over fsdp, and the score heads' 48-channel conv input
  does not split more than 16 ways.
  """
  if rules == "dp":
    return {"data": n, "fsdp": 1, "model": 1}
  if rules in ("fsdp", "fsdp_tp"):
    model = model_axis if rules == "fsdp_tp" else 1
    if n % model:
      raise ValueError(f"--model_axis {model} does not divide {n} devices")
    fsdp = min(n // model, fsdp_max)
    if (n // model) % fsdp:
      raise ValueError(f"--fsdp_max {fsdp_max} does not divide {n // model}")
    return {"data": n // model // fsdp, "fsdp": fsdp, "model": model}
  raise ValueError(f"rules {rules!r} unknown; use dp, fsdp or fsdp_tp")


def measure(size: str, variant: str, rules_name: str, args, param_dtype: str) -> dict:
  """Compiles the train step for one configuration; every figure read from XLA."""
  import flax.linen as nn
  import jax

  from rahf_jax import models
  from rahf_jax.models import flops as model_flops
  from rahf_jax.sharding import mesh_context, partitioning
  from rahf_jax.train import optimizer, steps
  from rahf_jax.train import state as state_lib
  from rahf_jax.train.default_train_config import train_config_defaults
  from rahf_jax.train.synthetic_batches import make_synthetic_batch

  n = jax.device_count()
  shape = mesh_shape(rules_name, n, args.model_axis, args.fsdp_max)
  remat = (
    "-"
    if args.remat_policy == args.heatmap_head_remat == "none"
    else (f"{args.remat_policy}/{args.heatmap_head_remat}")
  )
  row = {"size": size, "variant": variant, "rules": rules_name, "param_dtype": param_dtype,
         "remat": remat, "devices": n, "mesh": f"{shape['data']}x{shape['fsdp']}x{shape['model']}",
         "global_batch": args.global_batch}  # fmt: skip
  mesh = partitioning.make_mesh(**shape)
  rules = partitioning.LOGICAL_AXIS_RULES[rules_name]
  mc = models.get_model_config(size, variant)
  mc.remat_policy = args.remat_policy
  mc.heatmap_head_remat = args.heatmap_head_remat
  model = models.build_model(mc)
  tc = train_config_defaults()
  tc.param_dtype = param_dtype
  tc.num_train_steps, tc.warmup_steps = 20_000, 500
  tx = optimizer.make_optimizer(tc)
  example = make_synthetic_batch(mc, 1, args.prompt_len, args.target_len, 0)
  start = time.perf_counter()
  abstract, shardings = state_lib.get_abstract_state(model, tx, mesh, rules, example)
  row["params"] = state_lib.num_params(abstract.params)
  bsharding = mesh_context.batch_sharding(mesh)
  batch = {
    k: jax.ShapeDtypeStruct((args.global_batch,) + v.shape[1:], v.dtype, sharding=bsharding)
    for k, v in example.items()
  }
  train_step = steps.make_train_step(
    model, tx, variant=variant, loss_weights=tc.loss_weights, mesh=mesh, rules=rules,
    state_shardings=shardings,
  )  # fmt: skip
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    lowered = train_step.jitted.lower(abstract, batch)
  row["lower_s"] = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  row["compile_s"] = time.perf_counter() - start

  analysis = compiled.cost_analysis()
  if isinstance(analysis, list | tuple):
    analysis = analysis[0]
  row["flops_per_device"] = float(analysis["flops"])
  row["flops_per_step"] = row["flops_per_device"] * n
  row["analytic_flops_per_step"] = float(
    model_flops.train_flops_per_example(mc, args.prompt_len, args.target_len) * args.global_batch
  )
  sharded = frozenset(
    tuple(sorted(a.shape))
    for a in jax.tree.leaves(abstract.params)
    if a.ndim and _shards(a.sharding, a.shape) > 1
  )
  comm = parse_collectives(compiled.as_text(), n, sharded)
  row["collectives"] = comm
  row["wire_bytes_per_device"] = comm["wire_bytes"]
  row["tpu_wire_bytes_per_device"] = comm["tpu_wire_bytes"]
  mem = compiled.memory_analysis()
  row["argument_bytes"] = int(mem.argument_size_in_bytes)
  row["output_bytes"] = int(mem.output_size_in_bytes)
  row["alias_bytes"] = int(mem.alias_size_in_bytes)
  row["temp_bytes"] = int(mem.temp_size_in_bytes)
  row["device_bytes"] = (
    row["argument_bytes"] + row["output_bytes"] - row["alias_bytes"] + row["temp_bytes"]
  )
  state_bytes = sum(
    x.size * x.dtype.itemsize // _shards(x.sharding, x.shape) for x in jax.tree.leaves(abstract)
  )
  row["state_bytes_per_device"] = int(state_bytes)
  row["status"] = "ok"
  return row


def _shards(sharding, shape) -> int:
  """How many pieces a leaf is cut into (replicated axes do not divide it)."""
  return max(1, int(round(_numel(shape) / max(1, _numel(sharding.shard_shape(shape))))))


def _numel(shape) -> int:
  n = 1
  for d in shape:
    n *= int(d)
  return n


def project(row: dict, chip: str, mfu: float, ici_efficiency: float) -> dict:
  """Expected step time, ex/s and memory fit of a measured row on a TPU chip (assumptions)."""
  peak, hbm, ici_bidir = CHIPS[chip]
  compute_s = row["flops_per_device"] / (peak * 1e12 * mfu)
  comm_s = row["tpu_wire_bytes_per_device"] / (ici_bidir / 2 * ici_efficiency)
  b = row["global_batch"]
  return {
    "chip": chip,
    "compute_ms": 1e3 * compute_s,
    "comm_ms": 1e3 * comm_s,
    "ex_s_overlap": b / max(compute_s, comm_s),
    "ex_s_serial": b / (compute_s + comm_s),
    "hbm_gib": hbm / GIB,
    "fits": "yes" if row["device_bytes"] <= hbm else "no",
  }


MEASURED_COLUMNS = (
  ("size", "size", ""),
  ("rules", "rules", ""),
  ("param_dtype", "params", ""),
  ("remat", "remat", ""),
  ("mesh", "mesh d x f x m", ""),
  ("compile_s", "compile s", ".0f"),
  ("tflop_step", "TFLOP/step", ".1f"),
  ("gflop_dev", "GFLOP/device", ".0f"),
  ("ag_gb", "all-gather GB", ".2f"),
  ("rs_gb", "reduce-scatter GB", ".2f"),
  ("ar_gb", "all-reduce GB", ".2f"),
  ("other_gb", "a2a+permute GB", ".2f"),
  ("wire_gb", "wire GB/device", ".2f"),
  ("tpu_wire_gb", "TPU wire GB/device", ".2f"),
  ("n_coll", "collectives", "d"),
  ("state_gib", "state GiB/device", ".2f"),
  ("device_gib", "planned GiB/device", ".2f"),
)
PROJECTED_COLUMNS = (
  ("size", "size", ""),
  ("rules", "rules", ""),
  ("param_dtype", "params", ""),
  ("remat", "remat", ""),
  ("chip", "chip", ""),
  ("compute_ms", "compute ms", ".0f"),
  ("comm_ms", "comm ms", ".0f"),
  ("ex_s_overlap", "ex/s overlapped", ".0f"),
  ("ex_s_serial", "ex/s serial", ".0f"),
  ("device_gib", "planned GiB", ".1f"),
  ("hbm_gib", "HBM GiB", ".1f"),
  ("fits", "fits", ""),
)


def table_rows(row: dict) -> dict:
  """The measured table's derived cells of one row."""
  kinds = row["collectives"]["by_kind"]
  return {
    **row,
    "tflop_step": row["flops_per_step"] / 1e12,
    "gflop_dev": row["flops_per_device"] / 1e9,
    "ag_gb": kinds["all-gather"]["wire_bytes"] / 1e9,
    "rs_gb": kinds["reduce-scatter"]["wire_bytes"] / 1e9,
    "ar_gb": kinds["all-reduce"]["wire_bytes"] / 1e9,
    "other_gb": (kinds["all-to-all"]["wire_bytes"] + kinds["collective-permute"]["wire_bytes"])
    / 1e9,
    "wire_gb": row["wire_bytes_per_device"] / 1e9,
    "tpu_wire_gb": row["tpu_wire_bytes_per_device"] / 1e9,
    "n_coll": row["collectives"]["count"],
    "state_gib": row["state_bytes_per_device"] / GIB,
    "device_gib": row["device_bytes"] / GIB,
  }


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  _set_device_count(argv)
  import bench_common as bc

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--devices", type=int, default=8, help="fake CPU devices (mesh size)")
  parser.add_argument("--sizes", default="B16,L16", help="comma list: B16,L16,tiny")
  parser.add_argument("--variant", default="multihead")
  parser.add_argument("--rules", default="dp,fsdp,fsdp_tp", help="comma list of rule sets")
  parser.add_argument("--param_dtypes", default="float32", help="comma list: float32,bfloat16")
  parser.add_argument("--model_axis", type=int, default=4, help="model-axis size for fsdp_tp")
  parser.add_argument("--fsdp_max", type=int, default=16, help="largest fsdp axis (rest: data)")
  parser.add_argument("--global_batch", type=int, default=0, help="0: 4 per device")
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--target_len", type=int, default=64)
  parser.add_argument("--remat_policy", default="none")
  parser.add_argument("--heatmap_head_remat", default="none")
  parser.add_argument("--mfu", type=float, default=0.45, help="assumed fraction of bf16 peak")
  parser.add_argument(
    "--ici_efficiency",
    type=float,
    default=0.5,
    help="assumed fraction of the one-way ICI bandwidth that collectives reach",
  )
  parser.add_argument("--json", default="")
  args = parser.parse_args(argv)
  if not args.global_batch:
    args.global_batch = 4 * args.devices

  import jax

  assert jax.device_count() == args.devices, (jax.device_count(), args.devices)
  rows = []
  for size in args.sizes.split(","):
    size = SIZE_ALIASES.get(size, size)
    for param_dtype in args.param_dtypes.split(","):
      for rules in args.rules.split(","):
        print(f"# {size} {rules} params {param_dtype} on {args.devices} devices", flush=True)
        try:
          row = measure(size, args.variant, rules, args, param_dtype)
        except Exception as e:  # report and go on
          error = f"error: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
          row = {"size": size, "rules": rules, "param_dtype": param_dtype, "status": error}
          print("# " + row["status"], flush=True)
          rows.append(row)
          continue
        row["projected"] = [project(row, c, args.mfu, args.ici_efficiency) for c in CHIPS]
        rows.append(row)
        print("# " + json.dumps({k: row[k] for k in ("compile_s", "flops_per_device",
              "wire_bytes_per_device", "device_bytes")}), flush=True)  # fmt: skip
        if args.json:
          bc.write_json(args.json, {"args": vars(args), "rows": rows})
  ok = [table_rows(r) for r in rows if r.get("status") == "ok"]
  print()
  print(
    f"measured: {args.devices} fake CPU devices, global batch {args.global_batch}, "
    f"{args.variant}, prompt/target {args.prompt_len}/{args.target_len}, jax {jax.__version__}"
  )
  print(bc.format_table(ok, MEASURED_COLUMNS))
  print()
  print(f"projected: mfu {args.mfu}, ici_efficiency {args.ici_efficiency} (assumed)")
  proj = [{**r, **p} for r in ok for p in r["projected"]]
  print(bc.format_table(proj, PROJECTED_COLUMNS))
  return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
  sys.exit(main())
