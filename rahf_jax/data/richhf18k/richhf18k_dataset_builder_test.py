"""TFDS's standard builder test on dummy_data/ (a tiny synthetic manual_dir).

dummy_data/ was written by
  python data_prep/make_synthetic_richhf.py --out rahf_jax/data/richhf18k/dummy_data \
    --num_train 3 --num_dev 2 --num_test 2 --image_size 32 --train_shards 1 \
    --rows_per_group 4 --seed 1
(then synthetic_manifest.json removed). Run: pytest tests/data/test_richhf18k_dataset_builder.py
"""

import tensorflow_datasets as tfds

from rahf_jax.data.richhf18k import richhf18k_dataset_builder


class Richhf18kDatasetBuilderTest(tfds.testing.DatasetBuilderTestCase):
  """Builds every split from dummy_data/ and checks counts and feature specs."""

  DATASET_CLASS = richhf18k_dataset_builder.Builder
  SPLITS = {"train": 3, "dev": 2, "test": 2}


if __name__ == "__main__":
  tfds.testing.test_main()
