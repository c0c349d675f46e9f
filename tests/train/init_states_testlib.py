"""Initial train states per model variant and dtype, shared by the step tests of tests/train.

A train state's init compiles a large program (a threefry draw per parameter: about as long as
the train step itself, 5-10 s here), and the step tests only need a state to start from. So
`initial_state(variant, dtype)` inits train_testlib's model (compute and params in `dtype`) once
per process, with seed 0 on one device, and keeps it on the host. Other processes that init the
same program (test files run by another xdist worker) hit JAX's persistent compilation cache.

The state does not depend on the training config's learning rate, schedule, eps or weight
decay (AdamW's state at init is zero moments and zero counts), only on the model, the
optimizer's structure (float32 or float64 params: no master weights) and the seed; nor on the
example batch's size (init runs the model on zeros and keeps only the parameters).

Tests that compare two ways of stepping from the same state (sharded against one device,
microbatched against whole) need no init's values: `random_state` makes one on the host, with
random parameters and the optimizer's own fresh state, and no program to compile.
"""

import functools

import jax
import numpy as np
import train_testlib
from host_params import random_like

from rahf_jax import models
from rahf_jax.sharding import partitioning
from rahf_jax.train import optimizer, state
from rahf_jax.train.synthetic_batches import make_synthetic_batch


def _model_and_optimizer(variant: str, dtype: str):
  """train_testlib's model config and model in `dtype`, its optimizer and a one-device mesh."""
  mc = train_testlib.model_config(variant)
  mc.dtype = mc.param_dtype = dtype
  tx = optimizer.make_optimizer(train_testlib.train_config(variant))
  return mc, models.build_model(mc), tx, partitioning.make_mesh(devices=jax.devices()[:1])


def _example(mc):
  """A one-row synthetic batch (made under x64 for a float64 model)."""
  return make_synthetic_batch(mc, 1, train_testlib.PROMPT_LEN, train_testlib.TARGET_LEN, 0)


@functools.cache
def initial_state(variant: str = "multihead", dtype: str = "float32") -> state.TrainState:
  """`state.init_state` (seed 0, one device, dp rules) of train_testlib's model, on the host.

  Made with x64 on exactly for float64, whichever test asks first; use a float64 state under
  `jax.enable_x64(True)`.
  """
  mc, model, tx, mesh = _model_and_optimizer(variant, dtype)
  with jax.enable_x64(dtype == "float64"):
    rules = partitioning.LOGICAL_AXIS_RULES["dp"]
    init, _ = state.init_state(model, tx, mesh, rules, _example(mc))
    return jax.device_get(init)


@functools.cache
def random_state(variant: str = "multihead", dtype: str = "float64") -> state.TrainState:
  """A train state of train_testlib's model in `dtype`, made on the host: step 0, parameters
  drawn by host_params.random_like (seed 0), the optimizer's `init` of them (eager) and a fixed
  dropout key. Use a float64 state under `jax.enable_x64(True)`."""
  mc, model, tx, mesh = _model_and_optimizer(variant, dtype)
  with jax.enable_x64(dtype == "float64"):
    rules = partitioning.LOGICAL_AXIS_RULES["dp"]
    abstract, _ = state.get_abstract_state(model, tx, mesh, rules, _example(mc))
    params = random_like(abstract.params)
    return jax.device_get(
      state.TrainState(
        step=np.zeros((), abstract.step.dtype),
        params=params,
        opt_state=tx.init(params),
        rng=np.asarray(jax.random.PRNGKey(1)),
      )
    )
