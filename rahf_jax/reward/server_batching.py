"""`Batcher`: the reward server's queue and its one scoring thread (dynamic batching).

Items (one image and its prompt each) from any number of requests wait in one bounded FIFO
queue. The worker thread takes the oldest item and waits for more until it has `batch_size`
items or the oldest has waited `max_wait_s`, then scores them in one call (one bucket of the
Scorer, whose size is `batch_size`, so every call reuses one compiled program). A request whose
items do not fit in the queue is refused as a whole (`submit` returns None: the server answers
503 with Retry-After). `close()` stops taking requests, scores every item already accepted, and
then the thread stops (`join` waits for it).
"""

import collections
import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


@dataclasses.dataclass
class Item:
  """One (image, prompt) pair to score, with what its request asked for."""

  pixels: Any  # uint8 [H, W, 3]
  prompt: str
  heatmaps: bool = False
  words: bool = False
  enqueued: float = 0.0
  future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)


class QueueClosedError(RuntimeError):
  """The batcher no longer takes items (the server is shutting down)."""


class Batcher:
  """A bounded queue of Items and the thread that scores them in batches (module docstring).

  Args:
    run_batch: list[Item] (1 to batch_size of them) -> one result per item, in order.
    batch_size: the most items per call.
    max_wait_s: the longest the oldest queued item waits for a batch to fill.
    max_queue: the most items waiting (not yet taken by the worker).
  """

  def __init__(
    self,
    run_batch: Callable[[list[Item]], Sequence[Any]],
    batch_size: int,
    max_wait_s: float,
    max_queue: int,
  ):
    if batch_size < 1 or max_queue < 1 or not max_wait_s >= 0:
      raise ValueError(
        f"batch_size ({batch_size}) and max_queue ({max_queue}) must be >= 1 and max_wait_s "
        f"({max_wait_s}) >= 0."
      )
    self.run_batch = run_batch
    self.batch_size = int(batch_size)
    self.max_wait_s = float(max_wait_s)
    self.max_queue = int(max_queue)
    self._items: collections.deque[Item] = collections.deque()
    self._cond = threading.Condition()
    self._closed = False
    self.batches = 0  # calls of run_batch
    self.items_done = 0
    self.refused = 0  # requests refused because the queue was full
    self._thread = threading.Thread(target=self._work, name="rahf-reward-batcher", daemon=True)
    self._thread.start()

  @property
  def queued(self) -> int:
    with self._cond:
      return len(self._items)

  def submit(self, items: Sequence[Item]) -> list[concurrent.futures.Future] | None:
    """Queues all of `items` and returns their futures, or None if they do not all fit."""
    with self._cond:
      if self._closed:
        raise QueueClosedError("the server is shutting down")
      if len(self._items) + len(items) > self.max_queue:
        self.refused += 1
        return None
      now = time.monotonic()
      for item in items:
        item.enqueued = now
        self._items.append(item)
      self._cond.notify_all()
      return [item.future for item in items]

  def _next_batch(self) -> list[Item] | None:
    with self._cond:
      while not self._items:
        if self._closed:
          return None
        self._cond.wait()
      deadline = self._items[0].enqueued + self.max_wait_s
      while len(self._items) < self.batch_size and not self._closed:
        left = deadline - time.monotonic()
        if left <= 0:
          break
        self._cond.wait(left)
      n = min(len(self._items), self.batch_size)
      return [self._items.popleft() for _ in range(n)]

  def _work(self) -> None:
    while (batch := self._next_batch()) is not None:
      try:
        results = list(self.run_batch(batch))
        if len(results) != len(batch):
          raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
      except Exception as e:  # noqa: BLE001 (every waiting request gets the error)
        for item in batch:
          item.future.set_exception(e)
      else:
        for item, result in zip(batch, results, strict=True):
          item.future.set_result(result)
      with self._cond:
        self.batches += 1
        self.items_done += len(batch)

  def close(self) -> None:
    """Refuses new items; the worker scores those already queued at once (no more waiting for
    a batch to fill), then stops."""
    with self._cond:
      self._closed = True
      self._cond.notify_all()

  def join(self, timeout: float | None = None) -> None:
    """Waits for the worker thread to stop (after `close`)."""
    self._thread.join(timeout)

  def stats(self) -> dict[str, Any]:
    with self._cond:
      return {
        "queued": len(self._items),
        "max_queue": self.max_queue,
        "batch_size": self.batch_size,
        "max_wait_ms": round(1000 * self.max_wait_s, 3),
        "batches": self.batches,
        "items": self.items_done,
        "refused_requests": self.refused,
        "closed": self._closed,
      }
