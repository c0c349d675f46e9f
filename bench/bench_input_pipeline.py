r"""Input-pipeline throughput: TFDS richhf18k -> SeqIO task -> feature converter -> batches.

Measures, on this host's CPUs, how many examples per second the trainer's own pipeline
(rahf_jax.data.pipeline.make_dataset, shuffled, repeating) delivers as numpy batches, per
variant, so that it can be compared with what the accelerator consumes (the target:
>= 70 training examples/s for L16 multi-head on one GPU).

By default it first writes a synthetic RichHF-format set (data_prep's generator, JPEG images
of --source_image_size pixels, Pick-a-Pic-like 512 by default) and builds it with the real
TFDS builder into a temporary directory; --data_dir reuses an existing build instead.

  python bench/bench_input_pipeline.py                       # synthetic, 384 px model inputs
  python bench/bench_input_pipeline.py --data_dir ~/tensorflow_datasets --vocab t5

Each augmented-prompt example is one (image, prompt, output type); the pipeline expands
each image into seven of them, so its examples/s is not comparable one for one.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bench_common as bc  # noqa: E402

COLUMNS = (
  ("variant", "variant", ""),
  ("batch", "batch", "d"),
  ("image_size", "image", "d"),
  ("heatmap_size", "heatmap", "d"),
  ("first_batch_s", "first batch s", ".2f"),
  ("batch_ms", "batch ms", ".1f"),
  ("ex_s", "ex/s", ".1f"),
  ("status", "status", ""),
)


def build_synthetic(workdir: str, args) -> tuple[str, dict]:
  """Writes a synthetic RichHF set and builds it with the real builder; (data_dir, timings)."""
  import tensorflow_datasets as tfds

  import rahf_jax.data  # noqa: F401  (registers the richhf18k builder)
  from rahf_jax.data import synthetic

  manual_dir = os.path.join(workdir, "manual")
  data_dir = os.path.join(workdir, "tfds")
  start = time.perf_counter()
  synthetic.write_synthetic_richhf(
    manual_dir,
    synthetic.SyntheticConfig(
      num_train=args.num_train,
      num_dev=2,
      num_test=2,
      image_size=args.source_image_size,
      seed=args.seed,
      train_shards=1,
      test_shards=1,
    ),
  )
  generated = time.perf_counter()
  builder = tfds.builder("richhf18k", data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  built = time.perf_counter()
  return data_dir, {"generate_s": generated - start, "build_s": built - generated}


def measure_variant(task_name: str, args) -> dict:
  """Time to the first batch, then the steady batch time and examples/s."""
  from rahf_jax.data import pipeline

  start = time.perf_counter()
  ds = pipeline.make_dataset(
    task_name=task_name,
    split="train",
    batch_size=args.batch_size,
    feature_lengths={"inputs": args.prompt_len, "targets": args.target_len},
    shuffle=True,
    seed=args.seed,
    num_epochs=None,
  )
  batches = pipeline.as_numpy_batches(ds)
  first = next(batches)
  first_s = time.perf_counter() - start
  for _ in range(args.warmup):
    next(batches)
  times = []
  for _ in range(args.batches):
    t0 = time.perf_counter()
    batch = next(batches)
    times.append(time.perf_counter() - t0)
  rows = {k: v.shape[0] for k, v in batch.items()}
  if set(rows.values()) != {args.batch_size}:
    raise ValueError(f"{task_name}: batch leading sizes {rows} != {args.batch_size}")
  # Throughput over the second half only: by then batches prefetched while the first one was
  # being waited for are used up, and the figure is the steady rate.
  steady = times[len(times) // 2 :]
  return {
    "first_batch_s": first_s,
    "batch_s_all": times,
    "batch_ms": 1e3 * bc.median(steady),
    "ex_s": args.batch_size * len(steady) / sum(steady),
    "features": {k: list(v.shape) for k, v in first.items()},
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default="", help="existing TFDS dir with richhf18k")
  parser.add_argument("--workdir", default="", help="where to build the synthetic set (tmp)")
  parser.add_argument("--num_train", type=int, default=64, help="synthetic train examples")
  parser.add_argument("--source_image_size", type=int, default=512, help="synthetic JPEG side")
  parser.add_argument("--image_size", type=int, default=384, help="model input resolution")
  parser.add_argument("--heatmap_size", type=int, default=384, help="heatmap resolution")
  parser.add_argument("--vocab", default="demo", choices=("demo", "t5"))
  parser.add_argument("--variants", default="multihead,augmented")
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--batches", type=int, default=30, help="timed batches per variant")
  parser.add_argument("--warmup", type=int, default=2, help="untimed batches after the first")
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--target_len", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", default="", help="write every figure here")
  args = parser.parse_args(argv)

  from rahf_jax.data import tasks, vocab

  info = {"cpus": os.cpu_count(), "args": vars(args)}
  with tempfile.TemporaryDirectory(dir=args.workdir or None) as tmp:
    data_dir = args.data_dir
    if not data_dir:
      data_dir, timings = build_synthetic(tmp, args)
      info.update(timings)
      print(
        f"# synthetic set: {args.num_train} train examples, {args.source_image_size} px "
        f"JPEGs; generated in {timings['generate_s']:.1f} s, built in "
        f"{timings['build_s']:.1f} s",
        flush=True,
      )
    names = tasks.register_tasks(
      data_dir=data_dir,
      image_size=args.image_size,
      heatmap_size=args.heatmap_size,
      vocabulary=vocab.get_vocabulary(args.vocab),
      suffix="_bench",
    )
    rows = []
    for variant in args.variants.split(","):
      row = {
        "variant": variant,
        "batch": args.batch_size,
        "image_size": args.image_size,
        "heatmap_size": args.heatmap_size,
      }
      try:
        row.update(measure_variant(names[variant], args))
        row["status"] = "ok"
      except Exception as e:  # Report and go on with the next variant.
        row["status"] = f"error: {type(e).__name__}: {e}".splitlines()[0][:160]
      rows.append(row)
      print("# " + json.dumps({k: row.get(k) for k, _, _ in COLUMNS}), flush=True)

  if args.json:
    bc.write_json(args.json, {"info": info, "rows": rows})
  print()
  print(
    f"input pipeline on {info['cpus']} CPUs ({args.vocab} vocabulary, prompt_len "
    f"{args.prompt_len}, target_len {args.target_len}, shuffled, repeating)"
  )
  print(bc.format_table(rows, COLUMNS))
  return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
