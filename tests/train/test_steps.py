"""Jitted steps: 8 fake devices (FSDP rules, DP rules) give the 1-device loss curve; eval masks."""

import jax
import numpy as np
import pytest
import train_testlib

from rahf_jax import features, models
from rahf_jax.train import losses, optimizer, partitioning, state, steps
from rahf_jax.train.synthetic_batches import make_synthetic_batch

NUM_STEPS = 3


@pytest.fixture(scope="module")
def setup():
  mc = train_testlib.model_config()
  # adam_eps well above summation noise: Adam's g / sqrt(v) would otherwise turn that noise in
  # near-zero gradients into lr-sized, sign-flipping updates.
  cfg = train_testlib.train_config(warmup_steps=0, learning_rate=1e-2, adam_eps=1e-3)
  model = models.build_model(mc)
  tx = optimizer.make_optimizer(cfg)
  batches = [
    make_synthetic_batch(mc, 8, train_testlib.PROMPT_LEN, train_testlib.TARGET_LEN, seed)
    for seed in range(NUM_STEPS)
  ]
  mesh1 = partitioning.make_mesh(devices=jax.devices()[:1])
  rules1 = partitioning.LOGICAL_AXIS_RULES["dp"]
  init1, _ = state.init_state(model, tx, mesh1, rules1, batches[0], seed=0)
  init_host = jax.device_get(init1)
  return model, tx, cfg, batches, init_host


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
    s, metrics = train_step(s, steps.shard_batch(b, mesh))
    curve.append(jax.device_get(metrics))
  return curve, jax.device_get(s), shardings


@pytest.mark.slow
def test_fsdp_and_dp_on_8_devices_match_one_device(setup):
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
      np.testing.assert_allclose(
        [m[key] for m in curve], [m[key] for m in ref_curve], rtol=2e-4, err_msg=rules_name
      )
    # Parameters: the total update (final - init) agrees with the 1-device one to 1% in norm
    # over all parameters, and to 5% per leaf (an element-wise check would flag the odd
    # near-zero-gradient entry whose summation-order noise Adam's normalisation amplifies).
    init = jax.tree.leaves(setup[4].params)
    ref = jax.tree.leaves(ref_state.params)
    diffs, norms = [], []
    for a, b, p0 in zip(jax.tree.leaves(final.params), ref, init, strict=True):
      da, db = np.asarray(a) - p0, np.asarray(b) - p0
      diffs.append(np.linalg.norm(da - db))
      norms.append(np.linalg.norm(db))
      assert diffs[-1] <= 0.05 * norms[-1] + 1e-6, (rules_name, diffs[-1], norms[-1])
    total = np.linalg.norm(diffs) / np.linalg.norm(norms)
    assert total < 0.01, (rules_name, total)
    if rules_name == "fsdp":
      specs = [str(s.spec) for s in jax.tree.leaves(shardings.params)]
      assert any("fsdp" in s for s in specs)


def test_eval_step_masks_padded_rows(setup):
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
  aux, outputs = eval_step(s, steps.shard_batch(batches[1], mesh), steps.shard_batch(
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
  aux2, _ = eval_step(s, steps.shard_batch(batches[1], mesh), steps.shard_batch(
    {"w": weights}, mesh)["w"])  # fmt: skip
  np.testing.assert_array_equal(float(aux2["loss"]), float(aux["loss"]))
