"""`rahf-jax <command> --help`: the command's own flags, one line each, and a runnable example."""

import os
import re
import subprocess
import sys

import pytest
from absl import flags

from rahf_jax import cli, cli_help

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _help(capsys, *args) -> tuple[int, str]:
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["rahf-jax", *args])
  return exit_info.value.code, capsys.readouterr().out


def _listed(text: str) -> set[str]:
  """The flags a help text lists (the `  --name ...` lines)."""
  return set(re.findall(r"^  --([\w.<>]+)", text, flags=re.M))


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_each_command_lists_its_own_flags_and_an_example(command, capsys):
  code, text = _help(capsys, command, "--help")
  assert code == 0
  assert text.startswith(f"usage: rahf-jax {command} ")
  assert "Try --helpfull" not in text and "USAGE: rahf-jax [flags]" not in text
  own = {name for name, _, _ in cli_help.COMMANDS[command].flags}
  assert _listed(text) == own | {"verbose", "help"}
  for line in text.splitlines():
    if line.startswith("  --"):  # one line per flag, with its meaning
      assert len(line.split(None, 2)) >= 2, line
  example = text.split("example:\n", 1)[1].strip()
  assert example.startswith(f"rahf-jax {command}")
  used = set(re.findall(r"--(\w+)", example))
  assert used and used <= own, (used, own)
  assert all(name in flags.FLAGS for name in own if "<" not in name)


def test_flags_meanings_and_defaults(capsys):
  _, score = _help(capsys, "score", "-h")
  assert re.search(r"^  --batch_size N +pairs per model call.*\(default: 16\)$", score, re.M)
  assert "--topology" not in score and "--protocol" not in score
  _, plan = _help(capsys, "plan", "--help")
  assert (
    "rahf-jax plan --config configs/rahf.py:L16_t5base_384,multihead --topology v5e:8x8" in plan
  )
  assert {"topology", "steps", "save_executables", "config", "out"} <= _listed(plan)
  _, serve = _help(capsys, "serve", "--help")
  assert re.search(r"^  --max_queue N +pairs waiting.*\(default: 256\)$", serve, re.M)
  assert re.search(r"^  --host ADDR +.*\(default: 127\.0\.0\.1\)$", serve, re.M)
  assert "--manifest" not in serve
  _, calibrate = _help(capsys, "help", "calibrate")  # `rahf-jax help calibrate`
  assert calibrate.startswith("usage: rahf-jax calibrate")


def test_every_flag_of_the_cli_is_in_some_command_help():
  listed = {name for c in cli_help.COMMANDS.values() for name, _, _ in c.flags}
  by_module = flags.FLAGS.flags_by_module_dict()
  defined = {
    f.name
    for module in ("rahf_jax.cli", "rahf_jax.reward.score_cli", "rahf_jax.reward.serve_cli")
    for f in by_module.get(module, [])
  }
  assert defined, sorted(by_module)
  assert defined - {"verbose"} <= listed, defined - listed


def test_overview_lists_every_command(capsys):
  code, text = _help(capsys, "--help")
  assert code == 0
  for command in cli.COMMANDS:
    assert re.search(rf"^  {command} +\w", text, re.M), command


def test_help_from_the_console_script():
  proc = subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", "predict", "--help"],
    capture_output=True, text=True, cwd=REPO, timeout=120,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("usage: rahf-jax predict --workdir DIR --image PATH")
  assert "--image PATH" in proc.stdout and "example:\n  rahf-jax predict" in proc.stdout
