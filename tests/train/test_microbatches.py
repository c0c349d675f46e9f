"""`num_microbatches`: k slices of the batch in one train step give the whole batch's step.

Compared in float64 (model, parameters, Adam state): the only difference between the two
programs is the order of the sums (over slices, then rows), about 1e-16 relative, so any
difference above 256 ulps is a wrong term. The synthetic batches give each example its own number
of target tokens and output type (the augmented variant), so slices differ in their counts: a step
that averaged each slice's mean losses (instead of dividing by the whole batch's counts) fails.
Both steps start from one float64 state with random parameters, made once on the host
(init_states_testlib.random_state), then put on the mesh.
"""

import jax
import numpy as np
import pytest
import train_testlib
from init_states_testlib import random_state

from rahf_jax import features, models
from rahf_jax.sharding import mesh_context, partitioning
from rahf_jax.train import loop, optimizer, state, steps
from rahf_jax.train.synthetic_batches import make_synthetic_batch

_F64_RTOL = 256 * float(np.finfo(np.float64).eps)
BATCH = 16


def _setup(variant: str, mesh, rules_name: str):
  mc = train_testlib.model_config(variant)
  mc.dtype = mc.param_dtype = "float64"
  cfg = train_testlib.train_config(variant, warmup_steps=0, learning_rate=1e-2, adam_eps=1e-3)
  model = models.build_model(mc)
  tx = optimizer.make_optimizer(cfg)
  batch = make_synthetic_batch(mc, BATCH, train_testlib.PROMPT_LEN, train_testlib.TARGET_LEN, 3)
  rules = partitioning.LOGICAL_AXIS_RULES[rules_name]
  _, shardings = state.get_abstract_state(model, tx, mesh, rules, batch)
  init_host = random_state(variant, "float64")
  return model, tx, batch, rules, shardings, init_host


def _one_step(setup, variant: str, num_microbatches: int, mesh):
  model, tx, batch, rules, shardings, init_host = setup
  train_step = steps.make_train_step(
    model, tx, variant=variant, loss_weights={"heatmap": 2.0, "score": 3.0}, mesh=mesh,
    rules=rules, state_shardings=shardings, num_microbatches=num_microbatches,
  )  # fmt: skip
  init = jax.device_put(init_host, shardings)  # donated to the step
  new_state, metrics = train_step(init, mesh_context.shard_batch(batch, mesh))
  return jax.device_get(metrics), jax.device_get(new_state.params)


def _close(got, want) -> bool:
  got, want = np.asarray(got), np.asarray(want)
  return float(np.max(np.abs(got - want))) <= _F64_RTOL * max(float(np.max(np.abs(want))), 1.0)


@pytest.mark.slow
def test_microbatched_step_equals_whole_batch_step():
  """The augmented variant, 4 slices, fsdp rules on (data 2, fsdp 4): its loss terms have every
  denominator the multi-head variant's have (tokens, examples) and one per output type, and each
  slice of the batch is split over both batch axes of the mesh."""
  variant, k = features.AUGMENTED_PROMPT, 4
  mesh = partitioning.make_mesh(data=2, fsdp=4)
  with jax.enable_x64(True):
    setup = _setup(variant, mesh, "fsdp")
    want, want_params = _one_step(setup, variant, 1, mesh)
    got, got_params = _one_step(setup, variant, k, mesh)
  batch = setup[2]
  # The slices really differ in their counts (else a per-slice mean would pass too).
  tokens = batch["decoder_loss_weights"].sum(axis=1)
  per_slice = [tokens[i::k].sum() for i in range(k)]
  assert len(set(per_slice)) > 1, per_slice
  types = [
    tuple(np.bincount(batch["output_type"][i::k], minlength=len(features.AUGMENTED_OUTPUT_TYPES)))
    for i in range(k)
  ]
  assert len(set(types)) > 1, types
  assert float(got["num_tokens"]) == float(tokens.sum())
  for key in ("loss", "heatmap_loss", "score_loss", "text_loss", "grad_norm"):
    assert np.isfinite(want[key]) and want[key] > 0, key
    assert _close(got[key], want[key]), (key, got[key], want[key])
  leaves = jax.tree_util.tree_leaves_with_path(got_params)
  for (path, a), b in zip(leaves, jax.tree.leaves(want_params), strict=True):
    assert np.asarray(a).dtype == np.float64
    assert _close(a, b), jax.tree_util.keystr(path)


def test_num_microbatches_must_divide_the_batch():
  cfg = train_testlib.train_config(num_microbatches=3)
  with pytest.raises(ValueError, match="num_microbatches=3 does not fit config.batch_size=8"):
    loop.num_microbatches_of(cfg, 1)
  assert loop.num_microbatches_of(train_testlib.train_config(num_microbatches=2), 4) == 2
