"""Abstract state == initialised state; shardings from logical rules; init is mesh-independent."""

import jax
import numpy as np
import pytest
import train_testlib
from init_states_testlib import initial_state
from jax.sharding import NamedSharding

from rahf_jax import models
from rahf_jax.sharding import partitioning
from rahf_jax.train import optimizer, state
from rahf_jax.train.synthetic_batches import make_synthetic_batch


@pytest.fixture(scope="module")
def setup():
  mc = train_testlib.model_config()
  model = models.build_model(mc)
  tx = optimizer.make_optimizer(train_testlib.train_config())
  batch = make_synthetic_batch(mc, 2, train_testlib.PROMPT_LEN, train_testlib.TARGET_LEN, 0)
  return model, tx, batch


def _spec_axes(sharding: NamedSharding) -> set:
  axes = set()
  for entry in sharding.spec:
    axes.update(entry if isinstance(entry, tuple) else (entry,))
  return axes - {None}


@pytest.mark.slow
def test_fsdp_abstract_state_matches_init_and_equals_one_device(setup):
  model, tx, batch = setup
  rules = partitioning.LOGICAL_AXIS_RULES["fsdp"]
  mesh8 = partitioning.make_mesh(data=1, fsdp=-1)
  abstract, shardings = state.get_abstract_state(model, tx, mesh8, rules, batch)
  s8, _ = state.init_state(model, tx, mesh8, rules, batch, seed=0, state_shardings=shardings)

  # The abstract state is exactly what init produces, sharding included.
  flat_a = jax.tree_util.tree_leaves_with_path(abstract)
  flat_s = jax.tree.leaves(s8)
  assert len(flat_a) == len(flat_s)
  for (path, a), x in zip(flat_a, flat_s, strict=True):
    assert a.shape == x.shape and a.dtype == x.dtype, path
    assert x.sharding.is_equivalent_to(a.sharding, x.ndim), path

  # FSDP really shards: the ViT projection kernel is split over fsdp, and Adam's moments of a
  # parameter live exactly where the parameter lives.
  sharded = [p for p, s in jax.tree_util.tree_leaves_with_path(shardings.params)
             if "fsdp" in _spec_axes(s)]  # fmt: skip
  assert len(sharded) > 10
  adam = [s for s in jax.tree.leaves(shardings.opt_state) if "fsdp" in _spec_axes(s)]
  assert len(adam) == 2 * len(sharded)  # mu and nu
  assert shardings.step.spec == jax.sharding.PartitionSpec()

  # Same seed on one device gives the same numbers: state.init_state(seed=0) on one device with
  # dp rules (the step tests' shared initial state, init_states_testlib).
  s1 = initial_state()
  for a, b in zip(jax.tree.leaves(s8.params), jax.tree.leaves(s1.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(s8.rng), np.asarray(s1.rng))
  assert int(s1.step) == 0
  assert state.num_params(s1.params) == state.num_params(s8.params) > 1000


def test_dp_rules_replicate_every_param(setup):
  model, tx, batch = setup
  mesh = partitioning.make_mesh(data=-1)
  _, shardings = state.get_abstract_state(
    model, tx, mesh, partitioning.LOGICAL_AXIS_RULES["dp"], batch
  )
  for s in jax.tree.leaves(shardings):
    assert _spec_axes(s) == set()


def test_missing_model_input_is_a_clear_error(setup):
  model, tx, _ = setup
  mesh = partitioning.make_mesh(data=-1)
  with pytest.raises(ValueError, match="decoder_input_ids"):
    state.get_abstract_state(model, tx, mesh, (), {"image": np.zeros((1, 4, 4, 3)),
                                                   "prompt_ids": np.zeros((1, 2))})  # fmt: skip
