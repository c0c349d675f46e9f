"""The server's Batcher: batches of at most batch_size in arrival order, a bounded queue, every
accepted item answered exactly once, and a drain on close."""

import threading
import time

import pytest

from rahf_jax.reward.server_batching import Batcher, Item, QueueClosedError


def _recording(calls, gate=None):
  def run(batch):
    if gate is not None:
      assert gate.wait(30)
    calls.append([it.prompt for it in batch])
    return [f"scored {it.prompt}" for it in batch]

  return run


def test_items_are_batched_in_order_and_each_answered_once():
  calls = []
  batcher = Batcher(_recording(calls), batch_size=8, max_wait_s=60.0, max_queue=32)
  futures = batcher.submit([Item(None, f"p{i}") for i in range(20)])  # one atomic submit
  assert [f.result(30) for f in futures[:16]] == [f"scored p{i}" for i in range(16)]
  assert not futures[16].done()  # the last 4 wait (up to a minute) for a full batch
  batcher.close()  # ... and close scores them at once
  assert [f.result(30) for f in futures[16:]] == [f"scored p{i}" for i in range(16, 20)]
  batcher.join(30)
  assert [len(c) for c in calls] == [8, 8, 4]
  assert sum(calls, []) == [f"p{i}" for i in range(20)]
  assert batcher.stats()["items"] == 20 and batcher.stats()["batches"] == 3
  with pytest.raises(QueueClosedError):
    batcher.submit([Item(None, "late")])


def test_a_request_that_does_not_fit_is_refused_whole():
  calls, gate = [], threading.Event()
  batcher = Batcher(_recording(calls, gate), batch_size=2, max_wait_s=0.0, max_queue=3)
  held = batcher.submit([Item(None, "a")])
  deadline = time.monotonic() + 30
  while batcher.queued and time.monotonic() < deadline:  # the worker takes "a", waits at the gate
    time.sleep(0.001)
  assert batcher.submit([Item(None, f"b{i}") for i in range(3)]) is not None
  assert batcher.submit([Item(None, "c")]) is None  # 3 waiting: full
  assert batcher.stats()["refused_requests"] == 1 and batcher.queued == 3
  gate.set()
  assert held[0].result(30) == "scored a"
  batcher.close()
  batcher.join(30)
  assert sum(calls, []) == ["a", "b0", "b1", "b2"]


def test_a_failing_batch_fails_its_items_and_the_worker_goes_on():
  def run(batch):
    if any(it.prompt == "bad" for it in batch):
      raise RuntimeError("model fault")
    return [it.prompt for it in batch]

  batcher = Batcher(run, batch_size=4, max_wait_s=0.0, max_queue=8)
  bad = batcher.submit([Item(None, "bad")])
  with pytest.raises(RuntimeError, match="model fault"):
    bad[0].result(30)
  assert batcher.submit([Item(None, "good")])[0].result(30) == "good"
  batcher.close()
  batcher.join(30)
