"""Decoding of the `_0`-marked prompt, with a key/value cache.

`greedy_decode`: free greedy decoding (the argmax over the vocabulary at each step; also without
a cache, as the tests' reference). `constrained_decode`: greedy under a copy constraint, so the
output is the prompt's own words in order, each with or without the mark
(rahf_jax.inference.prompt_copy builds the plan it follows).

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


def _cached_decoder(model, params, image, prompt_ids, max_length):
  """(initial cache, next_logits(cache, token) -> (logits [B, V], cache)) for one encoding."""
  encoded, mask = model.apply(params, image, prompt_ids, method=model.encode)
  # A first call at full length only creates the cache (shapes); then one token per call.
  dummy = jnp.zeros((image.shape[0], max_length), jnp.int32)
  _, state = model.apply(
    params, encoded, mask, dummy, True, True, method=model.decode, mutable=["cache"]
  )

  def next_logits(cache, token):
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
    return logits[:, -1], state["cache"]

  return state["cache"], next_logits


@functools.partial(jax.jit, static_argnames=("model", "max_length", "use_cache"))
def _greedy(model, variables, image, prompt_ids, max_length, use_cache):
  params = {k: v for k, v in variables.items() if k != "cache"}
  batch = image.shape[0]
  done = jnp.zeros((batch,), bool)

  if use_cache:
    cache, next_logits = _cached_decoder(model, params, image, prompt_ids, max_length)

    def step(carry, _):
      cache, token, done = carry
      logits, cache = next_logits(cache, token)
      nxt, done = _finish(jnp.argmax(logits, axis=-1).astype(jnp.int32), done)
      return (cache, nxt, done), nxt

    start = jnp.full((batch,), PAD_ID, jnp.int32)
    _, ids = jax.lax.scan(step, (cache, start, done), None, length=max_length)
    return ids.T

  encoded, mask = model.apply(params, image, prompt_ids, method=model.encode)

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


@functools.partial(jax.jit, static_argnames=("model",))
def _constrained(model, params, image, prompt_ids, copy_ids, can_mark, mark_ids, mark_bias):
  batch, max_length = copy_ids.shape
  num_mark = mark_ids.shape[0]
  cache, next_logits = _cached_decoder(model, params, image, prompt_ids, max_length)
  rows = jnp.arange(batch)

  def step(carry, _):
    cache, token, ptr, in_mark, marked, done = carry
    logits, cache = next_logits(cache, token)
    ptr_c = jnp.minimum(ptr, max_length - 1)
    copy = copy_ids[rows, ptr_c]
    # At a word end (not yet marked) the mark competes with the next word's first token.
    choose_mark = (
      (in_mark == 0)
      & can_mark[rows, ptr_c]
      & ~marked
      & (logits[rows, mark_ids[0]] + mark_bias > logits[rows, copy])
    )
    writing_mark = (in_mark > 0) | choose_mark
    nxt = jnp.where(writing_mark, mark_ids[jnp.minimum(in_mark, num_mark - 1)], copy)
    written = in_mark + 1  # mark tokens written once this one is
    finished_mark = writing_mark & (written == num_mark)
    in_mark = jnp.where(writing_mark & ~finished_mark, written, 0)
    marked = finished_mark  # a completed mark: the next token must be copied
    ptr = jnp.where(writing_mark, ptr, ptr + 1)
    nxt, done = _finish(nxt.astype(jnp.int32), done)
    return (cache, nxt, ptr, in_mark, marked, done), nxt

  zeros = jnp.zeros((batch,), jnp.int32)
  false = jnp.zeros((batch,), bool)
  start = jnp.full((batch,), PAD_ID, jnp.int32)
  _, ids = jax.lax.scan(step, (cache, start, zeros, zeros, false, false), None, length=max_length)
  return ids.T


def constrained_decode(
  model, variables, image, prompt_ids, copy_ids, can_mark, mark_ids, mark_bias: float = 0.0
):
  """Token ids int32 [B, L] that copy `copy_ids` (the prompt's words, then EOS) and write the
  mark `mark_ids` after a word where `can_mark` allows it and the decoder scores the mark's first
  token above the next copied token; L = copy_ids.shape[1]. Greedy, with the key/value cache.

  (copy_ids, can_mark, mark_ids) come from rahf_jax.inference.prompt_copy.copy_plan.
  """
  params = {k: v for k, v in variables.items() if k != "cache"}
  return _constrained(
    model,
    params,
    image,
    prompt_ids,
    jnp.asarray(copy_ids, jnp.int32),
    jnp.asarray(can_mark, bool),
    jnp.asarray(mark_ids, jnp.int32),
    jnp.asarray(mark_bias, jnp.float32),
  )
