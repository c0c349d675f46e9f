"""Shared pytest set-up: 8 fake CPU devices, no GPU probing, quiet TensorFlow, one XLA cache.

XLA_FLAGS must be set before jax is imported anywhere, which is why it lives here.

The tests' programs are compiled with LLVM at -O1 (`--xla_backend_optimization_level=1`; users'
runs keep XLA's default, 3): XLA's own passes (sharding propagation and partitioning, fusion,
layout, buffer assignment) are the same, so every program a test checks is the one a user runs,
and only the machine code of its fusions is optimised less. A test runs its programs a few steps
and compiles many, and LLVM's -O3 was most of a small program's compile time: tests/train's
test_steps.py and test_state.py took 84 s at -O3 and 55 s at -O1 (same machine and load). -O0
compiles faster still but runs slower: one train step of the demo's model at 64 px took 735 ms
at -O0, 286 ms at -O1 and 488 ms at -O3, in one process. Both sides of every bitwise comparison
in the suite are compiled with the same options.

Many tests compile the same computation again (a new model object or a new `train_and_evaluate`
traces the same program): JAX's persistent compilation cache, in one folder per test run shared
by the xdist workers and the subprocesses the tests start, compiles each program that takes 0.2 s
or more to compile once. The key is the program and the compile options, so a hit is the
executable the compiler would have made.

Small training runs that several test files read (tests/shared_runs.py) are trained once per
test run, in a second folder made the same way, whichever xdist worker asks first.
Both folders are removed when the run ends.
"""

import os
import shutil
import tempfile

os.environ.setdefault(
  "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=1"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Made by the first process to load this file (pytest, or xdist's controller); the workers and
# subprocesses inherit the variable. A cache folder the user set is kept.
_OWN_XLA_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_XLA_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="rahf_jax_tests_xla_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
_OWN_SHARED_RUNS = "RAHF_TESTS_SHARED_RUNS" not in os.environ
if _OWN_SHARED_RUNS:
  os.environ["RAHF_TESTS_SHARED_RUNS"] = tempfile.mkdtemp(prefix="rahf_jax_tests_runs_")


def pytest_sessionfinish(session):
  # The process that made them, after the workers are done.
  if _OWN_XLA_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
  if _OWN_SHARED_RUNS:
    shutil.rmtree(os.environ["RAHF_TESTS_SHARED_RUNS"], ignore_errors=True)


def _slow_marked(module) -> bool:
  marks = getattr(module, "pytestmark", [])
  return any(m.name == "slow" for m in (marks if isinstance(marks, list) else [marks]))


def pytest_collection_modifyitems(config, items):
  """Slow files run first: those marked slow as a whole (the end-to-end runs), then those with
  some slow tests. xdist (`--dist loadfile`) hands files to its workers in this order, so the long
  ones start early and the short ones fill in at the end, and the workers finish closer together.
  The order of a file's own tests is kept."""
  slow_files = {item.path for item in items if item.get_closest_marker("slow")}
  items.sort(
    key=lambda item: (not _slow_marked(getattr(item, "module", None)), item.path not in slow_files)
  )
