"""Load and fault test of `rahf-jax serve` on 127.0.0.1: throughput, p50/p99 latency, and every
request id answered exactly once.

  .venv/bin/python bench/bench_serve.py --workdir demo_out/workdir [--clients 8] \
      [--requests 64] [--batch_sizes 1,4,8] [--images_per_request 1] [--kill_restart]

Without --workdir it trains the tests' tiny model for 8 steps into a temporary folder first. For
each batch size it starts `rahf-jax serve --batch_size B` (a subprocess, port chosen by the
system), waits for /readyz, runs --clients threads that send --requests requests in all (each
with --images_per_request random 64 x 64 PNGs), and prints one table row: requests/s, images/s,
p50 and p99 latency, mean batch fill (/stats), and the ids lost and duplicated. --kill_restart
also kills the server with SIGKILL once a third of the requests are answered, starts it again on
the same port, and counts the client's retries. Every loop is bounded: requests by --requests,
time by --time_limit seconds per run (the run fails when it is passed).
"""

import argparse
import collections
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from rahf_jax.reward.client import RewardClient  # noqa: E402


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_server(
  workdir: str, port: int, batch_size: int, max_wait_ms: float, log
) -> subprocess.Popen:
  cmd = [sys.executable, "-m", "rahf_jax.cli", "serve", f"--workdir={workdir}",
         "--host=127.0.0.1", f"--port={port}", f"--batch_size={batch_size}",
         f"--max_wait_ms={max_wait_ms}"]  # fmt: skip
  return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def train_tiny(path: str) -> str:
  sys.path.insert(0, os.path.join(REPO, "tests", "reward"))
  sys.path.insert(0, os.path.join(REPO, "tests", "train"))
  from conftest import tiny_config  # noqa: PLC0415

  from rahf_jax.train.loop import train_and_evaluate  # noqa: PLC0415

  train_and_evaluate(tiny_config(), path)
  return path


def png(rng) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def run_load(url, clients, requests, per_request, time_limit, on_answer=None, retries=8):
  """Sends `requests` requests from `clients` threads; returns (latencies, answered ids, sent
  ids, attempts, wall seconds)."""
  rng = np.random.default_rng(0)
  images = [png(rng) for _ in range(8)]
  todo = collections.deque(range(requests))
  lock = threading.Lock()
  latencies, answered, sent, attempts, errors = [], [], [], [0], []
  deadline = time.monotonic() + time_limit

  def worker(k):
    client = RewardClient(url, timeout=60, retries=retries, backoff=0.1, max_backoff=2.0)
    while time.monotonic() < deadline:
      with lock:
        if not todo:
          break
        i = todo.popleft()
        sent.append(f"req-{i}")
      batch = [images[(i + j) % len(images)] for j in range(per_request)]
      t0 = time.monotonic()
      try:
        response = client.score_response(batch, "a red circle and a blue square",
                                         request_id=f"req-{i}")  # fmt: skip
      except Exception as e:  # noqa: BLE001 (counted and reported)
        errors.append(f"req-{i}: {e}")
        continue
      with lock:
        latencies.append(time.monotonic() - t0)
        answered.append(response["id"])
        if len(response["results"]) != per_request:
          errors.append(f"req-{i}: {len(response['results'])} results")
      if on_answer:
        on_answer(len(answered))
    with lock:
      attempts[0] += client.attempts

  t0 = time.monotonic()
  threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(time_limit + 60)
  return latencies, answered, sent, attempts[0], time.monotonic() - t0, errors


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", default=None)
  p.add_argument("--clients", type=int, default=8)
  p.add_argument("--requests", type=int, default=64)
  p.add_argument("--batch_sizes", default="1,4,8")
  p.add_argument("--images_per_request", type=int, default=1)
  p.add_argument("--max_wait_ms", type=float, default=10.0)
  p.add_argument("--kill_restart", action="store_true")
  p.add_argument("--time_limit", type=float, default=300.0)
  args = p.parse_args()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  tmp = tempfile.mkdtemp(prefix="bench_serve_")
  workdir = args.workdir or train_tiny(os.path.join(tmp, "workdir"))
  print(f"workdir {workdir}; {args.clients} clients, {args.requests} requests of "
        f"{args.images_per_request} image(s), max_wait {args.max_wait_ms} ms")  # fmt: skip
  print("| batch | kill -9 | req/s | images/s | p50 ms | p99 ms | mean batch | retries | lost "
        "| dup |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
  failed = False
  for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(os.path.join(tmp, f"serve_{batch_size}.log"), "w") as log:
      procs = [start_server(workdir, port, batch_size, args.max_wait_ms, log)]
      try:
        RewardClient(url).wait_ready(args.time_limit)
        killed, kill_lock = [], threading.Lock()

        def kill_once(n, procs=procs, log=log, port=port, batch_size=batch_size, killed=killed,
                      kill_lock=kill_lock):  # fmt: skip
          with kill_lock:  # called by every client thread; kills once
            if args.kill_restart and n >= args.requests // 3 and not killed:
              killed.append(n)
              procs[-1].send_signal(signal.SIGKILL)
              procs[-1].wait(30)
              procs.append(start_server(workdir, port, batch_size, args.max_wait_ms, log))

        lat, answered, sent, attempts, wall, errors = run_load(
          url, args.clients, args.requests, args.images_per_request, args.time_limit, kill_once,
          retries=40 if args.kill_restart else 8,
        )  # fmt: skip
        stats = RewardClient(url).stats()
      finally:
        for proc in procs:
          if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    counts = collections.Counter(answered)
    lost = len(set(f"req-{i}" for i in range(args.requests)) - set(counts))
    dup = sum(c - 1 for c in counts.values())
    ms = np.array(lat) * 1000
    mean_batch = stats["items"] / max(stats["batches"], 1)
    print(f"| {batch_size} | {'yes' if args.kill_restart else 'no'} | {len(answered) / wall:.1f} "
          f"| {len(answered) * args.images_per_request / wall:.1f} | {np.percentile(ms, 50):.0f} "
          f"| {np.percentile(ms, 99):.0f} | {mean_batch:.2f} | {attempts - len(sent)} | {lost} "
          f"| {dup} |", flush=True)  # fmt: skip
    for e in errors[:5]:
      print("  error:", e)
    failed |= bool(lost or dup or errors)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
