"""Collectives of a compiled (partitioned) program: kinds, result bytes, wire bytes per device.

Read from the program's HLO text (`compiled.as_text()`); ring algorithms turn a collective's
result bytes and group size n into bytes each device sends: all-gather and all-to-all
(n-1)/n x result, reduce-scatter (n-1) x result, all-reduce 2 (n-1)/n x result,
collective-permute 1 x result.
"""

import re

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {
  "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
  "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip
_SHAPE = re.compile(r"\b(pred|[suf]\d+|bf16|c64|c128)\[([\d,]*)\]")
_INSTR = re.compile(
  r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s+(" + "|".join(COLLECTIVES) + r")(-start)?\("
)


def _shape_bytes(text: str) -> int:
  total = 0
  for dtype, dims in _SHAPE.findall(text):
    n = 1
    for d in filter(None, dims.split(",")):
      n *= int(d)
    total += n * _DTYPE_BYTES.get(dtype, 4)
  return total


def _group_size(line: str, num_devices: int) -> int:
  m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", line)
  if m:  # mesh form: mesh['axis_0'=1,'axis_1'=8] {'axis_1'}: the product of the named axes
    sizes = dict(re.findall(r"'([^']+)'=(\d+)", m.group(1)))
    size = 1
    for axis in re.findall(r"'([^']+)'", m.group(2)):
      size *= int(sizes[axis])
    return size
  m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", line)  # iota form [groups, size]<=[...]
  if m:
    return int(m.group(2))
  m = re.search(r"replica_groups=\{\{([\d,]*)\}", line)  # explicit {{0,1,..},{..}}
  if m:
    return len([x for x in m.group(1).split(",") if x])
  return num_devices  # replica_groups={} (or none): every device


def parse_collectives(hlo_text: str, num_devices: int, sharded_shapes=frozenset()) -> dict:
  """Per-device collective traffic of a compiled (partitioned) HLO module's text.

  Returns {"count", "result_bytes", "wire_bytes", "tpu_wire_bytes", "by_kind": {kind: {count,
  result_bytes, wire_bytes}}, "in_loops": bool}. Async pairs are counted once (the -start op;
  for all-gather-start whose result is an (operand, output) tuple, the output).

  `tpu_wire_bytes`: the same, except that an all-reduce operand with the full shape of a sharded
  parameter (dims compared as a sorted tuple, `sharded_shapes`) is costed as a reduce-scatter,
  (n-1)/n instead of 2 (n-1)/n: the CPU pipeline reduces such a gradient in full and slices
  it, where the TPU and GPU pipelines rewrite all-reduce + dynamic-slice into a reduce-scatter.
  """
  by_kind = {k: {"count": 0, "result_bytes": 0, "wire_bytes": 0.0} for k in COLLECTIVES}
  tpu_saving = 0.0
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    result, kind, start = m.group(1), m.group(2), m.group(3)
    shapes = _SHAPE.findall(result)
    if start and kind in ("all-gather", "collective-permute") and len(shapes) >= 2:
      result_bytes = _shape_bytes(result) - _shape_bytes(f"{shapes[0][0]}[{shapes[0][1]}]")
    else:
      result_bytes = _shape_bytes(result)
    n = num_devices if kind == "collective-permute" else _group_size(line, num_devices)
    if n <= 1 and kind != "collective-permute":
      continue
    frac = (n - 1) / n
    wire = {
      "all-gather": frac * result_bytes,
      "all-to-all": frac * result_bytes,
      "reduce-scatter": (n - 1) * result_bytes,
      "all-reduce": 2 * frac * result_bytes,
      "collective-permute": float(result_bytes),
    }[kind]
    if kind == "all-reduce":
      for dtype, dims in shapes:
        key = tuple(sorted(int(d) for d in dims.split(",") if d))
        if key in sharded_shapes:
          tpu_saving += frac * _shape_bytes(f"{dtype}[{dims}]")
    entry = by_kind[kind]
    entry["count"] += 1
    entry["result_bytes"] += result_bytes
    entry["wire_bytes"] += wire
  return {
    "count": sum(e["count"] for e in by_kind.values()),
    "result_bytes": sum(e["result_bytes"] for e in by_kind.values()),
    "wire_bytes": sum(e["wire_bytes"] for e in by_kind.values()),
    "tpu_wire_bytes": sum(e["wire_bytes"] for e in by_kind.values()) - tpu_saving,
    "by_kind": by_kind,
    "in_loops": " while(" in hlo_text,
  }
