"""Our optimizer (rahf_jax.train.optimizer: AdamW, warmup + cosine, clipping) for t5x.

gin:
  OPTIMIZER = @rahf_optimizer.adamw()
  rahf_optimizer.adamw.overrides = {'learning_rate': 2e-5, 'num_train_steps': %TRAIN_STEPS}
  trainer.Trainer.learning_rate_fn = @rahf_optimizer.learning_rate_schedule()  # for logging
"""

from collections.abc import Mapping
from typing import Any

import optax
from t5x import optimizers

from rahf_jax.train import optimizer as rahf_optimizer
from rahf_jax.train.default_train_config import train_config_defaults


def _config(overrides: Mapping[str, Any] | None):
  config = train_config_defaults()
  for key, value in (overrides or {}).items():
    if key not in config:
      raise ValueError(
        f"optimizer override {key!r} is not a training-config field; see "
        "rahf_jax/train/default_train_config.py."
      )
    config[key] = value
  return config


def adamw(overrides: Mapping[str, Any] | None = None) -> optimizers.OptaxWrapper:
  """The trainer's optax chain (same fields as its config) wrapped as a t5x optimizer."""
  return optimizers.OptaxWrapper(rahf_optimizer.make_optimizer(_config(overrides)))


def learning_rate_schedule(overrides: Mapping[str, Any] | None = None) -> optax.Schedule:
  """The schedule inside `adamw(overrides)`, for t5x's learning-rate logging."""
  return rahf_optimizer.make_schedule(_config(overrides))
