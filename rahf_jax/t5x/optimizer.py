"""The native trainer's optimizer (rahf_jax.train.optimizer) for t5x, from the same config.

AdamW (betas, eps, weight decay and its mask), warmup + cosine schedule, global-norm clipping,
ViT learning-rate multiplier and gradient accumulation all come from the training config that
`rahf_jax.t5x.run_settings.run_config` returns (configs/rahf.py); TRAIN_STEPS sets the
schedule's length.

gin (configs/t5x/models/rahf.gin):
  OPTIMIZER = @rahf_optimizer.adamw()
  rahf_optimizer.adamw:
    run_config = %RUN_CONFIG
    num_train_steps = %TRAIN_STEPS
  trainer.Trainer.learning_rate_fn = @rahf_optimizer.learning_rate_schedule()  # for logging
"""

import optax
from t5x import optimizers

from rahf_jax.t5x import run_settings
from rahf_jax.train import optimizer as rahf_optimizer


def adamw(run_config, num_train_steps: int | None = None) -> optimizers.OptaxWrapper:
  """The native train step's optax chain for `run_config`, wrapped as a t5x optimizer."""
  config = run_settings.train_config(run_config, num_train_steps=num_train_steps)
  return optimizers.OptaxWrapper(rahf_optimizer.make_optimizer(config))


def learning_rate_schedule(run_config, num_train_steps: int | None = None) -> optax.Schedule:
  """The schedule inside `adamw(...)`, for t5x's learning-rate logging."""
  config = run_settings.train_config(run_config, num_train_steps=num_train_steps)
  return rahf_optimizer.make_schedule(config)
