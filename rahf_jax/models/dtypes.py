"""Dtype rule shared by the network and the losses."""

import jax.numpy as jnp


def at_least_float32(dtype) -> jnp.dtype:
  """`dtype` promoted to at least float32.

  Norms, softmaxes, outputs and losses run in it: bf16 compute gives float32, and a float64
  model stays float64 throughout (the sharding-equivalence tests compare in float64).
  """
  return jnp.promote_types(dtype, jnp.float32)
