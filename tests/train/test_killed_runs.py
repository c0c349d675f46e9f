"""A run killed with SIGKILL (between steps, or while a checkpoint is being written) loses nothing.

Each killed run is a real process: `train_and_evaluate` on synthetic batches, killed from outside
after a given checkpoint exists, or killing itself inside orbax's finalisation of a checkpoint
(its files written, the atomic rename not done: the state of a save cut off mid-write). It is
then resumed in a new process; its final parameters must equal an uninterrupted run's.
A damaged newest checkpoint is skipped with a warning and the one before it restored.

The runs are built so that a resume that loses state shows in the parameters: 3 distinct
batches and checkpoints every 5 steps, so every resume point (5 or 10) is a different position
in the batch cycle than step 0 (a stream restarted at batch 0 trains on other batches), and T5
dropout 0.1, whose masks come from the checkpointed key folded with the step (a resume with a
fresh or differently folded key draws other masks).

Every run stops at step 12 (`stop_at_step`, as a pre-empted job) of a 24-step schedule: the
config of tests/train/test_loop.py's runs (train_testlib.loop_config) but for how often it
checkpoints, evaluates and keeps, so its model, init and train step are theirs, compiled once
for both files (the memo of `setup_training` in one process, JAX's persistent compilation cache
across processes).
"""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
import train_testlib

from rahf_jax.train import loop

pytestmark = pytest.mark.slow

STEPS = 12  # where every run stops
NUM_BATCHES = train_testlib.LOOP_BATCHES
CONFIG = {"checkpoint_every": 5, "eval_every": 0, "keep_checkpoints": 3}
DRIVER = textwrap.dedent(
  """
  import os, sys, signal
  sys.path.insert(0, {testdir!r})
  import train_testlib
  from rahf_jax.train import loop
  kill_at = int(os.environ.get("KILL_IN_FINALIZE", "0"))
  if kill_at:
    from orbax.checkpoint._src.path import atomicity
    finalize = atomicity.AtomicRenameTemporaryPath.finalize
    def dying_finalize(self, *a, **k):
      if os.path.basename(str(self.get_final())) == str(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
      return finalize(self, *a, **k)
    atomicity.AtomicRenameTemporaryPath.finalize = dying_finalize
  config = train_testlib.loop_config(**{config!r})
  loop.train_and_evaluate(config, sys.argv[1], stop_at_step={steps})
  """
)


def _config():
  return train_testlib.loop_config(**CONFIG)


def _start(workdir, tmp_path, **env):
  script = tmp_path / "driver.py"
  testdir = os.path.dirname(os.path.abspath(__file__))
  script.write_text(DRIVER.format(testdir=testdir, config=CONFIG, steps=STEPS))
  return subprocess.Popen(
    [sys.executable, str(script), str(workdir)], env=dict(os.environ, **env),
    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
  )  # fmt: skip


def _steps(workdir):
  """Finalised checkpoint steps (orbax writes into `<step>.orbax-checkpoint-tmp*` first)."""
  names = (os.path.basename(p) for p in glob.glob(f"{workdir}/checkpoints/*"))
  return sorted(int(n) for n in names if n.isdigit())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  result = loop.train_and_evaluate(_config(), workdir, stop_at_step=STEPS)
  return jax.device_get(result["state"].params)


def _assert_same_params(workdir, reference):
  result = loop.train_and_evaluate(_config(), str(workdir), stop_at_step=STEPS)  # resumes
  assert int(result["state"].step) == STEPS
  assert result["start_step"] % NUM_BATCHES != 0  # not where the batch cycle starts
  for a, b in zip(jax.tree.leaves(jax.device_get(result["state"].params)),
                  jax.tree.leaves(reference), strict=True):  # fmt: skip
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  return result


def test_sigkill_between_steps_then_resume(tmp_path, reference):
  workdir = tmp_path / "run"
  proc = _start(workdir, tmp_path)
  deadline = time.time() + 300
  while 5 not in _steps(workdir) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL
  assert 5 in _steps(workdir) and STEPS not in _steps(workdir)
  result = _assert_same_params(workdir, reference)
  assert result["start_step"] in (5, 10)


def test_sigkill_while_a_checkpoint_is_written_then_resume(tmp_path, reference):
  workdir = tmp_path / "run"
  proc = _start(workdir, tmp_path, KILL_IN_FINALIZE="10")
  assert proc.wait(timeout=300) == -signal.SIGKILL
  # Step 10's files were written to a temporary folder that was never finalised.
  assert _steps(workdir) == [5]
  assert glob.glob(f"{workdir}/checkpoints/10.orbax-checkpoint-tmp*")
  result = _assert_same_params(workdir, reference)
  assert result["start_step"] == 5


def test_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, reference, caplog):
  workdir = tmp_path / "run"
  loop.train_and_evaluate(_config(), str(workdir), stop_at_step=10)
  assert _steps(workdir) == [5, 10]
  for f in glob.glob(f"{workdir}/checkpoints/10/state/**/*", recursive=True):
    if os.path.isfile(f) and ("ocdbt" in f or "/d/" in f):
      with open(f, "r+b") as fh:  # truncate every array data file of step 10
        fh.truncate(0)
  with caplog.at_level("WARNING"):
    result = _assert_same_params(workdir, reference)
  assert result["start_step"] == 5
  assert any("step 10" in r.getMessage() and "cannot be read" in r.getMessage()
             for r in caplog.records)  # fmt: skip
