"""Parameter trees made on the host from abstract shapes (`init_shapes`: a model's), for tests
that need some values of the right shapes and dtypes (both sides of a comparison compute on them),
not a model's init, whose program (a threefry draw per parameter) takes seconds to compile."""

import flax.linen as nn
import jax
import numpy as np


def init_shapes(init, *args, rngs=None):
  """The unboxed "params" of flax's `init(rngs, *args)` as ShapeDtypeStructs: traced, nothing
  compiled. `rngs`: a key or a dict of keys (default: key 0)."""
  rngs = jax.random.key(0) if rngs is None else rngs
  return nn.unbox(jax.eval_shape(init, rngs, *args))["params"]


def random_like(abstract, seed: int = 0, scale: float = 0.05):
  """numpy arrays shaped and typed as `abstract`'s leaves (ShapeDtypeStruct or arrays), drawn
  from N(0, scale**2) with numpy's generator seeded `seed`."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: (scale * rng.standard_normal(a.shape)).astype(a.dtype), abstract)
