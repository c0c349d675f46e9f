"""`rahf-jax serve` as a process on 127.0.0.1: SIGTERM answers the accepted requests and exits 0;
after kill -9 and a restart on the same port the client's retries complete every request, each
id answered exactly once."""

import collections
import os
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from serve_testlib import get, png_bytes, post, request_body, wait_until

from rahf_jax.reward.client import RewardClient

# Each test starts `rahf-jax serve` processes (`make test`; `make test-fast` leaves them out).
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _serve(workdir, port, log, *flags) -> subprocess.Popen:
  cmd = [sys.executable, "-m", "rahf_jax.cli", "serve", f"--workdir={workdir}", "--host=127.0.0.1",
         f"--port={port}", "--batch_size=8", *flags]  # fmt: skip
  return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def _wait_ready(proc, url, log_path):
  """Until /readyz answers 200 (bounded); fails at once with the log if the server exits."""
  client = RewardClient(url)
  wait_until(lambda: proc.poll() is not None or client.ready(), 180, "the server to be ready")
  assert proc.poll() is None, log_path.read_text()[-2000:]


def _stop(proc):
  if proc.poll() is None:
    proc.kill()
    proc.wait(30)


def test_sigterm_answers_the_accepted_requests(workdir, tmp_path):
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  with open(tmp_path / "serve.log", "w") as log:
    proc = _serve(workdir, port, log, "--max_wait_ms=60000")  # a batch of 8 would wait a minute
    try:
      _wait_ready(proc, url, tmp_path / "serve.log")
      image = png_bytes(np.zeros((32, 32, 3), np.uint8))
      answers = []
      threads = [threading.Thread(target=lambda i=i: answers.append(
        post(url, request_body([image], ["a cat"], id=f"t{i}")))) for i in range(3)]  # fmt: skip
      for t in threads:
        t.start()
      wait_until(lambda: get(url, "/stats")[1]["queued"] == 3, what="3 queued requests")
      proc.send_signal(signal.SIGTERM)
      for t in threads:
        t.join(60)
      assert proc.wait(60) == 0
    finally:
      _stop(proc)
  assert sorted((status, body["id"]) for status, body, _ in answers) == [
    (200, "t0"), (200, "t1"), (200, "t2")]  # fmt: skip
  assert "stopped after answering 3 requests" in (tmp_path / "serve.log").read_text()


def test_kill_9_and_restart_the_retries_complete_every_request(workdir, tmp_path):
  port, requests, clients = _free_port(), 16, 4
  url = f"http://127.0.0.1:{port}"
  image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
  todo = collections.deque(range(requests))
  answered, lock = [], threading.Lock()
  killed = threading.Event()
  with open(tmp_path / "serve.log", "w") as log:
    procs = [_serve(workdir, port, log, "--max_wait_ms=5")]
    try:
      _wait_ready(procs[0], url, tmp_path / "serve.log")

      def client_loop():
        client = RewardClient(url, timeout=60, retries=60, backoff=0.05, max_backoff=1.0)
        while True:
          with lock:
            if not todo:
              return
            i = todo.popleft()
          response = client.score_response([image], "a cat", request_id=f"r{i}")
          with lock:
            answered.append(response["id"])
            if len(answered) >= requests // 4 and not killed.is_set():
              killed.set()
              procs[0].send_signal(signal.SIGKILL)  # mid-stream: other requests are in flight
              procs[0].wait(30)
              procs.append(_serve(workdir, port, log, "--max_wait_ms=5"))

      threads = [threading.Thread(target=client_loop) for _ in range(clients)]
      for t in threads:
        t.start()
      for t in threads:
        t.join(300)
      assert killed.is_set() and procs[0].returncode == -signal.SIGKILL
    finally:
      for p in procs:
        _stop(p)
  counts = collections.Counter(answered)
  assert sorted(counts) == sorted(f"r{i}" for i in range(requests))  # none lost
  assert set(counts.values()) == {1}  # none answered twice
