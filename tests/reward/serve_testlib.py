"""Helpers of the reward-server tests and bench: an in-process server on 127.0.0.1, raw posts,
request bodies (good and bad), and a scorer that holds its batches until released."""

import asyncio
import base64
import io
import json
import os
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
from PIL import Image


class ThreadServer:
  """`serve_async` on its own event loop in a thread; `stop()` is what SIGTERM does."""

  def __init__(self, make_scorer, tmp_path, **config):
    from rahf_jax.reward.server import ServeConfig, serve_async

    port_file = os.path.join(str(tmp_path), f"port_{time.monotonic_ns()}")
    self.config = ServeConfig(host="127.0.0.1", port=0, port_file=port_file, **config)
    self.loop = asyncio.new_event_loop()
    self._stop = asyncio.Event()
    self.error = None

    def run():
      try:
        self.loop.run_until_complete(serve_async(make_scorer, self.config, self._stop))
      except Exception as e:  # noqa: BLE001 (re-raised by join)
        self.error = e

    self.thread = threading.Thread(target=run, daemon=True)
    self.thread.start()
    deadline = time.monotonic() + 120
    while not os.path.exists(port_file):
      assert time.monotonic() < deadline and self.thread.is_alive(), self.error
      time.sleep(0.01)
    with open(port_file, encoding="utf-8") as f:
      self.url = f"http://127.0.0.1:{int(f.read())}"

  def stop(self):
    self.loop.call_soon_threadsafe(self._stop.set)

  def join(self, timeout=60):
    self.thread.join(timeout)
    assert not self.thread.is_alive(), "the server did not stop"
    if self.error:
      raise self.error


class HeldScorer:
  """Wraps a Scorer; each batch waits for `release` (so tests can fill the queue)."""

  def __init__(self, scorer):
    self.scorer = scorer
    self.batch_size = scorer.batch_size
    self.image_size = scorer.image_size
    self.variant = scorer.variant
    self.release = threading.Event()
    self.started = threading.Event()  # a batch is being held
    self.warm = False

  def score(self, *args, **kw):
    if self.warm:  # the server's warm-up call passes
      self.started.set()
      assert self.release.wait(60), "never released"
    self.warm = True
    return self.scorer.score(*args, **kw)


def post(url, body: bytes, timeout=60):
  """(status, parsed JSON body, headers) of POST url/score with `body`."""
  request = urllib.request.Request(
    url + "/score", data=body, headers={"Content-Type": "application/json"}, method="POST"
  )
  try:
    with urllib.request.urlopen(request, timeout=timeout) as r:
      return r.status, json.loads(r.read()), r.headers
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read()), e.headers


def get(url, path):
  try:
    with urllib.request.urlopen(url + path, timeout=30) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def b64(raw: bytes) -> str:
  return base64.b64encode(raw).decode("ascii")


def png_bytes(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  return buf.getvalue()


def jpeg_bytes(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=95)
  return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
  buf = io.BytesIO()
  np.save(buf, array, allow_pickle=False)
  return buf.getvalue()


def huge_png_header(width=20_000, height=20_000) -> bytes:
  """A valid PNG that declares width x height pixels (RGB) with 1 KB of data: a
  decompression-bomb-shaped file of a few hundred bytes."""

  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
          + chunk(b"IEND", b""))  # fmt: skip


def request_body(images, prompts, **fields) -> bytes:
  return json.dumps({"images": [b64(i) for i in images], "prompts": prompts, **fields}).encode()


def wait_until(predicate, timeout=60.0, what="the condition"):
  """Polls `predicate` (bounded in time) until true; fails naming `what`."""
  deadline = time.monotonic() + timeout
  while not predicate():
    assert time.monotonic() < deadline, f"timed out waiting for {what}"
    time.sleep(0.01)
