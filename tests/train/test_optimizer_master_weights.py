"""param_dtype="bfloat16": fp32 master weights in the optimizer state behind bf16 params.

The master weights must be exactly the params of an fp32 run fed the same gradients (the
gradients are bf16 values, so the fp32 run sees the same numbers), the params exactly those
master weights cast to bf16, and updates below bf16's resolution must still accumulate.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rahf_jax.train import optimizer
from rahf_jax.train.default_train_config import train_config_defaults

NUM_STEPS = 12


def _config(**kw):
  c = train_config_defaults()
  # Clipping, weight decay (masked), the ViT multiplier and warmup + cosine all take part.
  c.learning_rate, c.warmup_steps, c.num_train_steps, c.end_lr = 1e-2, 3, 40, 1e-3
  c.weight_decay, c.grad_clip_norm, c.vit_lr_multiplier = 0.1, 1.0, 0.5
  for k, v in kw.items():
    c[k] = v
  return c


def _bf16_params(key):
  shapes = {
    "vit": {"block": {"kernel": (4, 6), "bias": (6,)}},
    "encoder": {"dense": {"kernel": (6, 6), "bias": (6,)}, "layer_norm": {"scale": (6,)}},
  }
  leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
  keys = jax.random.split(key, len(leaves))
  values = [jax.random.normal(k, s).astype(jnp.bfloat16) for k, s in zip(keys, leaves, strict=True)]
  return jax.tree.unflatten(treedef, values)


def _grads(params, step):
  # bf16 gradients (what a bf16-params model produces), some large enough to be clipped.
  keys = jax.random.split(jax.random.key(100 + step), len(jax.tree.leaves(params)))
  leaves, treedef = jax.tree.flatten(params)
  scale = 3.0 if step % 4 == 0 else 0.1
  g = [
    (scale * jax.random.normal(k, p.shape)).astype(jnp.bfloat16)
    for k, p in zip(keys, leaves, strict=True)
  ]
  return jax.tree.unflatten(treedef, g)


def _assert_tree_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))


def test_float32_is_the_plain_optimizer():
  tx = optimizer.make_optimizer(_config())
  assert not isinstance(tx.init({"k": jnp.ones((2, 2))}), optimizer.MasterWeightsState)
  params = {"k": jnp.ones((2, 2))}
  assert optimizer.model_params(params, tx.init(params)) is params
  with pytest.raises(ValueError, match="param_dtype 'float16' unknown"):
    optimizer.make_optimizer(_config(param_dtype="float16"))


@pytest.mark.slow
@pytest.mark.parametrize("accum", [1, 2])
def test_master_weights_equal_an_fp32_run_fed_the_same_gradients(accum):
  cfg = dict(grad_accum_steps=accum)
  tx16 = optimizer.make_optimizer(_config(param_dtype="bfloat16", **cfg))
  tx32 = optimizer.make_optimizer(_config(param_dtype="float32", **cfg))
  p16 = _bf16_params(jax.random.key(0))
  p32 = jax.tree.map(lambda p: p.astype(jnp.float32), p16)  # exact
  s16, s32 = tx16.init(p16), tx32.init(p32)
  assert isinstance(s16, optimizer.MasterWeightsState)
  # fp32 moments (and accumulators) in the bf16 run: every float leaf of its state is fp32.
  assert {x.dtype for x in jax.tree.leaves(s16) if jnp.issubdtype(x.dtype, jnp.floating)} == {
    jnp.dtype(jnp.float32)
  }
  # Op by op (not jitted): both runs execute the same fp32 operations, so equality is exact.
  # (Jitted, XLA may fuse the two programs differently, e.g. contract an add into an FMA: a
  # last-bit difference.)
  update16, update32 = tx16.update, tx32.update
  start = jax.tree.map(lambda p: p.astype(jnp.float32), p16)
  for step in range(NUM_STEPS):
    g16 = _grads(p16, step)
    u16, s16 = update16(g16, s16, p16)
    p16 = optimizer.model_params(optax.apply_updates(p16, u16), s16)
    u32, s32 = update32(jax.tree.map(lambda g: g.astype(jnp.float32), g16), s32, p32)
    p32 = optax.apply_updates(p32, u32)
    _assert_tree_equal(s16.master, p32)  # the master weights ARE the fp32 run
    _assert_tree_equal(p16, jax.tree.map(lambda m: m.astype(jnp.bfloat16), s16.master))
  pairs = zip(jax.tree.leaves(p32), jax.tree.leaves(start), strict=True)
  assert all(bool(jnp.any(a != b)) for a, b in pairs)  # every parameter moved
  assert {x.dtype for x in jax.tree.leaves(p16)} == {jnp.dtype(jnp.bfloat16)}


def test_updates_below_bf16_resolution_accumulate_in_the_master_copy():
  # Adam with a constant gradient steps by about lr per update: 1e-4, far below half a bf16 ulp
  # at 1.0 (2**-9 ~ 2e-3), so bf16 params alone round every step away.
  lr, n = 1e-4, 100
  kw = dict(learning_rate=lr, end_lr=lr, warmup_steps=0, weight_decay=0.0, grad_clip_norm=0.0,
            vit_lr_multiplier=1.0, num_train_steps=n)  # fmt: skip
  params = {"w": jnp.ones((3, 3), jnp.bfloat16)}
  grads = {"w": jnp.ones((3, 3), jnp.bfloat16)}

  plain = optimizer.make_optimizer(_config(param_dtype="float32", **kw))  # bf16 params, bf16 sums
  p, s = params, plain.init(params)
  for _ in range(n):
    u, s = plain.update(grads, s, p)
    p = optax.apply_updates(p, u)
  np.testing.assert_array_equal(np.asarray(p["w"], np.float32), 1.0)  # nothing moved

  tx = optimizer.make_optimizer(_config(param_dtype="bfloat16", **kw))
  p, s = params, tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(n):
    u, s = update(grads, s, p)
    p = optimizer.model_params(optax.apply_updates(p, u), s)
  master = np.asarray(s.master["w"])
  np.testing.assert_allclose(master, 1.0 - n * lr, rtol=1e-5)  # every step kept
  np.testing.assert_array_equal(np.asarray(p["w"]), np.asarray(s.master["w"].astype(jnp.bfloat16)))
  assert float(p["w"][0, 0]) < 1.0  # and the params followed once the sum passed half an ulp


def test_params_changed_outside_the_optimizer_restart_their_master():
  # E.g. a pretrained load into the bf16 params after init: the next update starts from them.
  tx16 = optimizer.make_optimizer(_config(param_dtype="bfloat16"))
  tx32 = optimizer.make_optimizer(_config(param_dtype="float32"))
  p16 = _bf16_params(jax.random.key(0))
  s16 = tx16.init(p16)
  loaded = _bf16_params(jax.random.key(1))
  g = _grads(loaded, 1)
  u16, s16 = tx16.update(g, s16, loaded)
  p16 = optimizer.model_params(optax.apply_updates(loaded, u16), s16)
  p32 = jax.tree.map(lambda p: p.astype(jnp.float32), loaded)
  u32, _ = tx32.update(jax.tree.map(lambda x: x.astype(jnp.float32), g), tx32.init(p32), p32)
  _assert_tree_equal(s16.master, optax.apply_updates(p32, u32))
  # apply_updates alone lands on the master weights cast down here (the returned update is
  # the fp32 step from the params to the master weights).
  _assert_tree_equal(optax.apply_updates(loaded, u16), p16)
