"""Helpers shared by the benchmarks: config overrides, timing, matmul peak, memory, tables.

Nothing here imports TensorFlow; JAX is imported inside the functions that need it so
that an orchestrating parent process never initialises a device backend.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

GIB = 1024**3


def set_fields(config, overrides: dict, error: str) -> None:
  """config.<dotted key> = value for each item of `overrides`; ValueError for a key that is not
  already a field, with `error` formatted with {key}."""
  for key, value in overrides.items():
    *path, leaf = key.split(".")
    target = config
    try:
      for name in path:
        target = target[name]
      if leaf not in target:
        raise KeyError(leaf)
      target[leaf] = value
    except (KeyError, TypeError, AttributeError) as e:
      raise ValueError(error.format(key=repr(key))) from e


def model_config(size: str, variant: str, overrides: dict | None = None):
  """The registered model config of (size, variant) with --model_overrides (dotted keys)."""
  from rahf_jax import models

  config = models.get_model_config(size, variant)
  error = f"--model_overrides: {{key}} is not a field of the {size} model config; use the config's"
  set_fields(config, overrides or {}, error + " own field names (dots for nested fields).")
  return config


def run_child(script: str, argv: Sequence[str], timeout_s: float) -> dict:
  """Runs `script` with `argv --result_json <file>` in a fresh Python; returns that JSON.

  A child that wrote no JSON gives {"status": "failed (rc=...)"}; one that wrote a partial
  result ({"status": "incomplete"}: killed at its time limit, or crashed) gets the return
  code appended.
  """
  out = f"/tmp/{os.path.basename(script)}_child_{os.getpid()}_{time.time_ns()}.json"
  cmd = [sys.executable, os.path.abspath(script), *argv, "--result_json", out]
  try:
    rc = subprocess.run(cmd, timeout=timeout_s).returncode
  except subprocess.TimeoutExpired:
    rc = "timeout"
  if not os.path.exists(out):
    return {"status": f"failed (rc={rc})"}
  with open(out, encoding="utf-8") as f:
    result = json.load(f)
  os.remove(out)
  if result.get("status") == "incomplete":
    result["status"] = f"incomplete (rc={rc})"
  return result


def time_calls(fn: Callable[[], Any], steps: int, warmup: int) -> list[float]:
  """Seconds of each of `steps` calls of `fn` after `warmup` untimed ones.

  `fn` must return the device values it produced; each call is waited for with
  `jax.block_until_ready` before the clock is read, so asynchronous dispatch cannot
  hide work in the next step's time.
  """
  import jax

  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def median(values: Sequence[float]) -> float:
  """The median of a non-empty sequence."""
  return float(statistics.median(values))


def measure_matmul_peak_tflops(
  n: int, dtype: str = "bfloat16", reps: int = 10, chain: int = 10, warmup_s: float = 1.0
):
  """Measured dense matrix-product rate in TFLOP/s on the default device.

  Multiplies two random n x n matrices of `dtype` (random, never zeros: zeros run faster
  on some cards). Products run untimed for `warmup_s` first (an idle GPU's clocks take a
  moment to rise); then each repetition dispatches `chain` products back to back and waits
  once, so launch gaps are amortised; the median repetition is returned.
  """
  import jax
  import jax.numpy as jnp

  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(kb, (n, n), jnp.float32).astype(dtype)
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a, b))  # compile

  def run_chain():
    return [matmul(a, b) for _ in range(chain)]

  start = time.perf_counter()
  while time.perf_counter() - start < warmup_s:
    jax.block_until_ready(run_chain())
  per_product = [t / chain for t in time_calls(run_chain, steps=reps, warmup=0)]
  return 2.0 * n**3 / median(per_product) / 1e12


def xla_flops(compiled) -> float | None:
  """XLA's own FLOP count of a compiled computation, or None where it gives none."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # Some backends do not implement cost analysis.
    return None
  if isinstance(analysis, list | tuple):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


def xla_planned_bytes(compiled) -> int | None:
  """Device bytes XLA plans for a compiled computation (arguments + outputs + temps - aliases)."""
  try:
    stats = compiled.memory_analysis()
  except Exception:
    return None
  if stats is None:
    return None
  return int(
    stats.argument_size_in_bytes
    + stats.output_size_in_bytes
    + stats.temp_size_in_bytes
    - stats.alias_size_in_bytes
  )


def peak_device_bytes(device) -> int | None:
  """Peak bytes in use on `device` since the process started, or None (CPU has no stats)."""
  try:
    stats = device.memory_stats()
  except Exception:
    return None
  if not stats:
    return None
  return int(stats.get("peak_bytes_in_use", 0)) or None


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
  """A markdown table: `columns` are (key, header, format spec); None prints as n/a."""
  header = "| " + " | ".join(h for _, h, _ in columns) + " |"
  rule = "|" + "|".join("---" for _ in columns) + "|"
  lines = [header, rule]
  for row in rows:
    cells = []
    for key, _, spec in columns:
      value = row.get(key)
      if value is None:
        cells.append("n/a")
      elif isinstance(value, str):
        cells.append(value)
      else:
        cells.append(format(value, spec))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_json(path: str, payload: Any) -> None:
  """Writes `payload` as indented JSON, atomically (a killed writer leaves the old file)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)
