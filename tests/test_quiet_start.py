"""The command line starts quietly: its own lines first, the libraries' start-up notices left out
unless --verbose or a TF_CPP_* variable asks for them."""

import os
import subprocess
import sys

import pytest

from rahf_jax import quiet_start

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lines these libraries printed on this project's CPU machine (TF 2.21, jax 0.10.2 + libtpu).
NOTICE_LINES = [
  "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
  "I0000 00:00:1796455053.788376    3939 port.cc:153] oneDNN custom operations are on. You may "
  "see slightly different numerical results",
  "I0000 00:00:1796455053.789287    3939 cudart_stub.cc:31] Could not find cuda drivers on your "
  "machine, GPU will not be used.",
  "I0000 00:00:1796455053.838487    3939 cpu_feature_guard.cc:227] This TensorFlow binary is "
  "optimized to use available CPU instructions in performance-critical operations.",
  "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
  "TensorFlow with the appropriate compiler flags.",
  "E0000 00:00:1796455056.936920    3939 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
  "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
  "Failed to find host bounds for accelerator type: WARNING: could not determine TPU accelerator "
  "type, please set env var `TPU_ACCELERATOR_TYPE` manually",
  "WARNING: Logging before InitGoogle() is written to STDERR",
  "E0000 00:00:1796455057.017386    3939 common_lib.cc:554] INVALID_ARGUMENT: Error: unexpected "
  "worker hostname 'WARNING: could not determine TPU worker hostnames or IP addresses' from env",
  "=== Source Location Trace: === ",
  "learning/45eac/tfrc/runtime/libtpu_init_utils.cc:327",
]
OWN_LINES = [
  "rahf-jax eval: error: /x/config.json not found: '/x' is not a training workdir",
  "W1203 12:00:00.000000 1 loop.py:10] step 10: loss is nan",
  "/usr/lib/python3.11/warnings.py:1: UserWarning: something real",
]


def test_notices_are_dropped_and_other_lines_kept():
  text = "\n".join(NOTICE_LINES[:4] + OWN_LINES + NOTICE_LINES[4:]) + "\n"
  assert quiet_start.kept_lines(text) == "\n".join(OWN_LINES) + "\n"


def test_verbose_or_a_tf_logging_variable_turns_the_filter_off():
  assert quiet_start.wants_quiet(False, {"PATH": "/bin"})
  assert not quiet_start.wants_quiet(True, {})
  for name in quiet_start.LOG_ENV_VARS:
    assert not quiet_start.wants_quiet(False, {name: "0"})


def test_a_filtered_subprocess_keeps_its_own_lines(capfd):
  code = "import sys; sys.stderr.write({!r}); sys.stdout.write('out\\n')".format(
    "\n".join([NOTICE_LINES[3], "real problem", NOTICE_LINES[5]]) + "\n"
  )
  quiet_start.run_filtered([sys.executable, "-c", code], quiet=True)
  out, err = capfd.readouterr()
  assert out == "out\n" and err == "real problem\n"
  with pytest.raises(subprocess.CalledProcessError):
    quiet_start.run_filtered([sys.executable, "-c", "import sys; sys.exit(3)"], quiet=True)


def _cli(*args, **env_overrides):
  env = {k: v for k, v in os.environ.items() if k not in quiet_start.LOG_ENV_VARS}
  env.pop("RAHF_DEBUG", None)
  env.update(env_overrides)
  return subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", *args], capture_output=True, text=True, cwd=REPO,
    env=env, timeout=300,
  )  # fmt: skip


@pytest.mark.slow
def test_a_command_prints_only_its_own_lines(tmp_path):
  # `eval` imports TensorFlow and starts JAX before it finds that the workdir is not one.
  missing = tmp_path / "no_run"
  proc = _cli("eval", f"--workdir={missing}")
  assert proc.returncode == 2
  assert proc.stderr.splitlines() == [
    f"rahf-jax eval: error: {missing}/config.json not found: '{missing}' is not a training "
    "workdir; train first with `rahf-jax train --config ... --workdir DIR` (or `rahf-jax "
    "convert` a checkpoint)."
  ]
  # --verbose, or TF's own variable, brings the notices back (oneDNN's, on x86 at least).
  for proc in (_cli("eval", f"--workdir={missing}", "--verbose"),
               _cli("eval", f"--workdir={missing}", TF_CPP_MIN_LOG_LEVEL="0")):  # fmt: skip
    assert proc.returncode == 2
    notices = [line for line in proc.stderr.splitlines() if quiet_start.NOTICE.search(line)]
    assert notices, proc.stderr


@pytest.mark.slow
def test_the_demo_starts_with_its_own_lines(tmp_path):
  code = (
    "import rahf_jax.demo as demo\n"
    "from rahf_jax import cli\n"
    "demo.DEMO_DATA = dict(num_train=8, num_dev=4, num_test=4, image_size=64)\n"
    f"cli.main(['rahf-jax', 'demo', '--data_only', '--out', {str(tmp_path / 'demo')!r}])\n"
  )
  env = {k: v for k, v in os.environ.items() if k not in quiet_start.LOG_ENV_VARS}
  proc = subprocess.run(
    [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    cwd=REPO, env=env, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-3000:]
  lines = [line for line in proc.stdout.splitlines() if line.strip()]
  assert lines[0] == "=== demo: synthetic RichHF-format data", lines[:5]
  assert not [line for line in lines if quiet_start.NOTICE.search(line)]
  assert lines[-1].startswith("data ready: --data_dir=")
