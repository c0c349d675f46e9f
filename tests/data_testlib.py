"""A synthetic RichHF-18K built with the real `richhf18k` builder, for end-to-end tests."""

import os


def build_synthetic_richhf18k(root, **sizes) -> str:
  """Writes synthetic sources into root/raw, builds them into root/tfds; returns that data_dir.

  `sizes` are rahf_jax.data.synthetic.SyntheticConfig fields (num_train, num_dev, ...).
  """
  import tensorflow_datasets as tfds  # noqa: PLC0415

  import rahf_jax.data  # noqa: F401, PLC0415  (registers richhf18k)
  from rahf_jax.data import synthetic  # noqa: PLC0415

  raw, data_dir = os.path.join(root, "raw"), os.path.join(root, "tfds")
  synthetic.write_synthetic_richhf(raw, synthetic.SyntheticConfig(**sizes))
  tfds.builder("richhf18k", data_dir=data_dir).download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=raw)
  )
  return data_dir
