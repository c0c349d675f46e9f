"""Fixtures of the t5x tests: a tiny synthetic richhf18k build (6 dev/test examples)."""

import pytest


@pytest.fixture(scope="session")
def t5x_data_dir(tmp_path_factory):
  """A TFDS data_dir holding a tiny `richhf18k` built from the synthetic generator."""
  import tensorflow_datasets as tfds

  import rahf_jax.data  # noqa: F401  (registers the richhf18k builder)
  from rahf_jax.data import synthetic

  manual = tmp_path_factory.mktemp("t5x_manual")
  config = synthetic.SyntheticConfig(num_train=8, num_dev=6, num_test=6, image_size=64, seed=5)
  synthetic.write_synthetic_richhf(str(manual), config)
  out = tmp_path_factory.mktemp("t5x_tfds")
  tfds.builder("richhf18k", data_dir=str(out)).download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
  )
  return str(out)
