"""rahf-jax CLI: a user's mistake ends in one clear line and exit status 2, never a traceback.

The cases share one start-up (`_run_all`): a process imports TensorFlow and JAX (~5 s per
process on 2 cores), then forks a child per case that runs `python -m rahf_jax.cli ARGS` as
Python would (`runpy` as `__main__`, its own stderr file, its exit status, a traceback for an
uncaught exception, the exit handlers).
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "rahf.py")

# argv[1]: a JSON list of argument lists; writes [exit status, stderr] per case to argv[2].
_DRIVER = r"""
import atexit, json, os, runpy, sys, tempfile, traceback
import jax, tensorflow  # the start-up the cases share; rahf_jax is imported by each child
cases = json.load(open(sys.argv[1]))
results = []
for args in cases:
  sys.stdout.flush(); sys.stderr.flush()
  with tempfile.TemporaryFile("w+") as err, open(os.devnull, "w") as out:
    pid = os.fork()
    if pid == 0:
      os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
      code = 0
      try:
        sys.argv = ["rahf_jax/cli.py", *args]
        runpy.run_module("rahf_jax.cli", run_name="__main__", alter_sys=True)
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except BaseException:
        traceback.print_exc()
        code = 1
      try:
        atexit._run_exitfuncs()
      finally:
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    err.seek(0)
    results.append([os.waitstatus_to_exitcode(status), err.read()])
json.dump(results, open(sys.argv[2], "w"))
"""


def _run_all(cases, tmp_path):
  """[(exit status, stderr)] of `rahf-jax *args` for each args list, in one process."""
  env = {k: v for k, v in os.environ.items() if k != "RAHF_DEBUG"}
  (tmp_path / "cases.json").write_text(json.dumps(cases))
  proc = subprocess.run(
    [sys.executable, "-c", _DRIVER, str(tmp_path / "cases.json"), str(tmp_path / "out.json")],
    capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  results = json.loads((tmp_path / "out.json").read_text())
  assert len(results) == len(cases)
  return [tuple(r) for r in results]


def _error_line(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.startswith("rahf-jax")]
  assert len(lines) == 1, stderr
  assert "Traceback" not in stderr, stderr
  return lines[0]


USER_ERRORS = [
  (["train", f"--config={CONFIG}:huge,multihead", "--workdir=/tmp/x"],
   "config size 'huge' unknown; use one of"),
  (["train", f"--config={REPO}/configs/nope.py", "--workdir=/tmp/x"],
   "configs/nope.py' not found"),
  (["train", f"--config={CONFIG}:tiny", "--workdir=/tmp/x", "--config.model.sise=3"],
   "the config has no field 'sise'"),
  (["train", "--workdir=/tmp/x"], "needs --config"),
  (["eval", "--workdir=/nonexistent/run"], "is not a training workdir; train first"),
  (["predict", "--workdir=/nonexistent/run", "--image=/nonexistent.png", "--prompt=a cat"],
   "image '/nonexistent.png' not found"),
  (["eval"], "needs --workdir"),
  (["calibrate"], "needs --workdir"),
  (["calibrate", "--workdir=/nonexistent/run"], "is not a training workdir; train first"),
  (["eval", "--bogus=1"], "Unknown command line flag 'bogus'"),
  (["convert", "--out=/tmp/x"], "needs --checkpoint"),
  (["convert", "--checkpoint=/nonexistent/rahf_model.pt", f"--spiece={CONFIG}",
    "--out=/tmp/rahf_cli_convert"], "weights file '/nonexistent/rahf_model.pt' not found"),
  (["convert", f"--checkpoint={CONFIG}", "--spiece=/nonexistent/spiece.model",
    "--out=/tmp/rahf_cli_convert"], "SentencePiece model '/nonexistent/spiece.model' not found"),
  (["convert", f"--checkpoint={CONFIG}", f"--spiece={CONFIG}", "--out=/tmp/rahf_cli_convert"],
   "unknown weights format"),
]  # fmt: skip


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  """Each test's (exit status, stderr), keyed by the test's case; one process runs them all."""
  tmp = tmp_path_factory.mktemp("cli")
  bad = tmp / "bad.png"
  bad.write_bytes(b"not an image")
  (tmp / "run").mkdir()
  config = _load_tiny_config()
  from rahf_jax.sharding.workdir_files import save_config

  config.data.source = "synthetic"
  (tmp / "no_checkpoint").mkdir()
  save_config(config, str(tmp / "no_checkpoint"))
  cases = {i: args for i, (args, _) in enumerate(USER_ERRORS)}
  cases["unknown command"] = ["frobnicate"]
  cases["unreadable image"] = ["predict", f"--workdir={tmp / 'run'}", f"--image={bad}",
                               "--prompt=a cat"]  # fmt: skip
  cases["no checkpoint"] = ["eval", f"--workdir={tmp / 'no_checkpoint'}"]
  return dict(zip(cases, _run_all(list(cases.values()), tmp), strict=True))


@pytest.mark.parametrize("case", range(len(USER_ERRORS)), ids=[m for _, m in USER_ERRORS])
def test_user_errors_are_one_line(case, results):
  code, stderr = results[case]
  assert code == 2
  assert USER_ERRORS[case][1] in _error_line(stderr)


def test_unknown_command_prints_usage(results):
  code, stderr = results["unknown command"]
  assert code == 2
  assert "unknown command 'frobnicate'" in stderr and "usage: rahf-jax <command>" in stderr
  assert "  train " in stderr and "  predict " in stderr


def test_unreadable_image(results):
  code, stderr = results["unreadable image"]
  assert code == 2
  assert "is not a readable image" in _error_line(stderr)


def test_workdir_without_checkpoint(results):
  code, stderr = results["no checkpoint"]
  assert code == 2
  assert "No checkpoint in" in _error_line(stderr)


def _load_tiny_config():
  from rahf_jax.demo import load_config

  return load_config(CONFIG, "tiny,multihead")
