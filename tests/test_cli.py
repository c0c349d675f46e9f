"""rahf-jax CLI: a user's mistake ends in one clear line and exit status 2, never a traceback."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "rahf.py")


def _run(*args, cwd=REPO):
  env = {k: v for k, v in os.environ.items() if k != "RAHF_DEBUG"}
  proc = subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", *args], capture_output=True, text=True, cwd=cwd,
    env=env, timeout=300,
  )  # fmt: skip
  return proc.returncode, proc.stdout, proc.stderr


def _error_line(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.startswith("rahf-jax")]
  assert len(lines) == 1, stderr
  assert "Traceback" not in stderr, stderr
  return lines[0]


@pytest.mark.parametrize(
  "args, message",
  [
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
  ],
)  # fmt: skip
def test_user_errors_are_one_line(args, message):
  code, _, stderr = _run(*args)
  assert code == 2
  assert message in _error_line(stderr)


def test_unknown_command_prints_usage():
  code, _, stderr = _run("frobnicate")
  assert code == 2
  assert "unknown command 'frobnicate'" in stderr and "usage: rahf-jax <command>" in stderr
  assert "  train " in stderr and "  predict " in stderr


def test_unreadable_image(tmp_path):
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"not an image")
  workdir = tmp_path / "run"
  workdir.mkdir()
  code, _, stderr = _run("predict", f"--workdir={workdir}", f"--image={bad}", "--prompt=a cat")
  assert code == 2
  assert "is not a readable image" in _error_line(stderr)


def test_workdir_without_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = _load_tiny_config()
  from rahf_jax.sharding.workdir_files import save_config

  config.data.source = "synthetic"
  save_config(config, str(workdir))
  code, _, stderr = _run("eval", f"--workdir={workdir}")
  assert code == 2
  assert "No checkpoint in" in _error_line(stderr)


def _load_tiny_config():
  from rahf_jax.demo import load_config

  return load_config(CONFIG, "tiny,multihead")
