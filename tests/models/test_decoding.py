"""Greedy decoding: the key/value cache gives the same logits and ids as recomputing the prefix.

The model runs in float64: a cached step and the full pass reduce over different shapes, so in
float32 their logits differ by summation-order noise that depends on the CPU's vectorisation,
and an argmax between two near-tied logits could flip; in float64 that noise is ~1e-16.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rahf_jax import features
from rahf_jax.models import build_model, get_model_config, greedy_decode

# Both paths share the encoder's output; they differ in the tiny decoder, 2 layers of ~10 sums
# deep, each over <= 128 terms (d_ff), so the float64 rounding is about
# depth * sqrt(terms) * eps ~ 10 * 11 * eps ~ 2.5e-14 of the logits' scale (~4; seen: 3e-15
# absolute). A cache bug (a wrong position, a stale key) changes the logits by O(1).
_F64_TOL = 256 * float(np.finfo(np.float64).eps)


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


@functools.cache  # one jitted init for both tests (called under enable_x64)
def _setup():
  c = get_model_config("test", features.AUGMENTED_PROMPT)
  c.dtype = c.param_dtype = "float64"
  model = build_model(c)
  rs = np.random.RandomState(0)
  image = jnp.asarray(rs.uniform(-1, 1, (2, c.image_size, c.image_size, 3)), jnp.float64)
  prompt = jnp.asarray([[5, 9, 7, features.EOS_ID, 0], [8, 3, features.EOS_ID, 0, 0]], jnp.int32)
  targets = jnp.asarray(rs.randint(2, c.vocab_size, (2, 7)), jnp.int32)
  variables = jax.jit(model.init)({"params": jax.random.key(0)}, image, prompt, targets)
  return model, variables, image, prompt, targets


@pytest.mark.slow
def test_cached_steps_equal_teacher_forced_logits():
  model, variables, image, prompt, targets = _setup()
  encoded, mask = jax.jit(functools.partial(model.apply, method=model.encode))(
    variables, image, prompt
  )
  full = jax.jit(functools.partial(model.apply, method=model.decode))(
    variables, encoded, mask, targets
  )

  @jax.jit
  def decode_step(cache, ids):
    return model.apply(
      {**variables, "cache": cache},
      encoded,
      mask,
      ids,
      True,
      True,
      method=model.decode,
      mutable=["cache"],
    )

  _, state = model.apply(
    variables, encoded, mask, targets, True, True, method=model.decode, mutable=["cache"]
  )
  cache = state["cache"]
  for t in range(targets.shape[1]):
    step, state = decode_step(cache, targets[:, t : t + 1])
    cache = state["cache"]
    assert step.dtype == np.float64
    np.testing.assert_allclose(step[:, 0], full[:, t], rtol=_F64_TOL, atol=_F64_TOL)


@pytest.mark.slow
def test_greedy_with_cache_equals_without():
  model, variables, image, prompt, _ = _setup()
  with_cache = greedy_decode(model, variables, image, prompt, max_length=8)
  without = greedy_decode(model, variables, image, prompt, max_length=8, use_cache=False)
  assert with_cache.shape == (2, 8) and with_cache.dtype == jnp.int32
  np.testing.assert_array_equal(with_cache, without)
  # Reference: the uncached ids re-scored by one teacher-forced pass are each step's argmax.
  inputs = jnp.concatenate([jnp.zeros((2, 1), jnp.int32), without[:, :-1]], axis=1)
  logits = jax.jit(model.apply)(variables, image, prompt, inputs)["decoder_logits"]
  ref = np.asarray(jnp.argmax(logits, -1))
  done = np.cumsum(ref == features.EOS_ID, axis=1) - (ref == features.EOS_ID) > 0
  np.testing.assert_array_equal(np.where(done, features.PAD_ID, ref), without)
