"""The dense reward R_dense = R * (1 - sum_k a_k Up(H_k)): its exact values, jit/vmap, and a
pixel gradient that points at the region the model's heatmap marks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rahf_jax.reward import dense_reward_map

PROMPT = "a red circle and a blue square"


def test_formula_on_known_inputs():
  r = jnp.asarray([0.5, 0.8])
  impl = np.array([[[0.0, 1.0], [0.25, 0.5]], [[1.0, 0.0], [0.0, 0.0]]], np.float32)
  mis = np.array([[[1.0, 1.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]], np.float32)
  maps = {"implausibility": jnp.asarray(impl), "misalignment": jnp.asarray(mis)}
  np.testing.assert_allclose(
    np.asarray(dense_reward_map(r, maps)),
    [[[0.5, 0.0], [0.375, 0.25]], [[0.0, 0.8], [0.8, 0.8]]],  # R * (1 - H_implausibility)
    atol=1e-7,
  )
  mixed = dense_reward_map(r, maps, {"implausibility": 0.5, "misalignment": 0.25})
  expected = np.asarray(r)[:, None, None] * (1 - 0.5 * impl - 0.25 * mis)
  np.testing.assert_allclose(np.asarray(mixed), expected, atol=1e-7)
  # Up: bilinear with half-pixel centres, edges clamped: [a, b] -> [a, .75a+.25b, .25a+.75b, b].
  row = jnp.asarray([[[0.0, 1.0]]])  # [1, 1, 2]
  up = dense_reward_map(jnp.asarray([1.0]), {"implausibility": row}, size=(1, 4))
  np.testing.assert_allclose(np.asarray(up)[0, 0], [1.0, 0.75, 0.25, 0.0], atol=1e-7)


@pytest.mark.parametrize(
  "weights",
  [{"implausibility": 0.7, "misalignment": 0.7}, {"aesthetics": 1.0}, {"implausibility": -0.1}],
)
def test_bad_heatmap_weights_say_what_to_pass(weights):
  r, maps = jnp.ones(1), {"implausibility": jnp.zeros((1, 2, 2))}
  with pytest.raises(ValueError, match="heatmap_weights"):
    dense_reward_map(r, maps, weights)


def _pixels(n, size, seed=0):
  return np.random.default_rng(seed).uniform(0.1, 0.9, (n, size, size, 3)).astype(np.float32)


@pytest.mark.slow
def test_dense_reward_is_the_scalar_reward_times_one_minus_the_scorers_heatmap(scorer):
  """At the model's image size the map equals R * (1 - implausibility) of the Scorer's results,
  whose heatmaps are resized by a different (PIL) bilinear resize: equal within 1e-3."""
  images = [np.round(p * 255).astype(np.uint8) for p in _pixels(2, 64, seed=5)]
  results = scorer.score(images, [PROMPT] * 2, heatmaps=True)
  x = jnp.asarray(np.stack(images) / 255.0, jnp.float32)
  ids = scorer.encode_prompts([PROMPT] * 2)
  dense = np.asarray(jax.jit(scorer.reward_fn(dense=True))(scorer.params, x, ids))
  assert dense.shape == (2, 64, 64)
  for d, res in zip(dense, results, strict=True):
    np.testing.assert_allclose(d, res.overall * (1 - res.implausibility_heatmap), atol=1e-3)
  heat = jax.jit(scorer.reward_fn(dense=True, dense_size="heatmap"))(scorer.params, x, ids)
  assert heat.shape == (2, 32, 32)  # the tiny model's heatmap_size


@pytest.mark.slow
def test_jit_and_vmap_agree(scorer):
  maps = {"implausibility": 0.6, "misalignment": 0.4}
  reward = scorer.reward_fn({"overall": 1.0, "plausibility": 0.5}, dense=True, heatmap_weights=maps)
  x = jnp.asarray(_pixels(4, 40, seed=1))  # 40 x 40: resized to 64 in, the map back to 40
  ids = jnp.asarray(scorer.encode_prompts([PROMPT, "a cat on a mat"] * 2))
  eager = np.asarray(reward(scorer.params, x, ids))
  jitted = np.asarray(jax.jit(reward)(scorer.params, x, ids))
  # vmap's batching rules, jitted (eager, each batched op would run on its own): against eager
  vmapped = np.asarray(jax.jit(jax.vmap(reward, in_axes=(None, 0, 0)))(
    scorer.params, x[:, None], ids[:, None]))[:, 0]  # fmt: skip
  # Three float32 programs of one function (op by op, fused, batched) round differently through
  # the network's layers: up to 2.2e-6 apart measured (~100 ulps of values ~0.2); the tolerance
  # is 5x that and 100x below the spread of the map over pixels and images.
  atol = 1e-5
  assert eager.shape == (4, 40, 40) and np.ptp(eager) > 100 * atol
  np.testing.assert_allclose(jitted, eager, atol=atol)
  np.testing.assert_allclose(vmapped, eager, atol=atol)


@pytest.mark.slow
def test_augmented_variant_runs_one_pass_per_heatmap(augmented_scorer):
  s = augmented_scorer
  images = [np.round(p * 255).astype(np.uint8) for p in _pixels(2, 64, seed=6)]
  results = s.score(images, [PROMPT] * 2, heatmaps=True)
  x = jnp.asarray(np.stack(images) / 255.0, jnp.float32)
  weights = {"implausibility": 0.5, "misalignment": 0.5}
  dense = np.asarray(jax.jit(s.reward_fn(dense=True, heatmap_weights=weights))(
    s.params, x, s.encode_prompts([PROMPT] * 2)))  # fmt: skip
  for d, res in zip(dense, results, strict=True):
    expected = res.overall * (1 - 0.5 * res.implausibility_heatmap - 0.5 * res.misalignment_heatmap)
    np.testing.assert_allclose(d, expected, atol=1e-3)


# The gradient test needs a model whose heatmap marks a region: the tests' trained tiny model,
# trained 60 more steps to mark red squares (its implausibility map's target: 1 on the square).


def _square_scenes(rng, n, size):
  x = np.zeros((n, size, size, 3), np.float32)
  masks = np.zeros((n, size, size), bool)
  for i in range(n):
    x[i, ..., 0] = rng.uniform(0.0, 0.3, (size, size))
    x[i, ..., 1:] = rng.uniform(0.0, 1.0, (size, size, 2))
    k = int(rng.integers(12, 25))
    r, c = rng.integers(0, size - k, 2)
    x[i, r : r + k, c : c + k] = (1.0, 0.0, 0.0)
    masks[i, r : r + k, c : c + k] = True
  return x, masks


@pytest.fixture(scope="module")
def marking_params(scorer):
  model = scorer.predictor.setup.model
  size, heat_size = scorer.image_size, int(model.config.heatmap_size)
  ids = jnp.asarray(scorer.encode_prompts([PROMPT] * 8))

  def loss(params, x, m):
    out = model.apply({"params": params}, x * 2 - 1, ids, method=model.predict_heads)
    h = jnp.clip(out["heatmaps"]["implausibility"], 1e-6, 1 - 1e-6)
    t = jax.image.resize(m, (m.shape[0], heat_size, heat_size), "linear", antialias=True)
    return -jnp.mean(t * jnp.log(h) + (1 - t) * jnp.log(1 - h))

  opt = optax.adam(3e-3)

  @jax.jit
  def step(params, state, x, m):
    grads = jax.grad(loss)(params, x, m)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params, rng = scorer.params, np.random.default_rng(0)
  state = opt.init(params)
  for _ in range(60):
    x, m = _square_scenes(rng, 8, size)
    params, state = step(params, state, jnp.asarray(x), jnp.asarray(m, jnp.float32))
  return params


@pytest.mark.slow
def test_gradient_concentrates_on_the_marked_region(scorer, marking_params):
  """|d sum(R_dense) / d pixels| with score_gradient=False: the share of its mass on the marked
  square against the square's share of the image. Measured on these four scenes: 1.5 to 4.9
  times the area share, 2.1 times on average. (The scalar reward's own gradient on this model is
  also 1.5 to 2.5 times: the red square moves the scores too; with score_gradient=True the score
  part is ~45 times larger than the heatmap part and sets the shares.)"""
  x, masks = _square_scenes(np.random.default_rng(99), 4, scorer.image_size)
  x = jnp.asarray(x)
  ids = jnp.asarray(scorer.encode_prompts([PROMPT] * 4))
  dense = jax.jit(scorer.reward_fn(dense=True, score_gradient=False))
  values = np.asarray(dense(marking_params, x, ids))
  scalar = np.asarray(jax.jit(scorer.reward_fn())(marking_params, x, ids))
  heat = 1 - values / scalar[:, None, None]  # the implausibility map at the image's pixels
  for i in range(4):  # the model marks the square: heat inside ~0.45, outside 0.02-0.05
    assert heat[i][masks[i]].mean() > 5 * heat[i][~masks[i]].mean()
  grad = jax.jit(jax.grad(lambda x: dense(marking_params, x, ids).sum()))(x)
  mass = np.abs(np.asarray(grad)).sum(-1)
  inside = np.array([mass[i][masks[i]].sum() / mass[i].sum() for i in range(4)])
  area = masks.mean(axis=(1, 2))
  assert np.all(inside > 1.25 * area), (inside, area)
  assert inside.mean() > 1.75 * area.mean(), (inside, area)
