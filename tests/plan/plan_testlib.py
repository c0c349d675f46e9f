"""`rahf-jax plan` run as a user runs it, in its own process (the plan tests' shared helper)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_plan(*args, timeout=600) -> subprocess.CompletedProcess:
  """`python -m rahf_jax.cli plan *args` from the repository root, output captured."""
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # plan sets the platform and device count itself
  return subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", "plan", *args],
    capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
  )  # fmt: skip
