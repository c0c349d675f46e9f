"""The train state under param_dtype: float32 is the unchanged path; bfloat16 carries fp32 master
weights through init, the abstract state (shardings), train steps and checkpoints.

The float32 state both tests need (the float32 test's start, the bfloat16 test's expected master
weights) is one init, shared with the other step tests (init_states_testlib: seed 0 on one
device; an init's values do not depend on the mesh, tests/train/test_state.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import train_testlib
from init_states_testlib import initial_state

from rahf_jax import features, models
from rahf_jax.sharding import abstract_params as abstract_params_lib
from rahf_jax.sharding import mesh_context, partitioning, workdir_files
from rahf_jax.train import checkpointing, optimizer, state, steps
from rahf_jax.train.synthetic_batches import make_synthetic_batch


def _setup(param_dtype):
  mc = train_testlib.model_config()
  cfg = train_testlib.train_config(param_dtype=param_dtype, warmup_steps=0, learning_rate=1e-2)
  batches = [
    make_synthetic_batch(mc, 8, train_testlib.PROMPT_LEN, train_testlib.TARGET_LEN, seed)
    for seed in range(2)
  ]
  return models.build_model(mc), optimizer.make_optimizer(cfg), cfg, batches


def _train_step(model, tx, cfg, mesh, rules, shardings):
  return steps.make_train_step(
    model, tx, variant=features.MULTI_HEAD, loss_weights=cfg.loss_weights, mesh=mesh,
    rules=rules, state_shardings=shardings,
  )  # fmt: skip


@pytest.mark.slow
def test_float32_train_step_is_the_plain_optax_step():
  """param_dtype float32: bit-for-bit the step without master weights (tx.update, apply)."""
  model, tx, cfg, batches = _setup("float32")
  mesh = partitioning.make_mesh(devices=jax.devices()[:1])
  rules = partitioning.LOGICAL_AXIS_RULES["dp"]
  _, shardings = state.get_abstract_state(model, tx, mesh, rules, batches[0])
  s = jax.device_put(initial_state(), shardings)  # init_state(..., seed=0), as init_states_testlib
  assert {x.dtype for x in jax.tree.leaves(s.params)} == {jnp.dtype(jnp.float32)}
  assert not isinstance(s.opt_state, optimizer.MasterWeightsState)
  train_step = _train_step(model, tx, cfg, mesh, rules, shardings)

  def plain_step(st, batch):
    def loss_fn(p):
      out = model.apply({"params": p}, batch["image"], batch["prompt_ids"],
                        batch["decoder_input_ids"], deterministic=False,
                        rngs={"dropout": st.dropout_key()})  # fmt: skip
      from rahf_jax.train import losses  # noqa: PLC0415

      return losses.compute_losses(out, batch, features.MULTI_HEAD, dict(cfg.loss_weights))

    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    updates, opt_state = tx.update(grads, st.opt_state, st.params)
    aux["grad_norm"] = optax.tree.norm(grads)
    new = st.replace(step=st.step + 1, params=optax.apply_updates(st.params, updates),
                     opt_state=opt_state)  # fmt: skip
    return new, aux

  ref_step = mesh_context.with_mesh_context(
    jax.jit(plain_step, in_shardings=(shardings, mesh_context.batch_sharding(mesh))), mesh, rules
  )
  ref = jax.device_get(s)
  for b in batches:
    batch = mesh_context.shard_batch(b, mesh)
    ref, ref_aux = ref_step(jax.device_put(ref, shardings), batch)
    s, aux = train_step(s, batch)
    np.testing.assert_array_equal(np.asarray(aux["loss"]), np.asarray(ref_aux["loss"]))
    np.testing.assert_array_equal(np.asarray(aux["grad_norm"]), np.asarray(ref_aux["grad_norm"]))
  for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(ref), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_bfloat16_state_init_steps_and_checkpoints(tmp_path):
  model, tx, cfg, batches = _setup("bfloat16")
  mesh = partitioning.make_mesh(data=1, fsdp=-1)  # 8 fake devices: FSDP really shards
  rules = partitioning.LOGICAL_AXIS_RULES["fsdp"]
  abstract, shardings = state.get_abstract_state(model, tx, mesh, rules, batches[0])
  s, _ = state.init_state(model, tx, mesh, rules, batches[0], seed=0, state_shardings=shardings)

  # The abstract state is what init makes: bf16 params, fp32 master weights sharded like them.
  assert isinstance(s.opt_state, optimizer.MasterWeightsState)
  for (path, a), x in zip(jax.tree_util.tree_leaves_with_path(abstract), jax.tree.leaves(s),
                          strict=True):  # fmt: skip
    assert a.shape == x.shape and a.dtype == x.dtype, path
    assert x.sharding.is_equivalent_to(a.sharding, x.ndim), path
  assert {x.dtype for x in jax.tree.leaves(s.params)} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(s.opt_state.master)} == {jnp.dtype(jnp.float32)}
  for p, m in zip(jax.tree.leaves(shardings.params), jax.tree.leaves(shardings.opt_state.master),
                  strict=True):  # fmt: skip
    assert p == m
  assert any("fsdp" in str(x.spec) for x in jax.tree.leaves(shardings.opt_state.master))
  # The master weights are the model's fp32 init (seed 0), the params that init cast to bf16.
  s32 = initial_state()
  _equal(s.opt_state.master, s32.params)

  train_step = _train_step(model, tx, cfg, mesh, rules, shardings)
  for b in batches:
    s, aux = train_step(s, mesh_context.shard_batch(b, mesh))
    assert np.isfinite(float(aux["loss"])) and np.isfinite(float(aux["grad_norm"]))
  assert int(s.step) == 2
  _equal(s.params, jax.tree.map(lambda m: m.astype(jnp.bfloat16), s.opt_state.master))
  assert any(not np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(s.opt_state.master), jax.tree.leaves(s32.params),
                             strict=True))  # fmt: skip

  # Checkpoint and restore into the abstract state: master weights included, shardings kept.
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=1, async_save=False)
  ckpt.save(s)
  ckpt.close()
  restored, _ = checkpointing.Checkpointer(str(tmp_path), keep=1).restore(abstract)
  _equal(restored, s)
  for x, a in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract), strict=True):
    assert x.dtype == a.dtype and x.sharding.is_equivalent_to(a.sharding, x.ndim)
  # Inference reads the params into the model's own (fp32) abstract params.
  abstract_params, _ = abstract_params_lib.abstract_params(model, mesh, rules, batches[0])
  params, step = workdir_files.restore_params(str(tmp_path), abstract_params)
  assert step == 2
  _equal(params, jax.tree.map(lambda p: p.astype(jnp.float32), s.params))


def _equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert x.dtype == y.dtype, (x.dtype, y.dtype)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
