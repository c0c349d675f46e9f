"""Writes a synthetic RichHF-18K (label TFRecords + Pick-a-Pic-style parquet) to --out.

  python data_prep/make_synthetic_richhf.py --out /tmp/richhf_manual
  tfds build rahf_jax/data/richhf18k --manual_dir=/tmp/richhf_manual --data_dir=/tmp/tfds

Deterministic from --seed. The defaults (2000/200/200 examples, 256x256 JPEG images) are the
demo size; --oddities adds one record of each real-data oddity (label-count mismatch, prompt
without words, non-ASCII prompt, missing/undecodable image, heatmap of the wrong
size/undecodable, missing caption).
What the data contains and why it is learnable: rahf_jax/data/synthetic_scenes.py.
"""

import argparse
import json
import os
import sys
import time

try:
  from rahf_jax.data import synthetic
except ImportError:  # run from a checkout without `pip install -e .`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from rahf_jax.data import synthetic


def parse_args(argv=None) -> argparse.Namespace:
  """Command-line flags (one per SyntheticConfig field)."""
  defaults = synthetic.SyntheticConfig()
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--out", required=True, help="output directory (the builder's manual_dir)")
  p.add_argument("--seed", type=int, default=defaults.seed)
  p.add_argument("--num_train", type=int, default=defaults.num_train)
  p.add_argument("--num_dev", type=int, default=defaults.num_dev)
  p.add_argument("--num_test", type=int, default=defaults.num_test)
  p.add_argument("--image_size", type=int, default=defaults.image_size, help="square JPEG side")
  p.add_argument("--train_shards", type=int, default=defaults.train_shards)
  p.add_argument("--test_shards", type=int, default=defaults.test_shards)
  p.add_argument("--rows_per_group", type=int, default=defaults.rows_per_group)
  p.add_argument("--distractor_fraction", type=float, default=defaults.distractor_fraction)
  p.add_argument("--jpeg_quality", type=int, default=defaults.jpeg_quality)
  p.add_argument("--oddities", action="store_true", help="add one record per real-data oddity")
  p.add_argument("--layout", choices=("parquet", "folder"), default=defaults.layout)
  p.add_argument(
    "--workers", type=int, default=os.cpu_count() or 1, help="threads rendering the scenes"
  )
  return p.parse_args(argv)


def main(argv=None) -> None:
  args = parse_args(argv)
  fields = {k: v for k, v in vars(args).items() if k not in ("out", "workers")}
  start = time.time()
  config = synthetic.SyntheticConfig(**fields)
  manifest = synthetic.write_synthetic_richhf(args.out, config, workers=args.workers)
  size = sum(
    os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(args.out) for f in files
  )
  print(json.dumps({k: manifest[k] for k in ("label_records", "pickapic_rows", "oddities")}))
  print(f"wrote {args.out} ({size / 2**20:.1f} MiB) in {time.time() - start:.1f}s")


if __name__ == "__main__":
  main()
