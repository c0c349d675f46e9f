"""Shared fixtures for the data tests: tiny synthetic RichHF-18K sources and built datasets.

Session-scoped so that each tiny set is generated and built once per test run:
  synthetic_source        clean 24/8/8 examples, 64x64 images, parquet layout
  synthetic_oddities      the same plus one record of each real-data oddity (--oddities)
  richhf18k_data_dir      data_dir holding `richhf18k` built from synthetic_source
  richhf18k_odd_data_dir  data_dir holding `richhf18k` built from synthetic_oddities
Each source fixture is (manual_dir, manifest). Helpers: richhf_fixtures.py.
"""

import pytest
from richhf_fixtures import TINY, build_richhf18k


def _make_source(tmp_path_factory, name, **overrides):
  from rahf_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  out = tmp_path_factory.mktemp(name)
  manifest = synthetic.write_synthetic_richhf(
    str(out), synthetic.SyntheticConfig(**{**TINY, **overrides})
  )
  return out, manifest


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory):
  return _make_source(tmp_path_factory, "richhf_manual")


@pytest.fixture(scope="session")
def synthetic_oddities(tmp_path_factory):
  return _make_source(tmp_path_factory, "richhf_manual_odd", oddities=True)


@pytest.fixture(scope="session")
def richhf18k_data_dir(tmp_path_factory, synthetic_source):
  data_dir = tmp_path_factory.mktemp("richhf_tfds")
  build_richhf18k(synthetic_source[0], data_dir)
  return data_dir


@pytest.fixture(scope="session")
def richhf18k_odd_data_dir(tmp_path_factory, synthetic_oddities):
  data_dir = tmp_path_factory.mktemp("richhf_tfds_odd")
  build_richhf18k(synthetic_oddities[0], data_dir)
  return data_dir
