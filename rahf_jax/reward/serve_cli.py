"""`rahf-jax serve`: the reward server's flags and its run (rahf_jax/reward/server.py).

  rahf-jax serve --workdir W [--host 127.0.0.1] [--port 8000] [--batch_size 16] \
      [--max_wait_ms 10] [--max_queue 256] [--max_body_mb 64] [--max_image_pixels 16777216]

Flags defined here are the command's own; --workdir, --best and --batch_size are shared with
other commands (cli.py, score_cli.py).
"""

import os

from absl import flags

from rahf_jax.reward import score_cli

_HOST = flags.DEFINE_string("host", "127.0.0.1", "serve: the address to listen on")
_PORT = flags.DEFINE_integer("port", 8000, "serve: the TCP port (0: any free port)")
_MAX_WAIT_MS = flags.DEFINE_float("max_wait_ms", 10.0, "serve: longest wait for a batch to fill")
_MAX_QUEUE = flags.DEFINE_integer("max_queue", 256, "serve: pairs waiting before 503")
_MAX_BODY_MB = flags.DEFINE_float("max_body_mb", 64.0, "serve: the largest request body (MiB)")
_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
  "max_image_pixels", 4096 * 4096, "serve: the largest image, H * W"
)
_SHUTDOWN_TIMEOUT = flags.DEFINE_float(
  "shutdown_timeout", 60.0, "serve: seconds SIGTERM waits for accepted requests"
)
_PORT_FILE = flags.DEFINE_string("port_file", None, "serve: write the bound port to this file")


def run(workdir: str, best: bool | None) -> None:
  """Serves the workdir's checkpoint until SIGTERM / SIGINT."""
  from rahf_jax.reward.scorer import Scorer  # noqa: PLC0415
  from rahf_jax.reward.server import ServeConfig, serve  # noqa: PLC0415

  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir!r} not found; pass a training run's folder.")
  batch_size = score_cli._BATCH_SIZE.value  # noqa: SLF001 (the shared --batch_size flag)
  for name, value in (("batch_size", batch_size), ("max_queue", _MAX_QUEUE.value),
                      ("max_image_pixels", _MAX_IMAGE_PIXELS.value)):  # fmt: skip
    if value < 1:
      raise ValueError(f"--{name} must be a positive integer, got {value}.")
  if _MAX_QUEUE.value < batch_size:
    raise ValueError(
      f"--max_queue ({_MAX_QUEUE.value}) is below --batch_size ({batch_size}); batches could "
      "never fill. Raise --max_queue."
    )
  if not _MAX_WAIT_MS.value >= 0 or not _MAX_BODY_MB.value > 0:
    raise ValueError("--max_wait_ms must be >= 0 and --max_body_mb > 0.")
  if not 0 <= _PORT.value < 65536:
    raise ValueError(f"--port {_PORT.value} is not a TCP port; pass 0 to 65535.")
  config = ServeConfig(
    host=_HOST.value,
    port=_PORT.value,
    max_wait_ms=_MAX_WAIT_MS.value,
    max_queue=_MAX_QUEUE.value,
    max_body_mb=_MAX_BODY_MB.value,
    max_image_pixels=_MAX_IMAGE_PIXELS.value,
    shutdown_timeout_s=_SHUTDOWN_TIMEOUT.value,
    port_file=_PORT_FILE.value,
  )
  serve(lambda: Scorer.from_workdir(workdir, best=best, batch_size=batch_size), config)
