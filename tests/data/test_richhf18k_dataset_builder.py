"""Runs the builder's TFDS DatasetBuilderTestCase (dummy_data/) under pytest / `make test`."""

from rahf_jax.data.richhf18k.richhf18k_dataset_builder_test import (  # noqa: F401
  Richhf18kDatasetBuilderTest,
)
