"""The README's "Use RAHF as a reward" Python examples, then docs/reward.md's dense-reward one that
continues them, run as written (only WORKDIR is changed)."""

import os
import re

import jax
import numpy as np
import pytest

# Runs the README's reward examples on a trained model (`make test`; not `make test-fast`).
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTION = "## Use RAHF as a reward"
WORKDIR_LINE = 'WORKDIR = "demo_out/workdir"'


def _python_blocks(path: str, section_title: str) -> list[str]:
  """The ```python blocks of one section of a markdown file, in order."""
  with open(os.path.join(REPO, path), encoding="utf-8") as f:
    text = f.read()
  start = text.index(section_title)
  end = text.find("\n## ", start + len(section_title))
  section = text[start : end if end > 0 else len(text)]
  return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def readme_reward_snippets() -> list[str]:
  """The README reward section's blocks, then docs/reward.md's dense-reward block."""
  return _python_blocks("README.md", SECTION) + _python_blocks(
    "docs/reward.md", "## The dense reward"
  )


def test_readme_reward_examples_run(workdir):
  snippets = readme_reward_snippets()
  assert len(snippets) == 3 and WORKDIR_LINE in snippets[0]
  code = "\n".join(snippets).replace(WORKDIR_LINE, f"WORKDIR = {workdir!r}")
  ns: dict = {}
  exec(compile(code, "README.md", "exec"), ns)  # noqa: S102

  results, images = ns["results"], ns["images"]
  assert len(results) == 4 and ns["r"].implausibility_heatmap.shape == (96, 128)
  assert isinstance(ns["r"].misaligned_words, list)
  assert ns["best"].index == int(np.argmax([x.overall for x in results]))
  mixes = [x.plausibility + x.alignment for x in results]
  assert [c.index for c in ns["ranked"]] == sorted(range(4), key=lambda i: -mixes[i])
  assert ns["mask"].shape == (96, 128) and ns["mask"].dtype == bool
  # The toy generator's reward after the ten steps is above its first images' reward.
  start = ns["reward"](ns["scorer"].params, ns["generate"](ns["g"]), ns["prompt_ids"])
  assert np.isfinite(float(ns["mean_reward"])) and len(images) == 4
  w0 = 0.01 * jax.random.normal(jax.random.key(0), (8, 32 * 32 * 3))  # the snippet's start
  first_g = {"w": w0, "b": np.zeros(3072, np.float32)}
  before = ns["reward"](ns["scorer"].params, ns["generate"](first_g), ns["prompt_ids"])
  assert float(start.mean()) > float(before.mean())
  # The dense example: its ten steps raise the map's mean from where they started (the scalar
  # example's end), and the map is R * (1 - implausibility) of the Scorer at 32 x 32.
  params, dense, generate = ns["scorer"].params, ns["dense"], ns["generate"]
  first = dense(params, generate(ns["g"]), ns["prompt_ids"])
  last = dense(params, generate(ns["g_dense"]), ns["prompt_ids"])
  assert first.shape == (4, 32, 32)
  assert float(last.mean()) > float(first.mean()) + 1e-3, (float(first.mean()), float(last.mean()))
  assert abs(float(ns["mean_dense_reward"]) - float(last.mean())) < 0.05
