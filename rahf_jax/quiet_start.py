"""A quiet start for the command line: the tool's own lines first, not the libraries' notices.

TensorFlow (the data pipeline's), its CUDA probe and libtpu (installed beside jax) write start-up
notices to the process's stderr from C++, before any Python logging is set up: oneDNN and
CPU-feature notices, "Could not find cuda drivers", "failed call to cuInit" on a machine without
a GPU, and libtpu's "could not determine TPU accelerator type" where no TPU is attached. None of
them is a failure, but each looks like one to a newcomer.

`start(...)` imports TensorFlow (where the command needs it) and starts JAX's backends with the
process's stderr (file descriptor 2) sent to a temporary file, then writes back every line of it
that is not such a notice, so warnings and errors of the same moments still show. TensorFlow is
kept off the GPUs either way (`tf.config.set_visible_devices([], "GPU")`): it only reads and
decodes data, and the accelerators' memory is JAX's. `run_filtered` runs a subprocess (the demo's
`tfds build`) with the same filter on its stderr.

Everything shows when the user asks: `--verbose`, or any of TensorFlow's logging variables
(`TF_CPP_MIN_LOG_LEVEL`, `TF_CPP_MAX_VLOG_LEVEL`, `TF_CPP_VMODULE`) set in the environment.
"""

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence

LOG_ENV_VARS = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE")

# One pattern per start-up notice; a line that matches none is written back.
NOTICES = (
  r"All log messages before absl::InitializeLog\(\) is called",
  r"Logging before InitGoogle\(\) is written to STDERR",
  r"oneDNN custom operations are on",
  r"cudart_stub\.cc.*Could not find cuda drivers",
  r"cpu_feature_guard\.cc",
  r"^To enable the following instructions: .*rebuild TensorFlow",
  r"failed call to cuInit",
  r"Unable to register cu(DNN|FFT|BLAS) factory",
  r"computation_placer\.cc.*already registered",
  r"TF-TRT Warning: Could not find TensorRT",
  r"Failed to find host bounds for accelerator type",
  r"could not determine TPU (accelerator type|worker hostnames)",
  r"^=== Source Location Trace: ===",
  r"libtpu_init_utils\.cc",
  r"Platform 'tpu' is experimental|Unable to initialize backend 'tpu'",
)
NOTICE = re.compile("|".join(f"(?:{n})" for n in NOTICES))

_started_quiet: bool | None = None  # what `start` decided, for `run_filtered`


def wants_quiet(verbose: bool = False, environ: Mapping[str, str] | None = None) -> bool:
  """Whether to filter the notices: not with --verbose, nor when a TF logging variable is set."""
  environ = os.environ if environ is None else environ
  return not verbose and not any(name in environ for name in LOG_ENV_VARS)


def kept_lines(text: str) -> str:
  """`text` without its start-up notice lines."""
  return "".join(line for line in text.splitlines(keepends=True) if not NOTICE.search(line))


@contextlib.contextmanager
def filtered_stderr():
  """Sends file descriptor 2 (C++ and Python writes alike) to a temporary file while inside;
  writes back the lines that are not start-up notices on the way out (also on an exception)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      tmp.seek(0)
      kept = kept_lines(tmp.read().decode("utf-8", errors="replace"))
      if kept:
        os.write(2, kept.encode("utf-8"))


def hide_gpus_from_tensorflow() -> None:
  """Imports TensorFlow and keeps it off the GPUs (a no-op once TensorFlow has started)."""
  import tensorflow as tf  # noqa: PLC0415

  with contextlib.suppress(RuntimeError, ValueError):
    tf.config.set_visible_devices([], "GPU")


def start(tensorflow: bool, jax_backends: bool, verbose: bool = False) -> bool:
  """Imports TensorFlow (kept off the GPUs) and starts JAX's backends, as asked, with their
  start-up notices filtered unless `wants_quiet` says otherwise. Returns whether it filtered.

  Start JAX's backends here only where nothing must run before them (`jax.distributed
  .initialize()`, or XLA flags set by the command itself).
  """
  global _started_quiet  # noqa: PLW0603
  quiet = _started_quiet = wants_quiet(verbose)
  if quiet:
    # TensorFlow's later C++ lines (and those of subprocesses): errors only.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  with filtered_stderr() if quiet else contextlib.nullcontext():
    if tensorflow:
      hide_gpus_from_tensorflow()
    if jax_backends:
      import jax  # noqa: PLC0415

      jax.devices()
  return quiet


def run_filtered(cmd: Sequence[str], quiet: bool | None = None) -> None:
  """`subprocess.run(cmd, check=True)`, its stderr's start-up notices left out when quiet
  (default: as `start` decided, else `wants_quiet()`); its other stderr lines pass through as
  they come."""
  if quiet is None:
    quiet = wants_quiet() if _started_quiet is None else _started_quiet
  if not quiet:
    subprocess.run(list(cmd), check=True)
    return
  sys.stderr.flush()
  with subprocess.Popen(list(cmd), stderr=subprocess.PIPE) as proc:
    for line in proc.stderr:
      text = line.decode("utf-8", errors="replace")
      if not NOTICE.search(text):
        sys.stderr.write(text)
        sys.stderr.flush()
  if proc.returncode:
    raise subprocess.CalledProcessError(proc.returncode, list(cmd))
