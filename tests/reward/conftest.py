"""Fixtures of the reward tests: the tests' tiny trained run (tests/shared_runs.py) and scorers.

The multi-head run is trained for real (orbax checkpoint, config.json), so `Scorer.from_workdir`
and the CLI run exactly as for a user's run. The augmented-prompt scorer uses random
parameters (its code paths do not depend on training).
"""

import pytest
import shared_runs

BATCH = 8  # the 8 fake CPU devices' data axis (tests/conftest.py)


@pytest.fixture(scope="session")
def workdir():
  return shared_runs.tiny_run()


@pytest.fixture(scope="session")
def scorer(workdir):
  from rahf_jax.reward import Scorer

  return Scorer.from_workdir(workdir, batch_size=BATCH)


@pytest.fixture(scope="session")
def augmented_scorer():
  import jax
  from host_params import random_like

  from rahf_jax.inference.predictor import Predictor
  from rahf_jax.inference.tokenizer import load_tokenizer
  from rahf_jax.reward import Scorer
  from rahf_jax.train.loop import setup_training

  setup = setup_training(shared_runs.tiny_config("augmented"))
  # Random values on the params' shardings, made on the host: an init would be one more program
  # to compile, for values the tests compare only with themselves.
  params = jax.device_put(random_like(setup.abstract_state.params, seed=1),
                          setup.state_shardings.params)  # fmt: skip
  return Scorer(Predictor(setup, params, load_tokenizer("demo")), batch_size=4)
