"""`rahf-jax serve`: RAHF as an HTTP reward server (aiohttp) for generator training loops.

  POST /score    score images against prompts (wire format: rahf_jax/reward/server_io.py)
  GET  /healthz  200 while the process answers requests
  GET  /readyz   200 once the model is loaded and compiled; 503 while loading or shutting down
  GET  /stats    queue length, batches and items scored, refused requests (JSON)

Requests are checked and their images decoded on a thread pool, then their (image, prompt)
pairs join one bounded queue; one worker thread scores them in batches of the Scorer's bucket
size, waiting at most `max_wait_ms` for a batch to fill (rahf_jax/reward/server_batching.py).
Bad requests get a 4xx status with {"error": "<one line>"} and the server goes on: a body over
`max_body_mb` gets 413 before it is read, an image over `max_image_pixels` gets 413 from its
header before it is decoded. A request whose images do not fit in the queue (`max_queue`
waiting pairs) gets 503 with Retry-After, and so does any request before the model is ready.
SIGTERM or SIGINT: /readyz turns 503, the listening socket closes, every request already
accepted is scored and answered (up to `shutdown_timeout_s`), then the process exits.

Clients: rahf_jax/reward/client.py (standard library only, with retries).
"""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from aiohttp import web

from rahf_jax.reward import server_io
from rahf_jax.reward.server_batching import Batcher, Item, QueueClosedError

RETRY_AFTER_S = 1
STATE = web.AppKey("state", object)


@dataclasses.dataclass
class ServeConfig:
  """The server's settings (the `rahf-jax serve` flags of the same names)."""

  host: str = "127.0.0.1"
  port: int = 8000  # 0: any free port (see the "listening on" line or port_file)
  max_wait_ms: float = 10.0  # the longest a pair waits for its batch to fill
  max_queue: int = 256  # pairs waiting to be scored; also the most images per request
  max_body_mb: float = 64.0  # the largest request body
  max_image_pixels: int = 4096 * 4096  # the largest image (H * W), read from its header
  shutdown_timeout_s: float = 60.0  # how long SIGTERM waits for accepted requests
  port_file: str | None = None  # write the bound port here once listening (for scripts)


class _State:
  """What the handlers share: the scorer (once loaded), the batcher, readiness, counters."""

  def __init__(self, config: ServeConfig):
    self.config = config
    self.scorer: Any = None
    self.batcher: Batcher | None = None
    self.ready = False
    self.draining = False
    self.load_error: str | None = None
    self.answered = 0
    self.pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="rahf-decode")


def _error(status: int, message: str, retry: bool = False) -> web.Response:
  headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
  return web.json_response({"error": message}, status=status, headers=headers)


def _run_batch(scorer) -> Callable[[list[Item]], list[Any]]:
  def run(batch: list[Item]) -> list[Any]:
    return scorer.score(
      [it.pixels for it in batch],
      [it.prompt for it in batch],
      heatmaps=any(it.heatmaps for it in batch),
      words=any(it.words for it in batch),
    )

  return run


def _load(state: _State, make_scorer: Callable[[], Any], on_error: Callable[[], Any]) -> None:
  """Loads the scorer, compiles its heads program on one dummy pair, then marks ready."""
  try:
    scorer = make_scorer()
    scorer.score([np.zeros((8, 8, 3), np.uint8)], ["warm up"])
    state.scorer = scorer
    state.batcher = Batcher(
      _run_batch(scorer), scorer.batch_size, state.config.max_wait_ms / 1000.0,
      state.config.max_queue,
    )  # fmt: skip
    state.ready = True
    logging.info("rahf-jax serve: ready (batch size %d)", scorer.batch_size)
  except Exception as e:  # noqa: BLE001 (reported by /readyz and the log)
    state.load_error = f"{type(e).__name__}: {e}".splitlines()[0]
    logging.error("rahf-jax serve: the model did not load: %s", state.load_error)
    on_error()


async def _score(request: web.Request) -> web.Response:
  state: _State = request.app[STATE]
  max_body = int(state.config.max_body_mb * 2**20)
  if request.content_length is not None and request.content_length > max_body:
    return _error(
      413,
      f"request body is {request.content_length} bytes, over the server's limit of {max_body} "
      "bytes (--max_body_mb); send fewer or smaller images.",
    )
  if state.draining:
    return _error(503, "the server is shutting down; retry (another replica, or after restart).",
                  retry=True)  # fmt: skip
  if not state.ready:
    why = f"the model failed to load ({state.load_error})" if state.load_error else "loading"
    return _error(503, f"the server is not ready: {why}; retry after /readyz answers 200.",
                  retry=state.load_error is None)  # fmt: skip
  try:
    body = await request.read()
  except web.HTTPRequestEntityTooLarge:
    return _error(413, f"request body is over the server's limit of {max_body} bytes "
                  "(--max_body_mb); send fewer or smaller images.")  # fmt: skip
  loop = asyncio.get_running_loop()
  cfg = state.config
  try:
    req = await loop.run_in_executor(
      state.pool, server_io.parse_request, body, cfg.max_image_pixels, cfg.max_queue
    )
  except server_io.RequestError as e:
    return _error(e.status, str(e))
  except Exception as e:  # noqa: BLE001 (a request the checks did not foresee: the server's fault)
    logging.exception("rahf-jax serve: reading a request failed")
    return _error(500, f"reading the request failed: {type(e).__name__}: {str(e).splitlines()[0]}")
  items = [Item(p, t, req["heatmaps"], req["words"]) for p, t in zip(req["images"], req["prompts"],
                                                                    strict=True)]  # fmt: skip
  try:
    futures = state.batcher.submit(items)
  except QueueClosedError:
    return _error(503, "the server is shutting down; retry after restart.", retry=True)
  if futures is None:
    return _error(503, f"the queue is full ({cfg.max_queue} pairs waiting, --max_queue); retry "
                  f"after {RETRY_AFTER_S} s.", retry=True)  # fmt: skip
  try:
    results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    entries = await loop.run_in_executor(
      state.pool, lambda: [server_io.result_json(r, req) for r in results]
    )
  except Exception as e:  # noqa: BLE001 (the model's fault, not the client's)
    logging.exception("rahf-jax serve: scoring failed")
    return _error(500, f"scoring failed: {type(e).__name__}: {str(e).splitlines()[0]}")
  state.answered += 1
  return web.json_response({"id": req["id"], "results": entries})


async def _healthz(request: web.Request) -> web.Response:
  return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
  state: _State = request.app[STATE]
  if state.ready and not state.draining:
    scorer = state.scorer
    ready = {"status": "ready", "batch_size": scorer.batch_size}
    return web.json_response({**ready, "image_size": scorer.image_size, "variant": scorer.variant})
  status = "draining" if state.draining else ("failed" if state.load_error else "loading")
  body = {"status": status, "error": state.load_error} if state.load_error else {"status": status}
  return web.json_response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})


async def _stats(request: web.Request) -> web.Response:
  state: _State = request.app[STATE]
  stats = state.batcher.stats() if state.batcher else {}
  return web.json_response({"ready": state.ready, "draining": state.draining,
                            "answered_requests": state.answered, **stats})  # fmt: skip


def make_app(
  make_scorer: Callable[[], Any],
  config: ServeConfig | None = None,
  on_load_error: Callable[[], Any] = lambda: None,
) -> web.Application:
  """The aiohttp application; `make_scorer()` (e.g. lambda: Scorer.from_workdir(W)) runs on a
  thread at start-up, so /healthz answers while the model loads; `on_load_error()` is called
  (on that thread) if it fails."""
  config = config or ServeConfig()
  app = web.Application(client_max_size=int(config.max_body_mb * 2**20))
  state = _State(config)
  app[STATE] = state
  app.router.add_post("/score", _score)
  app.router.add_get("/healthz", _healthz)
  app.router.add_get("/readyz", _readyz)
  app.router.add_get("/stats", _stats)

  async def start(app):
    threading.Thread(target=_load, args=(state, make_scorer, on_load_error), daemon=True).start()

  async def stop(app):
    if state.batcher is not None:
      state.batcher.close()
      await asyncio.get_running_loop().run_in_executor(None, state.batcher.join)
    state.pool.shutdown(wait=False)

  app.on_startup.append(start)
  app.on_cleanup.append(stop)
  return app


def bind(host: str, port: int) -> socket.socket:
  """A listening TCP socket (SO_REUSEADDR, so a restarted server gets its port back)."""
  family = socket.AF_INET6 if ":" in host else socket.AF_INET
  sock = socket.socket(family, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    sock.bind((host, port))
  except OSError as e:
    sock.close()
    raise ValueError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port.") from e
  sock.listen(1024)
  sock.setblocking(False)
  return sock


async def serve_async(
  make_scorer: Callable[[], Any], config: ServeConfig, stop: asyncio.Event | None = None
) -> None:
  """Serves until `stop` is set, or SIGTERM / SIGINT; then drains (module docstring)."""
  stop = stop or asyncio.Event()
  loop = asyncio.get_running_loop()
  app = make_app(make_scorer, config, lambda: loop.call_soon_threadsafe(stop.set))
  state: _State = app[STATE]
  runner = web.AppRunner(
    app, handle_signals=False, access_log=None, shutdown_timeout=config.shutdown_timeout_s
  )
  await runner.setup()
  sock = bind(config.host, config.port)
  port = sock.getsockname()[1]
  await web.SockSite(runner, sock).start()
  with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread: no signals
    for sig in (signal.SIGTERM, signal.SIGINT):
      loop.add_signal_handler(sig, stop.set)
  print(f"rahf-jax serve: listening on http://{config.host}:{port}", flush=True)
  if config.port_file:
    tmp = f"{config.port_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(f"{port}\n")
    os.replace(tmp, config.port_file)
  await stop.wait()
  state.draining = True  # new requests: 503; the queued pairs are scored without waiting
  if state.batcher is not None:
    logging.info("rahf-jax serve: shutting down; answering %d queued pairs", state.batcher.queued)
    state.batcher.close()
  await runner.cleanup()  # closes the socket, waits for the accepted requests, then on_cleanup
  if state.load_error:
    raise ValueError(f"the model did not load: {state.load_error}")
  print(f"rahf-jax serve: stopped after answering {state.answered} requests", flush=True)


def serve(make_scorer: Callable[[], Any], config: ServeConfig) -> None:
  """Blocks serving until SIGTERM or SIGINT (see serve_async)."""
  asyncio.run(serve_async(make_scorer, config))
