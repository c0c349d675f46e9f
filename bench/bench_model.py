r"""Throughput, FLOPs, MFU and memory of the RAHF network and its train step (no TensorFlow).

Benchmarks OUR model (rahf_jax.models) and OUR train step (rahf_jax.train) on synthetic
in-memory batches, one device, and reports per (size, variant, batch size):

  compile s      lower + compile time of the train step
  step ms        median train step time (forward, backward, AdamW update)
  train ex/s     batch / median step time
  fwd ex/s       inference: heads + teacher-forced decoder (the model's forward pass)
  heads ex/s     inference: heads only (`predict_heads`, no decoder)
  greedy ex/s    inference: greedy decoding of target_len tokens (`greedy_decode`)
  GFLOP/ex       analytic FLOPs of one training example (rahf_jax.models.flops)
  XLA GFLOP/ex   XLA's cost-analysis count of the compiled train step / batch
  TFLOP/s, MFU   analytic FLOPs x train ex/s, and that over the bf16 matmul peak measured
                 at the start of the same run (XLA's count where no analytic one exists;
                 the JSON's flops_source says which)
  peak GiB       device.memory_stats()["peak_bytes_in_use"] after the train step (n/a on CPU)
  plan GiB       XLA's planned bytes for the compiled train step (arguments+outputs+temps)

Examples:
  python bench/bench_model.py --sizes test --variants multihead,augmented
  python bench/bench_model.py --runs L16:multihead:16,L16:multihead:32:train+infer \
      --isolate --json /tmp/bench.json
  python bench/bench_model.py --runs L16:multihead:16:lower   # any host: params, XLA FLOPs
  # Per-run options (5th field, '+'-joined field=value; 'train.' names a training-config field):
  python bench/bench_model.py --isolate --runs \
      L16:multihead:32:train:remat_policy=full+heatmap_head_remat=full,\
      L16:multihead:16:train:train.param_dtype=bfloat16

Each row of the augmented-prompt variant is one (image, prompt, output type) example; a full
RAHF prediction of all seven outputs costs seven of them.
"""

import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_common as bc  # noqa: E402
import model_runner  # noqa: E402

SIZE_ALIASES = {"B16": "B16_t5base_384", "L16": "L16_t5base_384"}
PARTS = ("train", "infer", "decode")
LOWER = "lower"  # a run of this part alone only lowers the train step (params, XLA FLOPs)

COLUMNS = (
  ("size", "size", ""),
  ("variant", "variant", ""),
  ("batch", "batch", "d"),
  ("options", "options", ""),
  ("compile_s", "compile s", ".1f"),
  ("step_ms", "step ms", ".1f"),
  ("train_ex_s", "train ex/s", ".1f"),
  ("fwd_ex_s", "fwd ex/s", ".1f"),
  ("heads_ex_s", "heads ex/s", ".1f"),
  ("greedy_ex_s", "greedy ex/s", ".1f"),
  ("gflop_per_ex", "GFLOP/ex", ".1f"),
  ("xla_gflop_per_ex", "XLA GFLOP/ex", ".1f"),
  ("tflops", "TFLOP/s", ".3f"),
  ("mfu_pct", "MFU %", ".1f"),
  ("peak_gib", "peak GiB", ".2f"),
  ("plan_gib", "plan GiB", ".2f"),
  ("status", "status", ""),
)


def parse_options(text: str) -> tuple[dict, dict]:
  """'+'-joined field=value options -> (model overrides, train overrides).

  A field prefixed "train." is a training-config field (rahf_jax/train/default_train_config.py,
  e.g. train.param_dtype=bfloat16); any other is a model-config field (dots for nested ones,
  e.g. remat_policy=full). Values are read as JSON where they parse (numbers, true), else kept
  as strings.
  """
  model, train = {}, {}
  for item in filter(None, text.split("+")):
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"run option {item!r}: use field=value (train.field=value for training)")
    try:
      value = json.loads(value)
    except json.JSONDecodeError:
      pass
    if key.startswith("train."):
      train[key[len("train.") :]] = value
    else:
      model[key] = value
  return model, train


def parse_runs(args) -> list[dict]:
  """The runs to make: --runs size:variant:batch[:parts[:options]] entries, else the cross
  product. parts: '+'-joined train/infer/decode (empty: all); options: see parse_options."""
  runs = []
  if args.runs:
    for item in args.runs.split(","):
      fields = item.strip().split(":")
      if len(fields) not in (3, 4, 5):
        raise ValueError(
          f"--runs entry {item!r}: use size:variant:batch[:train+infer+decode[:field=value+...]]"
        )
      parts = tuple(fields[3].split("+")) if len(fields) >= 4 and fields[3] else PARTS
      options = fields[4] if len(fields) == 5 else ""
      runs.append(_run(fields[0], fields[1], int(fields[2]), parts, args, options))
  else:
    for size in args.sizes.split(","):
      for variant in args.variants.split(","):
        for batch in args.batch_sizes.split(","):
          runs.append(_run(size, variant, int(batch), PARTS, args))
  for run in runs:
    unknown = set(run["parts"]) - set(PARTS)
    if run["parts"] == [LOWER]:
      unknown = set()
    if unknown:
      raise ValueError(
        f"--runs: unknown part(s) {sorted(unknown)}; choose from {PARTS}, or {LOWER!r} alone"
      )
  return runs


def _run(size, variant, batch, parts, args, options: str = "") -> dict:
  if args.no_decode:
    parts = tuple(p for p in parts if p != "decode")
  if args.no_infer:
    parts = tuple(p for p in parts if p != "infer")
  model_options, train_options = parse_options(options)
  model_overrides = json.loads(args.model_overrides) if args.model_overrides else {}
  train_overrides = json.loads(args.train_overrides) if args.train_overrides else {}
  return {
    "size": SIZE_ALIASES.get(size, size),
    "variant": variant,
    "batch": batch,
    "parts": list(parts),
    "steps": args.steps,
    "warmup": args.warmup,
    "infer_steps": args.infer_steps,
    "prompt_len": args.prompt_len,
    "target_len": args.target_len,
    "model_overrides": {**model_overrides, **model_options},
    "train_overrides": {**train_overrides, **train_options},
    "options": options,
    "seed": args.seed,
  }


def bench_one(run: dict, peak_tflops: float | None, partial_json: str = "") -> dict:
  """Runs one configuration in this process; never raises (errors go to `status`).

  With `partial_json`, the figures measured so far are written there after each part,
  with status "incomplete", so that a child killed at its time limit still reports them.
  """
  row = _base(run)
  start = time.perf_counter()

  def on_partial(figures):
    if partial_json:
      bc.write_json(partial_json, _derive({**row, **figures, "status": "incomplete"}, peak_tflops))

  try:
    row.update(model_runner.measure(run, on_partial))
    row["status"] = row.get("status", "ok")
  except Exception as e:  # Report and go on to the next configuration.
    traceback.print_exc()
    row["status"] = "error: " + _one_line(e)
  row["wall_s"] = time.perf_counter() - start
  return _derive(row, peak_tflops)


def _base(run: dict) -> dict:
  """The columns that name a run."""
  return {k: run.get(k) for k in ("size", "variant", "batch")} | {
    "options": run.get("options") or "-"
  }


def _one_line(e: BaseException) -> str:
  text = f"{type(e).__name__}: {e}".strip().splitlines()[0]
  return text[:160]


def _derive(row: dict, peak_tflops: float | None) -> dict:
  """Adds the derived columns (TFLOP/s, MFU, GiB) from the measured ones."""
  flop = row.get("train_flops_per_example")
  if flop is not None:
    row["gflop_per_ex"] = flop / 1e9
    row["flops_source"] = "analytic"
  if row.get("xla_train_flops") is not None:
    row["xla_gflop_per_ex"] = row["xla_train_flops"] / row["batch"] / 1e9
    if flop is None:  # no analytic counter: TFLOP/s and MFU from XLA's count, and said so
      flop = row["xla_train_flops"] / row["batch"]
      row["flops_source"] = "xla"
  if flop is not None and row.get("train_ex_s"):
    row["tflops"] = flop * row["train_ex_s"] / 1e12
    if peak_tflops:
      row["mfu_pct"] = 100.0 * row["tflops"] / peak_tflops
  for key, out in (("peak_bytes", "peak_gib"), ("plan_bytes", "plan_gib")):
    if row.get(key) is not None:
      row[out] = row[key] / bc.GIB
  return row


def measure_peak(args) -> dict:
  """The bf16 matmul peak of this device (TFLOP/s) plus what the device is."""
  import jax

  device = jax.devices()[0]
  n = args.peak_n or (8192 if device.platform == "gpu" else 512)
  info = {
    "device": f"{device.platform}:{getattr(device, 'device_kind', '?')}",
    "jax_version": jax.__version__,
    "peak_n": n,
    "peak_dtype": args.peak_dtype,
  }
  info["peak_tflops"] = bc.measure_matmul_peak_tflops(n, args.peak_dtype)
  return info


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="test", help="comma list: test,tiny,B16_t5base_384,...")
  parser.add_argument("--variants", default="multihead", help="comma list: multihead,augmented")
  parser.add_argument("--batch_sizes", default="2", help="comma list of global batch sizes")
  parser.add_argument("--runs", default="", help="explicit size:variant:batch[:parts] list")
  parser.add_argument("--steps", type=int, default=10, help="timed train steps")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
  parser.add_argument("--infer_steps", type=int, default=10, help="timed inference calls")
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--target_len", type=int, default=64)
  parser.add_argument(
    "--model_overrides", default="", help='JSON dict for every run, e.g. {"remat_policy": "full"}'
  )
  parser.add_argument(
    "--train_overrides", default="", help='JSON dict, e.g. {"param_dtype": "bfloat16"}'
  )
  parser.add_argument("--no_infer", action="store_true", help="skip inference timings")
  parser.add_argument("--no_decode", action="store_true", help="skip greedy decoding")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--peak_n", type=int, default=0, help="matmul size (0: 8192 GPU/512 CPU)")
  parser.add_argument("--peak_dtype", default="bfloat16")
  parser.add_argument("--isolate", action="store_true", help="one process per run (GPU memory)")
  parser.add_argument(
    "--deadline_s", type=float, default=0, help="wall-clock limit for all runs (0: none)"
  )
  parser.add_argument("--min_run_s", type=float, default=45, help="start no run with less left")
  parser.add_argument("--run_timeout_s", type=float, default=600, help="per run, with --isolate")
  parser.add_argument("--json", default="", help="write every figure here")
  # Internal (the --isolate children).
  parser.add_argument("--child_run", default="", help=argparse.SUPPRESS)
  parser.add_argument("--child_peak", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--peak_tflops", type=float, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--result_json", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.child_peak:
    bc.write_json(args.result_json, measure_peak(args))
    return 0
  if args.child_run:
    row = bench_one(json.loads(args.child_run), args.peak_tflops or None, args.result_json)
    bc.write_json(args.result_json, row)
    return 0

  runs = parse_runs(args)
  start = time.perf_counter()
  if args.isolate:
    info = bc.run_child(
      __file__,
      ["--child_peak", "--peak_n", str(args.peak_n), "--peak_dtype", args.peak_dtype],
      args.run_timeout_s,
    )
  else:
    info = measure_peak(args)
  peak = info.get("peak_tflops")
  print(
    f"# {info.get('device')} jax {info.get('jax_version')}: {args.peak_dtype} matmul "
    f"n={info.get('peak_n')} peak {info.get('peak_tflops', 0):.2f} TFLOP/s",
    flush=True,
  )

  rows = []
  for run in runs:
    left = args.deadline_s - (time.perf_counter() - start) if args.deadline_s else float("inf")
    base = _base(run)
    if left < args.min_run_s:
      rows.append({**base, "status": f"skipped (deadline {args.deadline_s:.0f} s)"})
      continue
    print(
      f"# run {run['size']} {run['variant']} batch {run['batch']} {run['parts']} "
      f"{run['options'] or ''}",
      flush=True,
    )
    if args.isolate:
      child_argv = ["--child_run", json.dumps(run), "--peak_tflops", str(peak or 0)]
      row = {**base, **bc.run_child(__file__, child_argv, min(args.run_timeout_s, left))}
      row = _derive(row, peak)
    else:
      row = bench_one(run, peak)
    rows.append(row)
    print("# " + json.dumps({k: row.get(k) for k, _, _ in COLUMNS}), flush=True)
    if args.json:  # after every run, so an interrupted session keeps what it measured
      bc.write_json(args.json, {"info": info, "args": vars(args), "rows": rows})

  if args.json:
    bc.write_json(args.json, {"info": info, "args": vars(args), "rows": rows})
  print()
  print(
    f"device {info.get('device')}, jax {info.get('jax_version')}, "
    f"{args.peak_dtype} matmul peak {info.get('peak_tflops', 0):.2f} TFLOP/s "
    f"(n={info.get('peak_n')}), prompt_len {args.prompt_len}, target_len {args.target_len}, "
    f"TFLOP/s from {'/'.join(sorted({r.get('flops_source', 'n/a') for r in rows}))} FLOP counts"
  )
  print(bc.format_table(rows, COLUMNS))
  return 0 if all(str(r.get("status")).startswith("ok") for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
