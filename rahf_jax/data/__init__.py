"""The data layer: the only part of rahf_jax that imports TensorFlow, TFDS and SeqIO.

Importing it registers the TFDS builder `richhf18k`, so that
`tfds.builder("richhf18k", data_dir=...)` works. Modules:
  words          prompt splitting, label pairing, `_0` targets (pure Python)
  image_sources  Pick-a-Pic parquet shards or an image folder + captions.jsonl
  build_report   per-split counts and affected uids of a build
  richhf18k/     the TFDS builder package
"""

import importlib.util as _importlib_util

# Registering the builder needs TFDS. Without it (a JAX-only accelerator image) the pure
# Python modules (words) still import; everything TFDS-based fails on its own import.
if _importlib_util.find_spec("tensorflow_datasets") is not None:
  from rahf_jax.data.richhf18k import richhf18k_dataset_builder  # noqa: F401  (registers richhf18k)
