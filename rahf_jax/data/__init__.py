"""The data layer: the only part of rahf_jax that imports TensorFlow, TFDS and SeqIO.

Importing it registers the TFDS builder `richhf18k`, so that
`tfds.builder("richhf18k", data_dir=...)` works, and the default SeqIO tasks of tasks.py
(`richhf18k_multihead`, `richhf18k_augmented` and their `_demo` pair; nothing is read until a
task is used). Modules:
  words          prompt splitting, label pairing, `_0` targets (pure Python)
  image_sources  Pick-a-Pic parquet shards or an image folder + captions.jsonl
  build_report   per-split counts and affected uids of a build
  richhf18k/     the TFDS builder package
  tasks          SeqIO tasks (vocab: their SentencePiece vocabularies)
"""

import importlib.util as _importlib_util

# Registering the builder needs TFDS. Without it (a JAX-only accelerator image) the pure
# Python modules (words) still import; everything TFDS-based fails on its own import.
if _importlib_util.find_spec("tensorflow_datasets") is not None:
  from rahf_jax.data.richhf18k import richhf18k_dataset_builder  # noqa: F401  (registers richhf18k)

  if _importlib_util.find_spec("seqio") is not None:
    from rahf_jax.data import tasks  # noqa: F401  (registers the default SeqIO tasks)
