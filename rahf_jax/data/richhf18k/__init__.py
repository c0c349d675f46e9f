"""The `richhf18k` TFDS builder package (TFDS builder-directory layout).

`import rahf_jax.data` registers the builder; `tfds build rahf_jax/data/richhf18k` loads
`richhf18k_dataset_builder.py` directly. See README.md for what goes in manual_dir.
"""
