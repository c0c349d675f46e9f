"""reward_fn: a pure JAX reward that agrees with the Scorer, differentiates correctly, jits,
vmaps and shards, and whose gradient raises the reward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rahf_jax.models import build_model
from rahf_jax.reward import reward_fn
from rahf_jax.reward.differentiable import augmented_prefix_ids, prefixed_prompt_ids

PROMPTS = ["a red circle and a blue square", "a cat on a mat"]
WEIGHTS = {"overall": 1.0, "aesthetics": 0.5}


def _pixels(n, size, seed=0):
  return np.random.default_rng(seed).uniform(0.1, 0.9, (n, size, size, 3)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["scorer", "augmented_scorer"])
def test_reward_equals_the_scorers_mix(which, request):
  scorer = request.getfixturevalue(which)
  size = scorer.image_size
  pixels = _pixels(2, size)  # at the model's size: no resize on either path
  images = [np.round(p * 255).astype(np.uint8) for p in pixels]
  results = scorer.score(images, PROMPTS)
  reward = jax.jit(scorer.reward_fn(WEIGHTS))  # one program, not the model op by op
  r = reward(
    scorer.params,
    jnp.asarray(np.stack(images) / 255.0, jnp.float32),
    scorer.encode_prompts(PROMPTS),
  )
  expected = [(res.overall + 0.5 * res.aesthetics) / 1.5 for res in results]
  np.testing.assert_allclose(np.asarray(r), expected, atol=2e-5)


def test_prefixed_ids_equal_encoding_the_augmented_text(augmented_scorer):
  from rahf_jax import features as F

  prompts = PROMPTS + ["a very long prompt with many many words that will not fit at all here"]
  plain = augmented_scorer.encode_prompts(prompts)
  prefixes = augmented_prefix_ids(augmented_scorer.predictor.tokenizer)
  for s in F.SCORE_TYPES:
    text_ids = augmented_scorer.encode_prompts([F.augmented_prompt(s, p) for p in prompts])
    np.testing.assert_array_equal(
      np.asarray(prefixed_prompt_ids(jnp.asarray(plain), prefixes[s])), text_ids
    )


@pytest.mark.slow
def test_jit_vmap_and_sharding_agree(scorer):
  reward = scorer.reward_fn(WEIGHTS)
  images = jnp.asarray(_pixels(8, 40, seed=1))  # resized inside to the model's 64 x 64
  ids = jnp.asarray(scorer.encode_prompts(PROMPTS * 4))
  eager = np.asarray(reward(scorer.params, images, ids))
  jitted = np.asarray(jax.jit(reward)(scorer.params, images, ids))
  # vmap's batching rules, jitted (eager, each batched op would run on its own): against eager
  vmapped = np.asarray(
    jax.jit(jax.vmap(reward, in_axes=(None, 0, 0)))(scorer.params, images[:, None], ids[:, None])
  )[:, 0]
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  batch, replicated = (
    NamedSharding(mesh, PartitionSpec("data")),
    NamedSharding(mesh, PartitionSpec()),
  )
  sharded_fn = jax.jit(reward, in_shardings=(replicated, batch, batch), out_shardings=batch)
  params = jax.device_put(scorer.params, replicated)
  sharded = sharded_fn(params, jax.device_put(images, batch), jax.device_put(ids, batch))
  assert sharded.sharding.spec == PartitionSpec("data")
  np.testing.assert_allclose(jitted, eager, atol=1e-6)
  np.testing.assert_allclose(vmapped, eager, atol=1e-6)
  np.testing.assert_allclose(np.asarray(sharded), eager, atol=1e-6)
  assert len(set(np.round(eager, 6))) > 1  # not a constant


@pytest.mark.slow
def test_gradient_matches_central_differences_in_float64(scorer):
  """d/dh reward(x + h v) at 0 (autodiff) against the central difference D(h), in float64.

  Tolerance, derived: |D(h) - true| <= rounding + truncation, where
  - rounding <= delta / h, delta bounding the error of one evaluation. The model computes its
    norms in float32 even in a float64 model (x.astype(float32) in the layer norms), so the
    float64 evaluation carries float32-level rounding; delta is estimated by the distance of the
    float64 evaluation from the float32 model's (which rounds at every operation, so more);
  - truncation = c h^2 + O(h^4): D(2h) - D(h) = 3 c h^2, so |D(2h) - D(h)| bounds it 3-fold.
  The test also checks that this tolerance is under 5% of the derivative, so it can fail.
  (Measured on the tiny model: delta ~ 2e-8, so the tolerance is ~ 2e-4 of a derivative ~ 0.3.)
  """
  cfg = scorer.predictor.model_config.copy_and_resolve_references()
  cfg.dtype, cfg.param_dtype = "float64", "float64"
  ids = jnp.asarray(scorer.encode_prompts(PROMPTS[:1]))
  x32 = _pixels(1, 48, seed=2)  # 48 x 48: the resize to 64 is part of the differentiated path
  r32 = float(jax.jit(scorer.reward_fn(WEIGHTS))(scorer.params, jnp.asarray(x32), ids)[0])
  with jax.enable_x64(True):
    reward = reward_fn(build_model(cfg), WEIGHTS)
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), scorer.params)
    x = jnp.asarray(x32, jnp.float64)
    f = jax.jit(lambda x: reward(params, x, ids)[0])
    grad = jax.grad(f)(x)
    v = np.random.default_rng(3).normal(size=x.shape)
    v = jnp.asarray(v / np.linalg.norm(v) + np.asarray(grad) / float(jnp.linalg.norm(grad)))
    derivative = float(jnp.vdot(grad, v))
    h = 1e-4  # small: the ReLUs make the reward piecewise smooth, so a kink must not fall inside
    central = lambda h: float(f(x + h * v) - f(x - h * v)) / (2 * h)
    d1, d2 = central(h), central(2 * h)
    delta = abs(float(f(x)) - r32)
    tolerance = delta / h + abs(d2 - d1)
  assert grad.dtype == jnp.float64 and grad.shape == x.shape
  assert tolerance < 0.05 * abs(derivative), (tolerance, derivative)
  assert abs(derivative - d1) <= tolerance, (derivative, d1, d2, delta)


@pytest.mark.slow
def test_gradient_ascent_on_pixels_raises_the_reward(scorer):
  reward = scorer.reward_fn()
  ids = jnp.asarray(scorer.encode_prompts(PROMPTS))
  value_and_grad = jax.jit(jax.value_and_grad(lambda x: reward(scorer.params, x, ids).sum()))
  x = jnp.asarray(_pixels(2, 64, seed=4))
  first, _ = value_and_grad(x)
  values = []
  for _ in range(5):
    value, g = value_and_grad(x)
    values.append(float(value))
    x = jnp.clip(x + 0.02 * jnp.sign(g), 0.0, 1.0)  # signed steps of 5 grey levels
  values.append(float(value_and_grad(x)[0]))
  assert all(b > a for a, b in zip(values, values[1:], strict=False)), values
  assert values[-1] - float(first) > 0.01, values


@pytest.mark.slow
def test_the_toy_generator_example_learns(scorer):
  import optax

  reward = scorer.reward_fn({"overall": 1.0})
  prompt_ids = jnp.asarray(scorer.encode_prompts(["a red circle and a blue square"] * 4))

  def generate(g, z):  # a linear generator: latent [B, 8] -> image [B, 32, 32, 3] in [0, 1]
    return jax.nn.sigmoid(z @ g["w"] + g["b"]).reshape(-1, 32, 32, 3)

  g = {
    "w": 0.01 * jax.random.normal(jax.random.key(0), (8, 32 * 32 * 3)),
    "b": jnp.zeros(32 * 32 * 3),
  }
  z = jax.random.normal(jax.random.key(1), (4, 8))
  opt = optax.adam(1e-2)
  state = opt.init(g)

  @jax.jit
  def step(g, state, params):
    loss, grads = jax.value_and_grad(lambda g: -reward(params, generate(g, z), prompt_ids).mean())(
      g
    )
    updates, state = opt.update(grads, state)
    return optax.apply_updates(g, updates), state, -loss

  rewards = []
  for _ in range(10):
    g, state, r = step(g, state, scorer.params)
    rewards.append(float(r))
  assert rewards[-1] > rewards[0] + 0.005, rewards
