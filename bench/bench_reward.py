r"""Throughput of RAHF as a reward (rahf_jax.reward), per batch size, on synthetic inputs.

Reports per (size, variant, batch size):

  compile s        the Scorer's first call (heads program compile + one bucket)
  score ex/s       Scorer.score, heads only: uint8 images of --source_size px -> PIL resize,
                   tokenise, pad to the bucket, heads, resize nothing back (no heatmaps asked)
  words ex/s       Scorer.score(words=True): the same plus greedy decoding of target_len tokens
  reward ex/s      the jitted reward_fn (heads only) on float images at the model's size
  reward+grad ex/s the jitted value_and_grad of the reward w.r.t. the pixels

Every figure is pairs per second from the median of --steps timed calls after --warmup
untimed ones, each call waited for (bench_common.time_calls), on all local devices (the
batch split over them; `make bench` and a one-GPU host have one). Parameters are freshly
initialised (speed does not depend on training); prompts use the demo vocabulary.

Examples:
  python bench/bench_reward.py --size test --batch_sizes 1,8,32           # CPU (make bench)
  python bench/bench_reward.py --size test --batch_sizes 8 --dtype float32   # CPU: f32 compute
  python bench/bench_reward.py --size L16 --batch_sizes 8,16 --json /tmp/reward.json   # GPU
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_common as bc  # noqa: E402

SIZE_ALIASES = {"B16": "B16_t5base_384", "L16": "L16_t5base_384"}
PARTS = ("score", "words", "reward")
PROMPT = "a red circle and a blue square on a wooden table"
COLUMNS = (
  ("size", "size", ""),
  ("variant", "variant", ""),
  ("batch", "batch", "d"),
  ("compile_s", "compile s", ".1f"),
  ("score_ex_s", "score ex/s", ".1f"),
  ("words_ex_s", "words ex/s", ".1f"),
  ("reward_ex_s", "reward ex/s", ".1f"),
  ("reward_grad_ex_s", "reward+grad ex/s", ".1f"),
  ("status", "status", ""),
)


def make_scorer(
  size: str,
  variant: str,
  batch: int,
  prompt_len: int,
  target_len: int,
  seed: int,
  dtype: str = "",
  model_overrides: dict | None = None,
):
  """A Scorer over freshly initialised parameters of (size, variant), on all local devices.

  `dtype`: the model's compute dtype ("" keeps the model config's, bfloat16).
  `model_overrides`: model-config fields by dotted name, e.g. {"vit.depth": 1}.
  """
  import jax

  from rahf_jax.inference.predictor import Predictor
  from rahf_jax.inference.tokenizer import load_tokenizer
  from rahf_jax.reward import Scorer
  from rahf_jax.train.default_train_config import train_config_defaults
  from rahf_jax.train.loop import setup_training

  config = train_config_defaults()
  config.model.size, config.model.variant = size, variant
  config.batch_size = config.eval_batch_size = 1
  config.mesh.data = -1  # every local device (one on a single-GPU or plain CPU host)
  config.data.prompt_len, config.data.target_len = prompt_len, target_len
  config.data.vocabulary = "demo"
  # The whole overridden model config as the run's overrides (a field it lacks is an error here).
  config.model.overrides = bc.model_config(size, variant, model_overrides)
  if dtype:
    config.model.overrides.dtype = dtype
  setup = setup_training(config)
  params = setup.init_fn(jax.random.PRNGKey(seed)).params
  return Scorer(Predictor(setup, params, load_tokenizer("demo")), batch_size=batch)


def measure(args, size: str, variant: str, batch: int) -> dict:
  """Every figure of one (size, variant, batch)."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  row = {"size": size, "variant": variant, "batch": batch}
  scorer = make_scorer(
    size, variant, batch, args.prompt_len, args.target_len, args.seed, args.dtype,
    args.model_overrides,
  )  # fmt: skip
  rng = np.random.default_rng(args.seed)
  images = [
    rng.integers(0, 256, (args.source_size, args.source_size, 3), np.uint8) for _ in range(batch)
  ]
  parts = args.parts.split(",")

  def timed(name, fn):
    times = bc.time_calls(fn, args.steps, args.warmup)
    row[f"{name}_ex_s"] = batch / bc.median(times)
    row[f"{name}_s_all"] = times

  if "score" in parts:
    start = time.perf_counter()
    scorer.score(images, PROMPT)
    row["compile_s"] = time.perf_counter() - start
    timed("score", lambda: scorer.score(images, PROMPT) and None)
  if "words" in parts:
    timed("words", lambda: scorer.score(images, PROMPT, words=True) and None)
  if "reward" in parts:
    reward = scorer.reward_fn()
    pixels = jnp.asarray(
      rng.uniform(size=(batch, scorer.image_size, scorer.image_size, 3)), jnp.float32
    )
    ids = jnp.asarray(scorer.encode_prompts([PROMPT] * batch))
    forward = jax.jit(reward)
    value_and_grad = jax.jit(jax.value_and_grad(lambda p, x, i: reward(p, x, i).sum(), argnums=1))
    timed("reward", lambda: forward(scorer.params, pixels, ids))
    timed("reward_grad", lambda: value_and_grad(scorer.params, pixels, ids))
  row["status"] = "ok"
  return row


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--size", default="test", help="test | tiny | B16 | L16 (or a full size name)"
  )
  parser.add_argument("--variants", default="multihead", help="comma list: multihead,augmented")
  parser.add_argument("--batch_sizes", default="1,8,32", help="comma list of pairs per call")
  parser.add_argument("--parts", default=",".join(PARTS), help="comma list of " + ",".join(PARTS))
  parser.add_argument("--steps", type=int, default=5, help="timed calls per figure")
  parser.add_argument("--warmup", type=int, default=1, help="untimed calls before them")
  parser.add_argument("--source_size", type=int, default=256, help="side of the input images")
  parser.add_argument("--prompt_len", type=int, default=32)
  parser.add_argument("--target_len", type=int, default=32)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--dtype",
    default="",
    help="model compute dtype ('' = the config's bfloat16; float32 is faster on XLA's CPU "
    "backend, which runs bf16 dots and convolutions as float32 plus conversions)",
  )
  parser.add_argument(
    "--model_overrides", default="", help='JSON dict of model-config fields, e.g. {"vit.depth": 1}'
  )
  parser.add_argument("--json", default="", help="write every figure here")
  args = parser.parse_args(argv)

  import jax

  size = SIZE_ALIASES.get(args.size, args.size)
  args.model_overrides = json.loads(args.model_overrides) if args.model_overrides else None
  for variant in args.variants.split(","):
    try:  # a misspelt field stops here, not in every row
      bc.model_config(size, variant, args.model_overrides)
    except ValueError as e:
      raise SystemExit(str(e)) from None
  device = jax.devices()[0]
  info = {
    "device": f"{device.platform}:{getattr(device, 'device_kind', '?')}",
    "jax_version": jax.__version__,
    "source_size": args.source_size,
    "dtype": args.dtype or "bfloat16 (config)",
    "model_overrides": args.model_overrides or {},
  }
  rows = []
  for variant in args.variants.split(","):
    for batch in (int(b) for b in args.batch_sizes.split(",")):
      try:
        row = measure(args, size, variant, batch)
      except Exception as e:  # one failed configuration (e.g. out of memory) keeps the others
        row = {
          "size": size,
          "variant": variant,
          "batch": batch,
          "status": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}",
        }
      rows.append(row)
      print(
        f"# {row}" if row["status"] != "ok" else f"# {size} {variant} batch {batch}: ok", flush=True
      )
  if args.json:
    bc.write_json(args.json, {"info": info, "rows": rows})
  print(
    f"\nRAHF reward throughput on {info['device']} (jax {info['jax_version']}), "
    f"pairs per second, {args.source_size} px inputs:\n"
  )
  print(bc.format_table(rows, COLUMNS))
  return 0


if __name__ == "__main__":
  sys.exit(main())
