"""Fixtures of the reward tests: a tiny trained workdir (a few synthetic steps) and scorers.

The multi-head workdir is trained for real (orbax checkpoint, config.json), so
`Scorer.from_workdir` and the CLI run exactly as for a user's run. The augmented-prompt scorer
uses freshly initialised parameters (its code paths do not depend on training).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "train"))
import train_testlib  # noqa: E402

TRAIN_STEPS = 8
BATCH = 8  # the 8 fake CPU devices' data axis (tests/conftest.py)


def tiny_config(variant: str = "multihead"):
  """The tests' tiny training config, on the shipped demo vocabulary."""
  return train_testlib.train_config(
    variant,
    num_train_steps=TRAIN_STEPS,
    checkpoint_every=TRAIN_STEPS,
    eval_every=0,
    log_every=TRAIN_STEPS,
    best_metric="",
    **{"data.vocabulary": "demo"},
  )


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
  from rahf_jax.train.loop import train_and_evaluate

  path = tmp_path_factory.mktemp("reward_workdir")
  train_and_evaluate(tiny_config(), str(path))
  return str(path)


@pytest.fixture(scope="session")
def scorer(workdir):
  from rahf_jax.reward import Scorer

  return Scorer.from_workdir(workdir, batch_size=BATCH)


@pytest.fixture(scope="session")
def augmented_scorer():
  import jax

  from rahf_jax.inference.predictor import Predictor
  from rahf_jax.inference.tokenizer import load_tokenizer
  from rahf_jax.reward import Scorer
  from rahf_jax.train.loop import setup_training

  setup = setup_training(tiny_config("augmented"))
  params = setup.init_fn(jax.random.PRNGKey(1)).params
  return Scorer(Predictor(setup, params, load_tokenizer("demo")), batch_size=4)
