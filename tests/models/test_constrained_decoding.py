"""Constrained decoding: the output is the copy plan's tokens with marks only where allowed, and
every mark-or-copy choice is the one the decoder's teacher-forced logits make.

float64, as test_decoding.py: the cached steps and the teacher-forced pass reduce in different
orders, and a choice between two near-tied logits must not depend on the CPU.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from host_params import init_shapes, random_like

from rahf_jax import features
from rahf_jax.models import build_model, constrained_decode, get_model_config

# A choice whose margin is within float64 rounding of the logits' scale is a tie (either is right):
# cached and full logits agree to ~1e-13 of their scale here; the smallest margin these
# parameters decide is 7e-4 of it, so no real choice is skipped.
_F64_TOL = 256 * float(np.finfo(np.float64).eps)
L = 12


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


@functools.cache
def _model_and_variables():
  """The float64 tiny model and random parameters of its shapes, made on the host (an init would
  be a float64 program of a threefry draw per parameter to compile, for values any others do).

  Drawn from N(0, 1): the logits spread over a few units, so at mark bias 0.3 the decoder still
  makes both choices (from N(0, 0.05^2) the logits are near-equal and 0.3 marks every place)."""
  c = get_model_config("test", features.MULTI_HEAD)
  c.dtype = c.param_dtype = "float64"
  model = build_model(c)
  image = jnp.zeros((1, c.image_size, c.image_size, 3), jnp.float64)
  ids = jnp.zeros((1, L), jnp.int32)
  shapes = init_shapes(model.init, image, ids[:, :8], ids)
  return model, {"params": random_like(shapes, scale=1.0)}


def _setup(batch=6):
  model, variables = _model_and_variables()
  c = model.config
  rs = np.random.RandomState(1)
  image = jnp.asarray(rs.uniform(-1, 1, (batch, c.image_size, c.image_size, 3)), jnp.float64)
  prompt = np.zeros((batch, 8), np.int32)
  copy_ids = np.zeros((batch, L), np.int32)
  can_mark = np.zeros((batch, L), bool)
  for b in range(batch):
    n = rs.randint(3, 8)
    prompt[b, :n] = rs.randint(3, c.vocab_size, n)
    prompt[b, n] = features.EOS_ID
    m = rs.randint(2, 7)  # words' tokens, then EOS
    copy_ids[b, :m] = rs.randint(3, c.vocab_size, m)
    copy_ids[b, m] = features.EOS_ID
    can_mark[b, 1 : m + 1] = rs.rand(m) < 0.7  # after some tokens (word ends), EOS included
  return model, variables, image, jnp.asarray(prompt), copy_ids, can_mark


def _replay(ids, copy_ids, can_mark, mark):
  """Walks the output: yields (position, copy index, wrote_mark_start) at each decision point
  and checks the output is the copy with complete marks only where allowed."""
  ptr, t, decisions = 0, 0, []
  marked = False
  while t < len(ids):
    copy = copy_ids[ptr]
    if can_mark[ptr] and not marked:
      wrote_mark = ids[t] == mark[0] and (mark[0] != copy)
      decisions.append((t, ptr, bool(wrote_mark)))
      if wrote_mark:
        assert list(ids[t : t + len(mark)]) == list(mark[: len(ids) - t])
        t += len(mark)
        marked = True
        continue
    assert ids[t] == copy, (t, ids, copy_ids)
    marked = False
    t += 1
    ptr += 1
    if copy == features.EOS_ID:
      assert (ids[t:] == features.PAD_ID).all()
      break
  return decisions


@pytest.mark.slow
@pytest.mark.parametrize("mark_bias", [0.0, 0.3], ids=["no bias", "bias 0.3"])
@pytest.mark.parametrize("mark", [(7,), (7, 11)], ids=["one-token mark", "two-token mark"])
def test_output_is_the_copy_with_the_decoders_mark_choices(mark, mark_bias):
  model, variables, image, prompt, copy_ids, can_mark = _setup()
  ids = np.asarray(
    constrained_decode(
      model, variables, image, prompt, copy_ids, can_mark, np.array(mark), mark_bias
    )
  )
  assert ids.shape == copy_ids.shape and ids.dtype == np.int32
  encoded, mask = jax.jit(functools.partial(model.apply, method=model.encode))(
    variables, image, prompt
  )
  inputs = np.concatenate([np.zeros((len(ids), 1), np.int32), ids[:, :-1]], axis=1)
  logits = np.asarray(
    jax.jit(functools.partial(model.apply, method=model.decode))(
      variables, encoded, mask, jnp.asarray(inputs)
    )
  )
  seen = {True: 0, False: 0}
  for b in range(len(ids)):
    for t, ptr, wrote_mark in _replay(ids[b], copy_ids[b], can_mark[b], mark):
      margin = logits[b, t, mark[0]] + mark_bias - logits[b, t, copy_ids[b, ptr]]
      if abs(margin) <= _F64_TOL * np.abs(logits[b, t]).max():
        continue  # a tie to rounding: either choice is right
      assert wrote_mark == (margin > 0), (b, t, margin)
      seen[wrote_mark] += 1
  # The random decoder makes both choices somewhere, so both branches were checked.
  assert seen[True] > 0 and seen[False] > 0, seen


@pytest.mark.slow
def test_no_mark_allowed_gives_the_copy():
  model, variables, image, prompt, copy_ids, _ = _setup(batch=3)
  ids = constrained_decode(
    model, variables, image, prompt, copy_ids, np.zeros_like(copy_ids, bool), np.array([7])
  )
  np.testing.assert_array_equal(np.asarray(ids), copy_ids)


@pytest.mark.slow
def test_a_large_mark_bias_marks_every_allowed_place_and_a_negative_one_none():
  model, variables, image, prompt, copy_ids, can_mark = _setup(batch=4)
  mark = np.array([7])
  for bias, expect in ((1e6, True), (-1e6, False)):
    ids = np.asarray(
      constrained_decode(model, variables, image, prompt, copy_ids, can_mark, mark, bias)
    )
    for b in range(len(ids)):
      decisions = _replay(ids[b], copy_ids[b], can_mark[b], mark)
      assert decisions and all(wrote == expect for _, _, wrote in decisions), (bias, decisions)
