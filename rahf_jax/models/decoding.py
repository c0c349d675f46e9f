"""Greedy decoding of the `_0`-marked prompt, with a key/value cache (default) or without one.

The decoder's first input is PAD_ID (targets shifted right). Once a sequence has emitted EOS_ID,
every later position is PAD_ID.
"""

import functools

import jax
import jax.numpy as jnp

from rahf_jax.features import EOS_ID, PAD_ID


def _finish(token, done):
  """Replace tokens after EOS by PAD and update the done flags."""
  token = jnp.where(done, PAD_ID, token)
  return token, done | (token == EOS_ID)


@functools.partial(jax.jit, static_argnames=("model", "max_length", "use_cache"))
def _greedy(model, variables, image, prompt_ids, max_length, use_cache):
  params = {k: v for k, v in variables.items() if k != "cache"}
  encoded, mask = model.apply(params, image, prompt_ids, method=model.encode)
  batch = image.shape[0]
  done = jnp.zeros((batch,), bool)

  if use_cache:
    # A first call at full length only creates the cache (shapes); then one token per step.
    dummy = jnp.zeros((batch, max_length), jnp.int32)
    _, state = model.apply(
      params, encoded, mask, dummy, True, True, method=model.decode, mutable=["cache"]
    )

    def step(carry, _):
      cache, token, done = carry
      logits, state = model.apply(
        {**params, "cache": cache},
        encoded,
        mask,
        token[:, None],
        True,
        True,
        method=model.decode,
        mutable=["cache"],
      )
      nxt, done = _finish(jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32), done)
      return (state["cache"], nxt, done), nxt

    start = jnp.full((batch,), PAD_ID, jnp.int32)
    _, ids = jax.lax.scan(step, (state["cache"], start, done), None, length=max_length)
    return ids.T

  def body(t, carry):
    ids, done = carry
    inputs = jnp.concatenate([jnp.full((batch, 1), PAD_ID, jnp.int32), ids[:, :-1]], axis=1)
    logits = model.apply(params, encoded, mask, inputs, True, method=model.decode)
    nxt, done = _finish(jnp.argmax(logits[:, t], axis=-1).astype(jnp.int32), done)
    return ids.at[:, t].set(nxt), done

  ids0 = jnp.full((batch, max_length), PAD_ID, jnp.int32)
  ids, _ = jax.lax.fori_loop(0, max_length, body, (ids0, done))
  return ids


def greedy_decode(model, variables, image, prompt_ids, max_length: int, use_cache: bool = True):
  """Greedy token ids int32 [B, max_length] for (image, prompt); EOS then PAD.

  `use_cache=False` recomputes the whole decoder prefix each step (slow; the reference for tests).
  """
  return _greedy(model, variables, image, prompt_ids, int(max_length), bool(use_cache))
