"""Converting the reproduction's L16 checkpoint: wall time and peak memory of `rahf-jax convert`.

  python bench/bench_convert.py [--size L16|B16] [--tmp /tmp/rahf_convert_bench]

Writes a random state dict with the published checkpoint's key names and shapes (ViT-L/16 at 384
+ t5-base, multi-head: 642.6M tensors' values incl. the unused ViT pooler; tied T5 embeddings
stored once, as torch.save does), then runs `rahf-jax convert` on it in a child process and
reports its wall time and peak RSS (the child's ru_maxrss). Needs torch and transformers (the
`dev` extra) and about 8 GB of free disk.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch_rahf  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPIECE = os.path.join(REPO, "rahf_jax", "data", "vocab", "demo_spm.model")


def random_state_dict(size: str) -> dict:
  """Random values with the real keys/shapes (modules built on the meta device: no memory)."""
  vit = torch_rahf.L16_VIT if size == "L16" else torch_rahf.B16_VIT
  with torch.device("meta"):
    model = torch_rahf.TorchRAHF(vit, torch_rahf.T5_BASE)
  shapes = {k: v.shape for k, v in model.state_dict().items()}
  g = torch.Generator().manual_seed(0)
  sd = {}
  tied = None
  for key, shape in shapes.items():
    if key.endswith(("shared.weight", "embed_tokens.weight", "lm_head.weight")):
      tied = tied if tied is not None else torch.randn(shape, generator=g) * 0.02
      sd[key] = tied
    else:
      sd[key] = torch.randn(shape, generator=g) * 0.02
  return sd


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", choices=("L16", "B16"), default="L16")
  parser.add_argument("--tmp", default="/tmp/rahf_convert_bench")
  args = parser.parse_args()
  shutil.rmtree(args.tmp, ignore_errors=True)
  os.makedirs(args.tmp)
  t0 = time.perf_counter()
  sd = random_state_dict(args.size)
  copies = ("embed_tokens.weight", "lm_head.weight")  # the tied embedding, counted once
  n_values = sum(v.numel() for k, v in sd.items() if not k.endswith(copies))
  path = os.path.join(args.tmp, "rahf_model.pt")
  torch.save(sd, path)
  del sd
  t_make = time.perf_counter() - t0
  out = os.path.join(args.tmp, "converted")
  cmd = [sys.executable, "-m", "rahf_jax.cli", "convert", f"--checkpoint={path}",
         f"--spiece={SPIECE}", f"--out={out}"]  # fmt: skip
  env = dict(os.environ, USE_TF="0", JAX_PLATFORMS="cpu")
  t1 = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t1
  if proc.returncode:
    sys.exit(f"convert failed:\n{proc.stderr[-3000:]}")
  peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
  with open(os.path.join(out, "conversion.json"), encoding="utf-8") as f:
    summary = json.load(f)
  result = {
    "size": args.size,
    "state_dict_values": n_values,
    "checkpoint_gb": os.path.getsize(path) / 1e9,
    "converted_params": summary["num_params"],
    "convert_wall_s": round(wall, 1),
    "convert_peak_rss_gib": round(peak_gib, 2),
    "inside_convert_s": {k: round(v, 1) for k, v in summary["seconds"].items()},
    "make_checkpoint_s": round(t_make, 1),
    "cpus": os.cpu_count(),
  }
  print(json.dumps(result, indent=2))
  shutil.rmtree(args.tmp, ignore_errors=True)


if __name__ == "__main__":
  main()
