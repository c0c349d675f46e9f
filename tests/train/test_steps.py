"""Jitted steps: 8 fake devices (FSDP rules, DP rules) give the 1-device loss curve; eval masks.

The 8-device runs are compared with the 1-device run in float64 (model, parameters and Adam
state), where summation-order noise is ~1e-16 relative and Adam cannot amplify it into visible
differences; a partitioning error would still differ at full size. In float32 the same three
steps differed by up to 7e-4 relative in a loss on one CPU (AMD EPYC, AVX2), and by 2e-4 on
another, purely from the order of the sharded reductions (float64: <= 1e-15).

Both tests start from one float64 state with random parameters (init_states_testlib.random_state,
made on the host).
"""

import jax
import numpy as np
import pytest
import train_testlib
from init_states_testlib import random_state

from rahf_jax import features, models
from rahf_jax.sharding import mesh_context, partitioning
from rahf_jax.train import losses, optimizer, state, steps
from rahf_jax.train.synthetic_batches import make_synthetic_batch

NUM_STEPS = 3


_F64_RTOL = 256 * float(np.finfo(np.float64).eps)


@pytest.fixture(scope="module")
def setup():
  """The float64 model, optimizer, config, batches and initial state (host arrays)."""
  with jax.enable_x64(True):
    return _setup()


def _setup():
  mc = train_testlib.model_config()
  mc.dtype = mc.param_dtype = "float64"
  # adam_eps well above summation noise: Adam's g / sqrt(v) would otherwise turn that noise in
  # near-zero gradients into lr-sized, sign-flipping updates.
  cfg = train_testlib.train_config(warmup_steps=0, learning_rate=1e-2, adam_eps=1e-3)
  model = models.build_model(mc)
  tx = optimizer.make_optimizer(cfg)
  batches = [
    make_synthetic_batch(mc, 8, train_testlib.PROMPT_LEN, train_testlib.TARGET_LEN, seed)
    for seed in range(NUM_STEPS)
  ]
  return model, tx, cfg, batches, random_state("multihead", "float64")


def _run(setup, mesh, rules_name):
  model, tx, cfg, batches, init_host = setup
  rules = partitioning.LOGICAL_AXIS_RULES[rules_name]
  _, shardings = state.get_abstract_state(model, tx, mesh, rules, batches[0])
  s = jax.device_put(init_host, shardings)
  train_step = steps.make_train_step(
    model, tx, variant=features.MULTI_HEAD, loss_weights=cfg.loss_weights, mesh=mesh,
    rules=rules, state_shardings=shardings, schedule=optimizer.make_schedule(cfg),
  )  # fmt: skip
  curve = []
  for b in batches:
    s, metrics = train_step(s, mesh_context.shard_batch(b, mesh))
    curve.append(jax.device_get(metrics))
  return curve, jax.device_get(s), shardings


@pytest.mark.slow
def test_fsdp_and_dp_on_8_devices_match_one_device(setup):
  with jax.enable_x64(True):
    _check_8_devices_match_one_device(setup)


def _close(got, want):
  """|got - want| <= rtol * max(max|want|, 1) (the floor covers leaves of pure rounding noise)."""
  got, want = np.asarray(got), np.asarray(want)
  return float(np.max(np.abs(got - want))) <= _F64_RTOL * max(float(np.max(np.abs(want))), 1.0)


def _check_8_devices_match_one_device(setup):
  mesh1 = partitioning.make_mesh(devices=jax.devices()[:1])
  ref_curve, ref_state, _ = _run(setup, mesh1, "dp")
  losses1 = np.array([m["loss"] for m in ref_curve])
  assert np.all(np.isfinite(losses1))
  assert [int(np.asarray(m["learning_rate"]) > 0) for m in ref_curve] == [1] * NUM_STEPS
  assert int(ref_state.step) == NUM_STEPS

  for rules_name, mesh in (
    ("fsdp", partitioning.make_mesh(data=1, fsdp=-1)),
    ("dp", partitioning.make_mesh(data=-1)),
  ):
    curve, final, shardings = _run(setup, mesh, rules_name)
    assert mesh.devices.size == 8
    for key in ("loss", "heatmap_loss", "score_loss", "text_loss", "grad_norm"):
      got, want = [m[key] for m in curve], [m[key] for m in ref_curve]
      assert _close(got, want), (rules_name, key, got, want)
    for (path, a), b in zip(
      jax.tree_util.tree_leaves_with_path(final.params), jax.tree.leaves(ref_state.params),
      strict=True,
    ):  # fmt: skip
      assert np.asarray(a).dtype == np.float64
      assert _close(a, b), (rules_name, jax.tree_util.keystr(path))
    if rules_name == "fsdp":
      specs = [str(s.spec) for s in jax.tree.leaves(shardings.params)]
      assert any("fsdp" in s for s in specs)


def test_eval_step_masks_padded_rows(setup):
  with jax.enable_x64(True):  # the float64 setup (compared at 1e-5 all the same)
    _check_eval_step_masks_padded_rows(setup)


def _check_eval_step_masks_padded_rows(setup):
  model, tx, cfg, batches, init_host = setup
  mesh = partitioning.make_mesh(data=-1)
  rules = partitioning.LOGICAL_AXIS_RULES["dp"]
  _, shardings = state.get_abstract_state(model, tx, mesh, rules, batches[0])
  s = jax.device_put(init_host, shardings)
  eval_step = steps.make_eval_step(
    model, variant=features.MULTI_HEAD, loss_weights=cfg.loss_weights, mesh=mesh, rules=rules,
    state_shardings=shardings,
  )  # fmt: skip
  weights = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)
  aux, outputs = eval_step(s, mesh_context.shard_batch(batches[1], mesh), mesh_context.shard_batch(
    {"w": weights}, mesh)["w"])  # fmt: skip
  aux, outputs = jax.device_get((aux, outputs))
  assert float(aux["num_examples"]) == 5.0

  # Reference: the loss of the five real rows alone, computed outside the step.
  def head(tree):
    return jax.tree.map(lambda x: np.asarray(x)[:5], tree)

  _, ref = losses.compute_losses(head(outputs), head(batches[1]), features.MULTI_HEAD, {})
  for key in ("loss", "heatmap_loss", "score_loss", "text_loss"):
    np.testing.assert_allclose(aux[key], float(ref[key]), rtol=1e-5, err_msg=key)
  # Deterministic: the same call gives the same numbers.
  aux2, _ = eval_step(s, mesh_context.shard_batch(batches[1], mesh), mesh_context.shard_batch(
    {"w": weights}, mesh)["w"])  # fmt: skip
  np.testing.assert_array_equal(float(aux2["loss"]), float(aux["loss"]))
