"""Small training runs trained once per test session and read by tests in several files.

A run is trained by whichever pytest process (xdist worker) asks for it first, under a file lock,
into the session's folder (tests/conftest.py makes it and removes it at the end); the others wait
for it and read the same files. Tests must not write into a shared run: one that does (e.g.
calibrates it, or edits its config) works on `copy_of(run, tmp_path)`, which can also update the
copy's config.
"""

import os
import shutil
import sys

import filelock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train"))
import train_testlib  # noqa: E402

STEPS = 8  # the tests' multi-head run: a checkpoint and a dev evaluation at its last step


def tiny_config(variant: str = "multihead"):
  """The tests' tiny training config on the shipped demo vocabulary: STEPS steps, one dev
  evaluation and checkpoint at the end, which is also the best by dev/loss."""
  return train_testlib.train_config(
    variant,
    num_train_steps=STEPS,
    checkpoint_every=STEPS,
    eval_every=STEPS,
    log_every=STEPS,
    best_metric="dev/loss",
    **{"data.vocabulary": "demo"},
  )


def trained_run(name: str, config) -> str:
  """The workdir of `config` trained to its end, trained here unless another process did."""
  from rahf_jax.train.loop import train_and_evaluate  # noqa: PLC0415

  path = os.path.join(os.environ["RAHF_TESTS_SHARED_RUNS"], name)
  with filelock.FileLock(path + ".lock"):
    if not os.path.exists(path + ".done"):
      shutil.rmtree(path, ignore_errors=True)  # a process that died half-way
      train_and_evaluate(config, path)
      open(path + ".done", "w").close()
  return path


def tiny_run() -> str:
  """tiny_config() trained: the run the reward, inference, calibration and reproduction-protocol
  tests read."""
  return trained_run("tiny_multihead", tiny_config())


def copy_of(run: str, dest, name: str | None = None, config_updates: dict | None = None) -> str:
  """A copy of a shared run that a test may write to: dest/name (default: the run's name), its
  config.json updated with `config_updates` (dotted field -> value)."""
  from rahf_jax.inference.predictor import load_config  # noqa: PLC0415
  from rahf_jax.sharding.workdir_files import save_config  # noqa: PLC0415

  copy = shutil.copytree(run, os.path.join(str(dest), name or os.path.basename(run)))
  if config_updates:
    config = load_config(copy)
    config.update_from_flattened_dict(config_updates)
    save_config(config, copy)
  return copy
