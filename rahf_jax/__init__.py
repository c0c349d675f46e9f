"""rahf-jax: RAHF (Rich Human Feedback for Text-to-Image Generation) in JAX/Flax.

Importing this package does no work; import the room you need:
`rahf_jax.data` (TensorFlow/TFDS/SeqIO), `rahf_jax.models`, `rahf_jax.train`,
`rahf_jax.evaluation`, `rahf_jax.inference` (JAX only).
"""

__version__ = "0.1.0"
