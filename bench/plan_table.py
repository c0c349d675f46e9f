r"""`rahf-jax plan` over many configs and topologies, one process each, and the table of results.

A run is one line: `<config arg> <topology> [--config.<field>=<value> ...] [--steps a,b]`, e.g.
  L16_t5base_384,multihead v5e:8x8 --config.num_microbatches=2
  L16_t5base_384,multihead v5p:2x4x4 --steps train
Runs whose folder already holds a plan.json are skipped, and the runs file is read again after
each run, so lines appended while it works are taken too. Each plan takes its own process
(libtpu loads once per process); a big TPU compile takes minutes and about 14 GB of memory on 2
cores, so they go one at a time.

  python bench/plan_table.py --runs bench/plan_runs.txt --out /tmp/plans          # compile
  python bench/plan_table.py --out /tmp/plans --table                               # the table
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

GIB = 1024**3


def run_dir(out: str, line: str) -> str:
  return os.path.join(out, re.sub(r"[^A-Za-z0-9.=_,-]+", "_", line.strip()).strip("_"))


def read_runs(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def run_all(runs_path: str, out: str, timeout_s: float) -> None:
  done: set[str] = set()
  while True:
    todo = [
      ln for ln in read_runs(runs_path)
      if ln not in done and not os.path.exists(os.path.join(run_dir(out, ln), "plan.json"))
    ]  # fmt: skip
    if not todo:
      return
    line = todo[0]
    done.add(line)
    config_arg, topology, *extra = line.split()
    folder = run_dir(out, line)
    os.makedirs(folder, exist_ok=True)
    cmd = [sys.executable, "-m", "rahf_jax.cli", "plan", f"--config=configs/rahf.py:{config_arg}",
           f"--topology={topology}", f"--out={folder}", *extra]  # fmt: skip
    start = time.perf_counter()
    with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as log:
      try:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
      except subprocess.TimeoutExpired:
        rc = "timeout"
    print(f"{line}: exit {rc} in {time.perf_counter() - start:.0f} s", flush=True)


COLUMNS = ("config", "topology", "rules", "mesh", "micro", "remat", "step", "batch", "fits",
           "GiB/device", "HBM GiB", "exec/model", "est. ex/s", "MFU", "XLA ex/s",
           "compile s")  # fmt: skip


def table(out: str) -> str:
  rows = []
  for path in sorted(glob.glob(os.path.join(out, "*", "plan.json"))):
    with open(path, encoding="utf-8") as f:
      plan = json.load(f)
    c = plan["config"]
    ov = c["model"]["overrides"]
    remat = f"{ov.get('remat_policy', 'none')}/{ov.get('heatmap_head_remat', 'none')}"
    mesh = plan["mesh"]
    for s in plan["steps"]:
      cap = s["capacity_bytes"]
      fits = "-" if cap is None else ("yes" if s["total_bytes"] <= cap else "**no**")
      if s.get("out_of_memory"):  # the compiler refused it; total: what it needed at least
        fits = "**no** (XLA:TPU refused)"
      rows.append([
        f"{c['model']['size'].split('_')[0]} {c['model']['variant']}", plan["topology"],
        c["logical_rules"], f"{mesh['data']}x{mesh['fsdp']}x{mesh['model']}",
        str(c.get("num_microbatches", 1)), "-" if remat == "none/none" else remat, s["step"],
        str(s["batch"]), fits, "-" if s["total_bytes"] is None else f"{s['total_bytes'] / GIB:.2f}",
        "-" if cap is None else f"{cap / GIB:.0f}",
        "-" if s["executed_over_model"] is None else f"{s['executed_over_model']:.2f}",
        "-" if s["examples_per_s"] is None else f"{s['examples_per_s']:.0f}",
        "-" if s["mfu"] is None else f"{100 * s['mfu']:.0f}%",
        "-" if not s.get("xla_optimal_s") else f"{s['batch'] / s['xla_optimal_s']:.0f}",
        f"{s['compile_s']:.0f}",
      ])  # fmt: skip
  lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", default="", help="file of runs, one a line")
  parser.add_argument("--out", required=True, help="one folder per run under it")
  parser.add_argument("--table", action="store_true", help="print the table of --out's plans")
  parser.add_argument("--timeout_s", type=float, default=3600)
  args = parser.parse_args(argv)
  if args.runs:
    run_all(args.runs, args.out, args.timeout_s)
  if args.table:
    print(table(args.out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
