"""What a compiled step needs per device, and what it would take per step: `rahf-jax plan`'s rows.

Memory (compiled.memory_analysis(), per device): arguments + temporaries + outputs - aliased
(outputs written into donated arguments) + the program's code; "fits" compares it with the
device's HBM (the chip's, halved on a v4 topology where each TensorCore is a device).

Time is an ESTIMATE, a roofline from the compiled program's own counts (compiled.cost_analysis(),
per device): max(FLOPs / peak bf16 rate, bytes accessed / HBM bandwidth). It assumes every
matmul runs at the chip's peak and collectives hide behind compute, so real steps are slower;
ex/s and MFU follow from it (MFU = the model's analytic FLOPs / (devices x peak x time), so
recomputation lowers it). XLA:TPU's own estimate (`optimal_seconds`) is shown beside it only
where it is valid (positive). Collectives are the program's, by kind, with the bytes each
device sends (rahf_jax.plan.collectives); a collective inside a loop (microbatches) counts once.
A microbatched step's FLOPs and bytes are XLA's counts times its loop scale
(rahf_jax.plan.programs), since XLA counts a loop's body once. XLA:GPU gives no cost analysis:
a GPU plan's counts are those of the same step lowered for one CPU device (the whole batch),
split evenly over the devices.
"""

import re
from typing import Any

from rahf_jax.plan.collectives import COLLECTIVES, parse_collectives
from rahf_jax.plan.programs import CompiledStep, compiled_counts
from rahf_jax.plan.targets import GIB, Target


def _cost(step: CompiledStep) -> dict[str, float]:
  return compiled_counts(step.compiled) or dict(step.lowered_cost or {})


# XLA:TPU's refusal: "... the total memory required for HLO temporaries (15.81G) exceeds
# available HBM (15.75G)." (GiB, as XLA prints sizes).
_OUT_OF_MEMORY = re.compile(
  r"required for (.+?) \(([\d.]+)([KMGT])\) exceeds available HBM \(([\d.]+)([KMGT])\)"
)
_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _step_identity(step: CompiledStep, target: Target) -> dict[str, Any]:
  """The fields every row has, compiled or refused: which step, where, and how long it took."""
  return {
    "step": step.name, "batch": step.batch_size, "devices": len(target.devices),
    "chips": target.num_chips, "capacity_bytes": target.device_hbm_bytes,
    "model_flops": step.model_flops, "lower_s": step.lower_s, "compile_s": step.compile_s,
  }  # fmt: skip


# What only a compiled step has; a refused one reports them as None.
_MEASURED = ("memory_bytes", "total_bytes", "flops_per_device", "executed_over_model",
             "estimate_s", "examples_per_s", "mfu", "xla_optimal_s")  # fmt: skip


def _out_of_memory_row(step: CompiledStep, target: Target) -> dict[str, Any]:
  """A step the compiler refused: what it needed (at least) against what it could use."""
  row = {**_step_identity(step, target), **dict.fromkeys(_MEASURED), "collectives": {},
         "out_of_memory": step.out_of_memory}  # fmt: skip
  m = _OUT_OF_MEMORY.search(step.out_of_memory or "")
  if m:
    row["oom_what"] = m.group(1)
    row["total_bytes"] = float(m.group(2)) * _UNITS[m.group(3)]
    row["xla_available_bytes"] = float(m.group(4)) * _UNITS[m.group(5)]
  return row


def step_row(step: CompiledStep, target: Target) -> dict[str, Any]:
  """The figures of one compiled step on `target` (a JSON-able dict)."""
  if step.compiled is None:
    return _out_of_memory_row(step, target)
  n = len(target.devices)
  mem = step.compiled.memory_analysis()
  memory = {
    "arguments": int(mem.argument_size_in_bytes),
    "temporaries": int(mem.temp_size_in_bytes),
    "outputs": int(mem.output_size_in_bytes),
    "aliased": int(mem.alias_size_in_bytes),
    "code": int(mem.generated_code_size_in_bytes),
  }
  total = (memory["arguments"] + memory["temporaries"] + memory["outputs"] - memory["aliased"]
           + memory["code"])  # fmt: skip
  cost = _cost(step)
  scale = step.loop_scale or {}
  flops = float(cost.get("flops", 0.0)) * scale.get("flops", 1.0)
  row = {
    **_step_identity(step, target),
    "memory_bytes": memory,
    "total_bytes": total,
    "flops_per_device": flops,
    "bytes_accessed_per_device": float(cost.get("bytes accessed", 0.0))
    * scale.get("bytes accessed", 1.0),
    "loop_scale": step.loop_scale,
    "executed_over_model": flops * n / step.model_flops if step.model_flops else None,
  }
  optimal = cost.get("optimal_seconds")
  row["xla_optimal_s"] = float(optimal) if optimal is not None and optimal > 0 else None
  comm = parse_collectives(step.compiled.as_text(), n)
  row["collectives"] = {
    kind: {"count": v["count"], "wire_bytes": v["wire_bytes"]}
    for kind, v in comm["by_kind"].items()
    if v["count"]
  }
  row.update(_roofline(row, target))
  return row


def _roofline(row: dict, target: Target) -> dict[str, Any]:
  if target.device_peak_flops is None or target.device_hbm_bytes_per_s is None:
    return {"estimate_s": None, "examples_per_s": None, "mfu": None}
  compute_s = row["flops_per_device"] / target.device_peak_flops
  memory_s = row["bytes_accessed_per_device"] / target.device_hbm_bytes_per_s
  seconds = max(compute_s, memory_s)
  if seconds <= 0:
    return {"estimate_s": None, "examples_per_s": None, "mfu": None}
  peak_all = target.device_peak_flops * len(target.devices)
  return {
    "estimate_s": seconds,
    "bound": "compute" if compute_s >= memory_s else "HBM bandwidth",
    "examples_per_s": row["batch"] / seconds,
    "mfu": row["model_flops"] / (peak_all * seconds),
  }


def fits(row: dict) -> bool | None:
  """Whether the step fits the device's HBM (None where the capacity is unknown)."""
  if row.get("out_of_memory"):
    return False
  capacity = row["capacity_bytes"]
  return None if capacity is None else row["total_bytes"] <= capacity


def overshoot_line(row: dict, target: Target) -> str:
  """The one line that says a step does not fit, by how much, and what to try."""
  over = (row["total_bytes"] - row["capacity_bytes"]) / GIB
  hint = {
    "train": "--config.num_microbatches=2 (or 4), --config.model.overrides.remat_policy=full, "
    "or more chips",
    "eval": "a smaller --config.eval_batch_size or more chips",
    "score": "a smaller --config.eval_batch_size or more chips",
  }[row["step"]]
  if row.get("out_of_memory"):
    if row["total_bytes"] is None:
      return (
        f"the {row['step']} step does not fit {target.name}: {row['out_of_memory']}; try {hint}."
      )
    need, avail = row["total_bytes"] / GIB, row["xla_available_bytes"] / GIB
    return (
      f"the {row['step']} step does not fit {target.name}: XLA:TPU needs {need:.2f} GiB per "
      f"device for {row['oom_what']} alone, over the {avail:.2f} GiB it can use "
      f"({need - avail:.2f} GiB over); try {hint}."
    )
  return (
    f"the {row['step']} step does not fit {target.name}: {row['total_bytes'] / GIB:.2f} GiB per "
    f"device against {row['capacity_bytes'] / GIB:.2f} GiB of HBM ({over:.2f} GiB over); "
    f"try {hint}."
  )


def _gib(b) -> str:
  return "-" if b is None else f"{b / GIB:.2f}"


def format_row(row: dict, target: Target) -> str:
  """A human-readable block for one step."""
  if row.get("out_of_memory"):
    return (
      f"{row['step']} step, batch {row['batch']} on {row['devices']} devices: DOES NOT FIT, "
      f"the compiler refused it after {row['compile_s']:.0f} s:\n  {row['out_of_memory']}"
    )
  m = row["memory_bytes"]
  cap = row["capacity_bytes"]
  fit = fits(row)
  verdict = "no capacity known" if fit is None else ("fits" if fit else "DOES NOT FIT")
  where = f"{row['chips']} {target.chip.name} chips" if target.chip else "CPU devices"
  lines = [
    f"{row['step']} step, batch {row['batch']} on {row['devices']} devices ({where}):",
    f"  HBM per device  {_gib(row['total_bytes'])} GiB = arguments {_gib(m['arguments'])} + "
    f"temporaries {_gib(m['temporaries'])} + outputs {_gib(m['outputs'])} - aliased "
    f"{_gib(m['aliased'])} + code {_gib(m['code'])}",
  ]
  if cap is not None:
    lines.append(
      f"{'':18}of {_gib(cap)} GiB: {verdict}, headroom {_gib(cap - row['total_bytes'])} GiB"
    )
  ratio = row["executed_over_model"]
  lines.append(
    f"  FLOPs           {row['flops_per_device'] / 1e12:.3f} TFLOP per device, "
    f"{row['flops_per_device'] * row['devices'] / row['batch'] / 1e9:.1f} GFLOP per example; "
    f"executed / model {'-' if ratio is None else f'{ratio:.2f}'}"
  )
  if row["estimate_s"] is not None:
    xla = row["xla_optimal_s"]
    lines.append(
      f"  estimate        {1e3 * row['estimate_s']:.1f} ms per step ({row['bound']}-bound "
      f"roofline), {row['examples_per_s']:.0f} examples/s, MFU {100 * row['mfu']:.0f}% at best"
      + (f"; XLA:TPU's estimate {1e3 * xla:.1f} ms" if xla else "")
    )
  kinds = [
    f"{k} {v['count']} x, {v['wire_bytes'] / 1e9:.3f} GB"
    for k in COLLECTIVES
    if (v := row["collectives"].get(k))
  ]
  lines.append(f"  collectives     {'; '.join(kinds) if kinds else 'none'} (sent per device)")
  lines.append(f"  compile         {row['compile_s']:.1f} s (lowering {row['lower_s']:.1f} s)")
  return "\n".join(lines)
