r"""Side by side on the same device: OUR RAHF (JAX) against the PyTorch reproduction's architecture.

The PyTorch side is bench/torch_rahf.py (transformers' ViTModel and T5ForConditionalGeneration
plus the reproduction's heads), built with the same sizes as our model config (ViT, T5, head
channels all read from `get_model_config(size)` with --model_overrides applied; options torch has
no counterpart for, such as upsample_impl or remat, change ours only); both start from random
weights, and both see the same random inputs. Per (implementation, precision, part) it reports
examples/s:

  infer   heads-only forward (heatmaps + scores, no decoder): ours `predict_heads` under jax.jit;
          torch `encode` + `heads` under inference_mode
  train   one training step (forward with the teacher-forced decoder, backward, AdamW): ours
          the project's jitted train step (bench/model_runner.py); torch heatmap/score MSE +
          decoder cross-entropy, backward, torch.optim.AdamW

Precisions: ours "float32" (model dtype float32) and "bfloat16" (the default: bf16 compute,
float32 parameters); torch "float32" and "bfloat16" (torch.autocast, float32 parameters).
The ratio column is ours / torch for the same precision and part.

Default parts: `infer` on a CPU (the L16 train step does not fit a short CPU run), `infer,train`
on a GPU. Each measurement runs in its own process (a GPU's memory is not shared between the
two frameworks, and JAX's preallocated pool is freed); `--in_process` (CPU only) runs them all
in this one, for the tiny smoke run. Where torch or transformers is not
installed the torch rows say so and ours are timed alone.

Examples:
  python bench/bench_torch_baseline.py                         # L16, batch 1, CPU: infer
  python bench/bench_torch_baseline.py --size test --steps 1   # seconds (the smoke test)
  python bench/bench_torch_baseline.py --impls ours --model_overrides '{"upsample_impl":"subpixel"}'
"""

import argparse
import json
import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_common as bc  # noqa: E402

SIZE_ALIASES = {"B16": "B16_t5base_384", "L16": "L16_t5base_384"}
IMPLS = ("ours", "torch")
DTYPES = ("float32", "bfloat16")
PARTS = ("infer", "train")

COLUMNS = (
  ("part", "part", ""),
  ("dtype", "precision", ""),
  ("batch", "batch", "d"),
  ("ours_ex_s", "ours ex/s", ".3f"),
  ("torch_ex_s", "torch ex/s", ".3f"),
  ("ratio", "ours/torch", ".2f"),
  ("ours_ms", "ours ms", ".1f"),
  ("torch_ms", "torch ms", ".1f"),
  ("ours_compile_s", "ours compile s", ".1f"),
  ("status", "status", ""),
)


# ---------------------------------------------------------------------------------------------
# Shared: the model config (ours) and the same architecture's torch kwargs.


def model_config(size: str, overrides: dict | None = None):
  from rahf_jax import features

  return bc.model_config(size, features.MULTI_HEAD, overrides)


def torch_kwargs(c) -> dict:
  """TorchRAHF's constructor kwargs for the architecture of our config `c` (multi-head)."""
  v, t = c.vit, c.t5
  d = t.d_model
  for w in c.score_head.convs:
    if d % w:
      raise ValueError(f"score conv width {w} is not d_model / an integer; torch cannot build it.")
  if len(c.heatmap_head.final_convs) != 1 or c.score_head.get("pool", "flatten") != "flatten":
    raise ValueError("the torch baseline has one final heatmap conv and a flatten score pool.")
  if t.mlp_activation != "relu":
    raise ValueError("the torch baseline builds t5 with a ReLU MLP (t5-base).")
  return dict(
    vit=dict(
      hidden_size=v.width,
      num_hidden_layers=v.depth,
      num_attention_heads=v.num_heads,
      intermediate_size=v.mlp_dim,
      image_size=c.image_size,
      patch_size=v.patch_size,
    ),
    t5=dict(
      vocab_size=t.vocab_size,
      d_model=d,
      d_kv=t.head_dim,
      d_ff=t.d_ff,
      num_layers=t.num_encoder_layers,
      num_decoder_layers=t.num_decoder_layers,
      num_heads=t.num_heads,
      feed_forward_proj="relu",
      tie_word_embeddings=t.tie_embeddings,
      dropout_rate=t.dropout_rate,
    ),
    heatmap=dict(
      pre=tuple(c.heatmap_head.pre_convs),
      up=tuple(c.heatmap_head.up_channels),
      final=c.heatmap_head.final_convs[0],
    ),
    score_divisors=tuple(d // w for w in c.score_head.convs),
    score_dense=tuple(c.score_head.dense),
  )


def _inputs_np(c, batch, prompt_len, target_len, seed=0):
  import numpy as np

  rs = np.random.RandomState(seed)
  g = c.image_size // c.vit.patch_size
  ho = g * 2 ** len(c.heatmap_head.up_channels)
  return dict(
    image=rs.uniform(-1, 1, (batch, c.image_size, c.image_size, 3)).astype(np.float32),
    prompt_ids=rs.randint(2, c.vocab_size, (batch, prompt_len)).astype(np.int64),
    decoder_input_ids=rs.randint(2, c.vocab_size, (batch, target_len)).astype(np.int64),
    targets=rs.randint(2, c.vocab_size, (batch, target_len)).astype(np.int64),
    heatmap=rs.uniform(0, 1, (batch, ho, ho)).astype(np.float32),
    score=rs.uniform(0, 1, (batch,)).astype(np.float32),
  )


# ---------------------------------------------------------------------------------------------
# Ours


def ours_infer(task: dict) -> dict:
  import jax
  import jax.numpy as jnp

  from rahf_jax import models

  overrides = dict(task.get("model_overrides") or {})
  overrides["dtype"] = task["dtype"]
  c = model_config(task["size"], overrides)
  model = models.build_model(c)
  x = _inputs_np(c, task["batch"], task["prompt_len"], task["target_len"])
  image = jnp.asarray(x["image"])
  prompt = jnp.asarray(x["prompt_ids"].astype("int32"))
  init = jax.jit(lambda key: model.init(key, image[:1], prompt[:1], method=model.predict_heads))
  params = jax.block_until_ready(init(jax.random.key(0))["params"])

  def heads(p, img, ids):
    return model.apply({"params": p}, img, ids, method=model.predict_heads)

  start = time.perf_counter()
  compiled = jax.jit(heads).lower(params, image, prompt).compile()
  compile_s = time.perf_counter() - start
  times = bc.time_calls(lambda: compiled(params, image, prompt), task["steps"], task["warmup"])
  return dict(compile_s=compile_s, step_s_all=times, device=str(jax.devices()[0]))


def ours_train(task: dict) -> dict:
  import model_runner

  overrides = dict(task.get("model_overrides") or {})
  overrides["dtype"] = task["dtype"]
  run = {
    "size": task["size"],
    "variant": "multihead",
    "batch": task["batch"],
    "parts": ["train"],
    "steps": task["steps"],
    "warmup": task["warmup"],
    "infer_steps": task["steps"],
    "prompt_len": task["prompt_len"],
    "target_len": task["target_len"],
    "model_overrides": overrides,
    "seed": 0,
  }
  out = model_runner.measure(run)
  return dict(compile_s=out["compile_s"], step_s_all=out["step_s_all"])


# ---------------------------------------------------------------------------------------------
# Torch (the reproduction's architecture)


def _torch_sync(torch, device):
  if device.type == "cuda":
    torch.cuda.synchronize()


def _torch_time(torch, device, fn, steps, warmup):
  for _ in range(warmup):
    fn()
  _torch_sync(torch, device)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    _torch_sync(torch, device)
    times.append(time.perf_counter() - start)
  return times


def torch_run(task: dict) -> dict:
  try:
    import torch
    import torch_rahf
  except ImportError as e:
    return {"status": f"torch absent ({e.name or e})"}
  import contextlib

  c = model_config(task["size"], task.get("model_overrides"))
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.manual_seed(0)
  model = torch_rahf.TorchRAHF(**torch_kwargs(c)).to(device)
  x = _inputs_np(c, task["batch"], task["prompt_len"], task["target_len"])
  t = {k: torch.from_numpy(v).to(device) for k, v in x.items()}
  pixels = t["image"].permute(0, 3, 1, 2).contiguous()
  bf16 = task["dtype"] == "bfloat16"

  def autocast():
    if bf16:
      return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

  if task["part"] == "infer":
    model.eval()

    def step():
      with torch.inference_mode(), autocast():
        encoded, n = model.encode(pixels, t["prompt_ids"])
        return model.heads(encoded, n)

  else:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
      with autocast():
        heatmaps, scores, logits = model(pixels, t["prompt_ids"], t["decoder_input_ids"])
        loss = sum(((m.float() - t["heatmap"]) ** 2).mean() for m in heatmaps.values())
        loss = loss + sum(((s.float() - t["score"]) ** 2).mean() for s in scores.values())
        loss = loss + torch.nn.functional.cross_entropy(
          logits.float().flatten(0, 1), t["targets"].flatten()
        )
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()

  times = _torch_time(torch, device, step, task["steps"], task["warmup"])
  out = dict(step_s_all=times, device=str(device), torch_version=torch.__version__)
  out["threads"] = torch.get_num_threads()
  vit_config, t5_config = model.vit.config, model.t5.config
  out["layers"] = {"vit": vit_config.num_hidden_layers, "t5_encoder": t5_config.num_layers,
                   "t5_decoder": t5_config.num_decoder_layers}  # fmt: skip
  if device.type == "cuda":
    out["peak_bytes"] = int(torch.cuda.max_memory_allocated())
  return out


# ---------------------------------------------------------------------------------------------
# Orchestration: one child process per task.


def run_task(task: dict) -> dict:
  """One measurement in this process; never raises (errors go to `status`)."""
  start = time.perf_counter()
  try:
    if task["impl"] == "ours":
      out = ours_infer(task) if task["part"] == "infer" else ours_train(task)
    else:
      out = torch_run(task)
    out.setdefault("status", "ok")
  except Exception as e:  # Report and go on.
    traceback.print_exc()
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0][:160]
    out = {"status": "error: " + text}
  if out.get("step_s_all"):
    out["step_ms"] = 1e3 * bc.median(out["step_s_all"])
    out["ex_s"] = task["batch"] / bc.median(out["step_s_all"])
  out["wall_s"] = time.perf_counter() - start
  return out


def _platform() -> str:
  """'gpu' or 'cpu', asked of a child process (the parent never initialises a backend)."""
  code = "import jax; print(jax.devices()[0].platform)"
  try:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return proc.stdout.strip().splitlines()[-1]
  except Exception:
    return "cpu"


def combine(results: list[dict]) -> list[dict]:
  """One row per (part, precision): ours and torch side by side, and their ratio."""
  rows = {}
  for r in results:
    key = (r["part"], r["dtype"], r["batch"])
    row = rows.setdefault(key, {"part": r["part"], "dtype": r["dtype"], "batch": r["batch"]})
    impl = r["impl"]
    row[f"{impl}_ex_s"] = r.get("ex_s")
    row[f"{impl}_ms"] = r.get("step_ms")
    if impl == "ours":
      row["ours_compile_s"] = r.get("compile_s")
    row.setdefault("_status", []).append(f"{impl}: {r.get('status')}")
  out = []
  for row in rows.values():
    if row.get("ours_ex_s") and row.get("torch_ex_s"):
      row["ratio"] = row["ours_ex_s"] / row["torch_ex_s"]
    statuses = row.pop("_status")
    ok = all(s.endswith(": ok") for s in statuses)
    row["status"] = "ok" if ok else "; ".join(s for s in statuses if not s.endswith(": ok"))
    out.append(row)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", default="L16", help="L16 | B16 | tiny | a registered size")
  parser.add_argument("--batch", type=int, default=0, help="infer batch (0: 1 CPU, 16 GPU)")
  parser.add_argument("--train_batch", type=int, default=0, help="train batch (0: 1 CPU, 8 GPU)")
  parser.add_argument("--parts", default="", help="infer,train (default: infer CPU, both GPU)")
  parser.add_argument("--impls", default="ours,torch")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--steps", type=int, default=3, help="timed calls (CPU default: 3)")
  parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--target_len", type=int, default=64)
  parser.add_argument(
    "--model_overrides", default="", help="JSON dict for the model config (sizes: both sides)"
  )
  parser.add_argument("--deadline_s", type=float, default=0, help="start no task after (0: none)")
  parser.add_argument("--task_timeout_s", type=float, default=1800)
  parser.add_argument(
    "--in_process", action="store_true", help="no child processes (small sizes on a CPU)"
  )
  parser.add_argument("--json", default="", help="write every figure here")
  parser.add_argument("--child_task", default="", help=argparse.SUPPRESS)
  parser.add_argument("--result_json", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.child_task:
    bc.write_json(args.result_json, run_task(json.loads(args.child_task)))
    return 0

  start = time.perf_counter()
  size = SIZE_ALIASES.get(args.size, args.size)
  overrides = json.loads(args.model_overrides) if args.model_overrides else {}
  try:  # a misspelt size or field stops here, not in every row (building a config starts no device)
    model_config(size, overrides)
  except ValueError as e:
    raise SystemExit(str(e)) from None
  platform = "cpu" if args.in_process else _platform()
  gpu = platform == "gpu"
  parts = args.parts.split(",") if args.parts else (["infer", "train"] if gpu else ["infer"])
  impls, dtypes = args.impls.split(","), args.dtypes.split(",")
  for name, chosen, allowed in (("parts", parts, PARTS), ("impls", impls, IMPLS)):
    if set(chosen) - set(allowed):
      raise SystemExit(f"--{name}: choose from {allowed}")
  if set(dtypes) - set(DTYPES):
    raise SystemExit(f"--dtypes: choose from {DTYPES}")
  batch = {
    "infer": args.batch or (16 if gpu else 1),
    "train": args.train_batch or (8 if gpu else 1),
  }
  print(f"# {size} multi-head on {platform}; parts {parts}; model overrides {overrides}")

  results = []
  torch_absent = None
  # bf16 first (the rows that matter on a GPU), each part ours then torch.
  for part in parts:
    for dtype in sorted(dtypes, key=lambda d: d != "bfloat16"):
      for impl in impls:
        task = dict(
          impl=impl,
          part=part,
          dtype=dtype,
          size=size,
          batch=batch[part],
          steps=args.steps,
          warmup=args.warmup,
          prompt_len=args.prompt_len,
          target_len=args.target_len,
          model_overrides=overrides,
        )
        left = args.deadline_s - (time.perf_counter() - start) if args.deadline_s else 1e9
        if impl == "torch" and torch_absent:
          r = {"status": torch_absent}
        elif left < 30:
          r = {"status": f"skipped (deadline {args.deadline_s:.0f} s)"}
        else:
          print(f"# {impl} {part} {dtype} batch {batch[part]}", flush=True)
          r = (
            run_task(task)
            if args.in_process
            else bc.run_child(
              __file__, ["--child_task", json.dumps(task)], min(args.task_timeout_s, left)
            )
          )
        if impl == "torch" and str(r.get("status")).startswith("torch absent"):
          torch_absent = r["status"]
        results.append({**task, **r})
        print("# " + json.dumps({k: results[-1].get(k) for k in ("ex_s", "status")}), flush=True)
        if args.json:
          bc.write_json(args.json, {"args": vars(args), "platform": platform, "rows": results})

  if torch_absent:
    print(f"# {torch_absent}: the PyTorch baseline is not timed here, ours only.")
  rows = combine(results)
  if args.json:
    bc.write_json(
      args.json, {"args": vars(args), "platform": platform, "rows": results, "table": rows}
    )
  threads = next((r.get("threads") for r in results if r.get("threads")), None)
  print()
  print(
    f"{size} multi-head on {platform}, prompt_len {args.prompt_len}, target_len "
    f"{args.target_len}, {args.steps} timed calls after {args.warmup} warm-up; torch threads "
    f"{threads}; model overrides {overrides or 'none'}; wall {time.perf_counter() - start:.0f} s"
  )
  print(bc.format_table(rows, COLUMNS))
  return 0 if all(r["status"] == "ok" or "torch absent" in r["status"] for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
