"""Shared helpers for the training tests: a very small RAHF config and a training config."""

import ml_collections

from rahf_jax import models
from rahf_jax.train.default_train_config import train_config_defaults

# Shrinks the registered "test" model further (one layer each, narrow heads, float32 compute)
# so that the train step compiles quickly on a 2-core CPU.
MODEL_OVERRIDES = {
  "dtype": "float32",
  "vit": {"depth": 1},
  "t5": {"num_encoder_layers": 1, "num_decoder_layers": 1},
  "heatmap_head": {"pre_convs": (8, 8), "up_channels": (8, 8), "final_convs": (8,)},
  "score_head": {"convs": (8,), "dense": (8,)},
}
PROMPT_LEN, TARGET_LEN = 12, 10


def model_config(variant: str = "multihead") -> ml_collections.ConfigDict:
  """The tiny model config with MODEL_OVERRIDES applied."""
  c = models.get_model_config("test", variant)
  c.update(MODEL_OVERRIDES)
  return c


def train_config(variant: str = "multihead", **overrides) -> ml_collections.ConfigDict:
  """A small synthetic-data training config (override fields by keyword, dots for nesting)."""
  c = train_config_defaults()
  c.model.size = "test"
  c.model.variant = variant
  c.model.overrides = ml_collections.ConfigDict(MODEL_OVERRIDES)
  c.learning_rate, c.warmup_steps, c.end_lr, c.weight_decay = 3e-3, 2, 1e-4, 1e-4
  c.num_train_steps = 16
  c.batch_size = c.eval_batch_size = 8
  c.log_every, c.checkpoint_every, c.eval_every = 4, 4, 8
  c.keep_checkpoints = 2
  c.data.source = "synthetic"
  c.data.prompt_len, c.data.target_len = PROMPT_LEN, TARGET_LEN
  c.data.num_synthetic_batches = 2
  c.num_eval_batches = 1
  c.update_from_flattened_dict(overrides)
  return c


# The loop tests' runs (test_loop.py, test_killed_runs.py): one schedule and model, so both files
# train with the same compiled init and train step.
LOOP_STEPS = 24
LOOP_BATCHES = 3


def loop_config(**overrides) -> ml_collections.ConfigDict:
  """train_config for a LOOP_STEPS-step schedule cycling LOOP_BATCHES synthetic batches, with T5
  dropout 0.1 and the loss logged every 4 steps (override fields as in train_config)."""
  base = {
    "num_train_steps": LOOP_STEPS,
    "log_every": 4,
    "data.num_synthetic_batches": LOOP_BATCHES,
    "model.overrides.t5.dropout_rate": 0.1,
  }
  return train_config(**(base | overrides))
