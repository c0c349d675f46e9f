"""Optimizer: schedule values, decay mask, ViT multiplier, clipping, accumulation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rahf_jax.train import optimizer
from rahf_jax.train.default_train_config import train_config_defaults


def _config(**kw):
  c = train_config_defaults()
  c.learning_rate, c.warmup_steps, c.num_train_steps, c.end_lr = 1e-2, 4, 20, 1e-3
  c.weight_decay, c.grad_clip_norm, c.grad_accum_steps, c.vit_lr_multiplier = 0.0, 0.0, 1, 1.0
  for k, v in kw.items():
    c[k] = v
  return c


def _params():
  return {
    "vit": {"block": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}},
    "encoder": {
      "layer_norm": {"scale": jnp.ones((3,))},
      "dense": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))},
      "token_embedder": {"embedding": jnp.ones((5, 3))},
      "pre_attention_layer_norm": {"w": jnp.ones((3, 3))},
    },
  }


def test_schedule_warmup_then_cosine_to_end_lr():
  sched = optimizer.make_schedule(_config())
  peak, end, warm, total = 1e-2, 1e-3, 4, 20
  for t in range(total + 1):
    if t <= warm:
      ref = peak * t / warm
    else:
      frac = (t - warm) / (total - warm)
      ref = end + (peak - end) * 0.5 * (1 + math.cos(math.pi * frac))
    np.testing.assert_allclose(float(sched(t)), ref, rtol=1e-5, atol=1e-9)


def test_decay_mask_skips_norms_biases_and_1d():
  mask = optimizer.decay_mask(_params())
  assert mask["vit"]["block"] == {"kernel": True, "bias": False}
  assert mask["encoder"]["layer_norm"]["scale"] is False
  assert mask["encoder"]["dense"] == {"kernel": True, "bias": False}
  assert mask["encoder"]["token_embedder"]["embedding"] is True
  assert mask["encoder"]["pre_attention_layer_norm"]["w"] is False


def test_weight_decay_only_where_masked():
  cfg = _config(weight_decay=0.5, warmup_steps=0)
  tx = optimizer.make_optimizer(cfg)
  params = _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  lr0 = float(optimizer.make_schedule(cfg)(0))
  mask = optimizer.decay_mask(params)
  leaves = zip(
    jax.tree.leaves(updates), jax.tree.leaves(mask), jax.tree.leaves(params), strict=True
  )
  assert float(lr0) > 0
  for u, m, p in leaves:
    np.testing.assert_allclose(np.asarray(u), -lr0 * 0.5 * np.asarray(p) if m else 0.0, rtol=1e-6)


def test_vit_lr_multiplier_scales_vit_updates():
  params = {"vit": {"k": jnp.ones((2, 2))}, "encoder": {"k": jnp.ones((2, 2))}}
  grads = {"vit": {"k": jnp.full((2, 2), 0.3)}, "encoder": {"k": jnp.full((2, 2), 0.3)}}
  tx = optimizer.make_optimizer(_config(vit_lr_multiplier=0.1, warmup_steps=0))
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    ratio = np.asarray(updates["vit"]["k"]) / np.asarray(updates["encoder"]["k"])
    np.testing.assert_allclose(ratio, 0.1, rtol=1e-5)


def test_clipping_equals_pre_clipped_gradient():
  params = {"k": jnp.ones((4,))}
  g = {"k": jnp.array([30.0, -40.0, 0.0, 0.0])}  # norm 50
  clipped = {"k": g["k"] / 50.0}
  tx_clip = optimizer.make_optimizer(_config(grad_clip_norm=1.0, warmup_steps=0))
  tx_none = optimizer.make_optimizer(_config(warmup_steps=0))
  sa, sb = tx_clip.init(params), tx_none.init(params)
  for _ in range(2):
    ua, sa = tx_clip.update(g, sa, params)
    ub, sb = tx_none.update(clipped, sb, params)
    np.testing.assert_allclose(np.asarray(ua["k"]), np.asarray(ub["k"]), rtol=1e-5)


def test_grad_accumulation_averages_micro_batches():
  params = {"k": jnp.array([1.0, 2.0])}
  g1, g2 = {"k": jnp.array([0.5, -1.0])}, {"k": jnp.array([1.5, 3.0])}
  tx_acc = optimizer.make_optimizer(_config(grad_accum_steps=2, num_train_steps=40, warmup_steps=0))
  tx_one = optimizer.make_optimizer(_config(num_train_steps=20, warmup_steps=0))
  s = tx_acc.init(params)
  u1, s = tx_acc.update(g1, s, params)
  np.testing.assert_allclose(np.asarray(u1["k"]), 0.0)
  p = optax.apply_updates(params, u1)
  u2, s = tx_acc.update(g2, s, p)
  mean = {"k": (g1["k"] + g2["k"]) / 2}
  ref, _ = tx_one.update(mean, tx_one.init(params), params)
  assert np.all(np.abs(np.asarray(ref["k"])) > 1e-4)
  np.testing.assert_allclose(np.asarray(u2["k"]), np.asarray(ref["k"]), rtol=1e-5)
