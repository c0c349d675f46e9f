"""The README's Python API, reward and `rahf-jax score` examples decode with the calibrated bias.

A copy of the tests' tiny run (tests/shared_runs.py), whose best checkpoint is, as in the demo,
also its newest one: `calibrate_workdir` records a mark bias of 30 for it (the only candidate: at
30 the decoder marks every prompt word, at 0 it does not, so the decoded words show which bias was
used).
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import shared_runs

# Trains (once per session) and calibrates a model first (`make test`; not `make test-fast`).
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIAS = 30.0
PROMPT = "a red circle and a blue square"


def _readme_section(title: str) -> str:
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    text = f.read()
  start = text.index(title)
  end = text.find("\n## ", start + len(title))
  return text[start : end if end > 0 else len(text)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  from rahf_jax.evaluation.mark_calibration import calibrate_workdir
  from rahf_jax.sharding.workdir_files import checkpoint_steps

  path = shared_runs.copy_of(shared_runs.tiny_run(), tmp_path_factory.mktemp("calibrated_run"))
  assert checkpoint_steps(path) == checkpoint_steps(path, best=True) == [shared_runs.STEPS]
  record = calibrate_workdir(path, "dev", candidates=(BIAS,))  # the default: the best checkpoint
  assert record["checkpoint"]["kind"] == "best" and record["mark_bias"] == BIAS
  return path


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  return [rng.integers(0, 256, (96, 128, 3), np.uint8) for _ in range(2)]


@pytest.fixture(scope="module")
def words_at(workdir, images):
  """{bias: the misaligned prompt words of `images` decoded at that bias}."""
  from rahf_jax.inference.predictor import Predictor

  out = {}
  for bias in (0.0, BIAS):
    predictor = Predictor.from_workdir(workdir, mark_bias=bias)
    out[bias] = [p["misaligned_prompt_words"] for p in predictor.predict(images, [PROMPT] * 2)]
  assert out[BIAS] != out[0.0]  # else the words could not tell which bias was used
  return out


def test_the_python_api_example_uses_the_calibrated_bias(workdir, images, words_at, caplog):
  (snippet,) = re.findall(r"```python\n(.*?)```", _readme_section("## Python API"), flags=re.S)
  assert 'Predictor.from_workdir("demo_out/workdir")' in snippet
  ns = {"image_uint8_hw3": images[0]}
  exec(compile(snippet.replace("demo_out/workdir", workdir), "README.md", "exec"), ns)  # noqa: S102
  assert ns["predictor"].mark_bias == BIAS and ns["predictor"].checkpoint_kind == "best"
  assert ns["pred"]["misaligned_prompt_words"] == words_at[BIAS][0]
  assert "was chosen for other parameters" not in caplog.text


def test_the_newest_checkpoint_of_the_same_parameters_uses_it_too(workdir):
  from rahf_jax.inference.predictor import Predictor

  newest = Predictor.from_workdir(workdir, best=False)
  assert newest.checkpoint_kind == "newest" and newest.step == shared_runs.STEPS
  assert newest.mark_bias == BIAS


def test_the_reward_example_uses_the_calibrated_bias(workdir, images, words_at):
  snippet = re.findall(r"```python\n(.*?)```", _readme_section("## Use RAHF as a reward"), re.S)[0]
  code = snippet.replace('WORKDIR = "demo_out/workdir"', f"WORKDIR = {workdir!r}")
  ns: dict = {}
  exec(compile(code, "README.md", "exec"), ns)  # noqa: S102
  assert ns["scorer"].predictor.mark_bias == BIAS
  words = [r.misaligned_words for r in ns["scorer"].score(images, PROMPT, words=True)]
  assert words == words_at[BIAS]


def test_the_score_command_example_uses_the_calibrated_bias(workdir, images, words_at, tmp_path):
  from PIL import Image

  (line,) = [
    ln for ln in _readme_section("## Use RAHF as a reward").splitlines()
    if ln.startswith("rahf-jax score") and "--manifest" in ln
  ]  # fmt: skip
  with open(tmp_path / "pairs.jsonl", "w", encoding="utf-8") as f:
    for i, image in enumerate(images):
      Image.fromarray(image).save(tmp_path / f"{i}.png")
      f.write(json.dumps({"image": str(tmp_path / f"{i}.png"), "prompt": PROMPT}) + "\n")
  args = line.replace("demo_out/workdir", workdir).split()[1:]
  proc = subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", *args], capture_output=True, text=True,
    cwd=tmp_path, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "was chosen for other parameters" not in proc.stderr
  with open(tmp_path / "results.jsonl", encoding="utf-8") as f:
    rows = [json.loads(x) for x in f]
  assert [r["misaligned_words"] for r in rows] == words_at[BIAS]
