"""The t5x route's run settings, read from the native training config (no t5x import).

The gin files in configs/t5x/ take the model, loss weights, optimizer, schedule, batch sizes,
feature lengths, dropout and periods from the same `get_config(arg)` the native trainer runs
(`configs/rahf.py`), through the functions here:

  RUN_CONFIG = @rahf_settings.run_config()          # configs/rahf.py:<SIZE>,<VARIANT>[,flags]
  rahf_settings.run_config:
    config_file = %CONFIG_FILE                      # 'configs/rahf.py'
    size = %SIZE
    variant = %VARIANT
    flags = %CONFIG_FLAGS                           # e.g. ['reproduction']
    overrides = %CONFIG_OVERRIDES                   # {'loss_weights.heatmap': 10.0, ...}
  TRAIN_STEPS = @rahf_settings.train_steps()        # config.num_train_steps
  BATCH_SIZE = @rahf_settings.batch_size()          # config.batch_size
  ...

`CONFIG_OVERRIDES` takes the dotted training-config keys the native CLI takes as
`--config.<key>=<value>`. The gin macros t5x's run files read (TRAIN_STEPS, BATCH_SIZE,
DROPOUT_RATE, TASK_FEATURE_LENGTHS, EVAL_PERIOD, RANDOM_SEED) default to the config's values and
can be overridden on the command line as in any t5x run; TRAIN_STEPS, DROPOUT_RATE and
MODEL_OVERRIDES are written back into the config the model and optimizer are built from
(`train_config`), so the schedule spans the steps t5x runs and the dropout is the model's.

`with_pretrained` applies the config's pretrained starts (config.init, as
rahf_jax/train/init_weights.py) inside t5x's initialisation of a fresh train state.

`mark_bias` is the adapter's MARK_BIAS (constrained decoding's bias of the `_0` mark): a number,
or the one recorded in a mark_bias.json (MARK_BIAS_RECORD: a native workdir that `rahf-jax
calibrate` ran on, or a t5x model dir that rahf_jax.t5x.calibrate ran on), else 0.

`loss_fn` is the loss the adapter (rahf_jax.t5x.models.RAHFModel) trains on: the network's
forward pass and rahf_jax.train.losses.compute_losses, as in the native train step.
"""

import copy
import importlib.util
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from rahf_jax.inference import mark_bias as mark_bias_lib
from rahf_jax.models import build_model_from_config, get_model_config
from rahf_jax.sharding import workdir_files
from rahf_jax.train import forward, losses

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG_FILE = "configs/rahf.py"


def _resolve(config_file: str) -> str:
  for path in (config_file, os.path.join(REPO_ROOT, config_file)):
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
    f"config file {config_file!r} not found (looked in {os.getcwd()} and {REPO_ROOT}); set the "
    "gin macro CONFIG_FILE to the path of configs/rahf.py."
  )


def load_config(config_file: str, arg: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of an ml_collections config file, as `--config <file>:<arg>` loads it."""
  path = _resolve(config_file)
  spec = importlib.util.spec_from_file_location(f"_rahf_run_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def set_dotted(config: ml_collections.ConfigDict, key: str, value: Any, what: str) -> None:
  """config[a][b][c] = value for key "a.b.c"; a mapping value merges into a mapping field.

  Every field must exist, except below `model.overrides` (its nodes are created; the model
  config checks the names, see `model_config`).
  """
  *parents, leaf = key.split(".")
  node = config
  for depth, p in enumerate(parents):
    if p not in node:
      if parents[:2] != ["model", "overrides"] or depth < 2:
        raise ValueError(f"{what} {key!r}: no field {p!r} in the training config.")
      node[p] = ml_collections.ConfigDict()
    node = node[p]
  if leaf not in node:
    if parents[:2] != ["model", "overrides"]:
      raise ValueError(
        f"{what} {key!r}: no such field in the training config (configs/rahf.py, "
        "rahf_jax/train/default_train_config.py)."
      )
  elif isinstance(node[leaf], ml_collections.ConfigDict) and isinstance(value, Mapping):
    node[leaf].update(value)
    return
  node[leaf] = value


def run_config(
  size: str,
  variant: str,
  flags: Sequence[str] = (),
  overrides: Mapping[str, Any] | None = None,
  config_file: str = DEFAULT_CONFIG_FILE,
) -> ml_collections.ConfigDict:
  """The native training config `<config_file>:<size>,<variant>[,flags]` with `overrides`.

  Args:
    size: a rahf_jax.models.MODEL_SIZES name.
    variant: "multihead" or "augmented".
    flags: get_config's flags ("reproduction", "runlocal").
    overrides: dotted training-config keys and values, as the native CLI's --config.<key>.
    config_file: the ml_collections config file (relative to the working directory or the
      repository root).
  """
  if isinstance(flags, str):
    flags = [f for f in flags.split(",") if f]
  config = load_config(config_file, ",".join([size, variant, *flags]))
  for key, value in (overrides or {}).items():
    set_dotted(config, key, value, "CONFIG_OVERRIDES entry")
  return config


def train_config(
  run_config: ml_collections.ConfigDict,
  *,
  num_train_steps: int | None = None,
  dropout_rate: float | None = None,
  model_overrides: Mapping[str, Any] | None = None,
) -> ml_collections.ConfigDict:
  """A copy of `run_config` with the gin macros t5x owns written back into it.

  Args:
    run_config: from `run_config(...)`.
    num_train_steps: TRAIN_STEPS (the schedule's length); None keeps the config's.
    dropout_rate: DROPOUT_RATE (the T5 encoder/decoder dropout, model field t5.dropout_rate);
      None keeps the config's.
    model_overrides: MODEL_OVERRIDES: dotted model-config keys ("t5.num_heads": 8) merged into
      config.model.overrides (the size's own overrides stay unless named).
  """
  config = copy.deepcopy(run_config)
  if num_train_steps is not None:
    config.num_train_steps = int(num_train_steps)
  if dropout_rate is not None:
    rate = float(dropout_rate)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"DROPOUT_RATE={dropout_rate!r} must be in [0, 1).")
    if rate != _model_dropout_rate(config):  # the config's own rate: nothing to record
      set_dotted(config, "model.overrides.t5.dropout_rate", rate, "DROPOUT_RATE")
  for key, value in (model_overrides or {}).items():
    set_dotted(config, f"model.overrides.{key}", value, "MODEL_OVERRIDES entry")
  return config


def model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The model config the native trainer builds from a training config (every override)."""
  known = get_model_config(config.model.size, config.model.variant).to_dict()
  _check_model_overrides(config.model.get("overrides", {}), known, "")
  model_cfg, _ = build_model_from_config(config)
  return model_cfg


def _check_model_overrides(overrides, known: Mapping, prefix: str) -> None:
  items = overrides.items() if hasattr(overrides, "items") else ()
  for key, value in items:
    if key not in known:
      raise ValueError(
        f"model override {prefix + key!r}: no such field in the model config "
        "(rahf_jax/models/variants.py)."
      )
    if hasattr(value, "items") and isinstance(known[key], Mapping):
      _check_model_overrides(value, known[key], f"{prefix}{key}.")


# The values t5x's run files read from gin macros, from a training config.


def train_steps(run_config: ml_collections.ConfigDict) -> int:
  """TRAIN_STEPS: config.num_train_steps."""
  return int(run_config.num_train_steps)


def batch_size(run_config: ml_collections.ConfigDict) -> int:
  """BATCH_SIZE: config.batch_size (the global train batch)."""
  return int(run_config.batch_size)


def eval_batch_size(run_config: ml_collections.ConfigDict) -> int:
  """The held-out batch size: config.eval_batch_size."""
  return int(run_config.eval_batch_size)


def feature_lengths(run_config: ml_collections.ConfigDict) -> dict[str, int]:
  """TASK_FEATURE_LENGTHS: config.data.prompt_len / target_len."""
  return {"inputs": int(run_config.data.prompt_len), "targets": int(run_config.data.target_len)}


def _model_dropout_rate(config: ml_collections.ConfigDict) -> float:
  return float(model_config(config).t5.dropout_rate)


def dropout_rate(run_config: ml_collections.ConfigDict) -> float:
  """DROPOUT_RATE: the T5 dropout of the config's model (its size's, or the override)."""
  return _model_dropout_rate(run_config)


def seed(run_config: ml_collections.ConfigDict) -> int:
  """RANDOM_SEED and the train data's shuffle seed: config.seed."""
  return int(run_config.seed)


def eval_period(run_config: ml_collections.ConfigDict) -> int:
  """EVAL_PERIOD: config.eval_every."""
  return int(run_config.eval_every)


def checkpoint_period(run_config: ml_collections.ConfigDict) -> int:
  """The checkpoint period: config.checkpoint_every."""
  return int(run_config.checkpoint_every)


def keep_checkpoints(run_config: ml_collections.ConfigDict) -> int:
  """Checkpoints kept: config.keep_checkpoints."""
  return int(run_config.keep_checkpoints)


def vocabulary(run_config: ml_collections.ConfigDict) -> str:
  """The SentencePiece vocabulary name or path: config.data.vocabulary."""
  return str(run_config.data.vocabulary)


def read_mark_bias_record(record: str) -> dict:
  """The mark-bias record `rahf-jax calibrate` or rahf_jax.t5x.calibrate wrote: `record` is its
  mark_bias.json or the folder holding it (rahf_jax.inference.mark_bias)."""
  path = mark_bias_lib.mark_bias_path(record) if os.path.isdir(record) else record
  try:
    with open(path, encoding="utf-8") as f:
      out = json.load(f)
    float(out["mark_bias"])
  except FileNotFoundError as e:
    raise FileNotFoundError(
      f"MARK_BIAS_RECORD: {path} not found; give a native workdir that `rahf-jax calibrate` "
      "ran on (or its mark_bias.json), or set MARK_BIAS to a number."
    ) from e
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"MARK_BIAS_RECORD: {path} is not a mark-bias record ({e}).") from e
  return out


def mark_bias(value: float | None = None, record: str | None = None) -> float:
  """MARK_BIAS: constrained decoding's bias of the `_0` mark's logit (RAHFModel.mark_bias).

  `value` when given; else the bias recorded in `record` (MARK_BIAS_RECORD: a native workdir
  or a t5x model dir, or its mark_bias.json) by `rahf-jax calibrate` or rahf_jax.t5x.calibrate;
  else 0. The record names the parameters it was chosen for (step and params digest); a t5x run
  restores its checkpoint only after the model is built, so that match is not checked here: use
  the record of the parameters the checkpoint holds (rahf_jax.inference.mark_bias.params_digest
  of its params equals the record's).
  """
  if value is not None:
    return float(value)
  if not record:
    return 0.0
  out = read_mark_bias_record(record)
  logging.info(
    "MARK_BIAS %.2f from %s (chosen on %s for the %s checkpoint of step %s, params digest %s)",
    float(out["mark_bias"]), record, out.get("split"), out.get("checkpoint", {}).get("kind"),
    out.get("checkpoint", {}).get("step"), out.get("checkpoint", {}).get("params_digest"),
  )  # fmt: skip
  return float(out["mark_bias"])


def loss_weights(run_config: ml_collections.ConfigDict) -> dict[str, float]:
  """config.loss_weights as a plain dict."""
  return {k: float(v) for k, v in run_config.loss_weights.to_dict().items()}


def heatmap_loss(run_config: ml_collections.ConfigDict) -> str:
  """The per-pixel heatmap loss: config.heatmap_loss ("mse" | "bce"), checked."""
  return losses.heatmap_loss_of(run_config)


def loss_fn(
  module,
  params,
  batch: Mapping[str, Any],
  variant: str,
  weights,
  dropout_rng=None,
  heatmap_loss: str = "mse",
):
  """(loss, terms): the native train step's loss (rahf_jax.train.forward) for t5x's loss_fn.

  Training mode (dropout on) when `dropout_rng` is given, as the native train step; without it
  deterministic, as the native eval step. `heatmap_loss`: the config's (`heatmap_loss_of`).
  """
  return forward.forward_and_losses(
    module, params, batch, variant, dict(weights), dropout_rng, heatmap_loss
  )


# Pretrained starts (config.init.{vit, t5, rahf}, rahf_jax/train/init_weights.py) for t5x.


def _init_groups(config, group_names) -> set[str]:
  """The top-level parameter groups config.init replaces."""
  from rahf_jax.train import init_weights  # noqa: PLC0415

  init = config.get("init", {})
  groups: set[str] = set()
  if init.get("rahf"):
    groups |= set(group_names)
  if init.get("vit"):
    groups.add("vit")
  if init.get("t5"):
    groups |= set(init_weights.T5_GROUPS)
  return groups


def _read_pretrained(config, model_cfg, abstract) -> dict[tuple[str, ...], np.ndarray]:
  """{path: float array} of every parameter config.init loads, read on the host."""
  import flax  # noqa: PLC0415

  from rahf_jax.train import init_weights  # noqa: PLC0415

  init = config.get("init", {})
  loaded: dict[tuple[str, ...], np.ndarray] = {}
  if init.get("rahf") and init_weights.is_workdir(init.rahf):
    target = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)
    params, step = workdir_files.restore_params(init.rahf, target)
    loaded.update(flax.traverse_util.flatten_dict(jax.device_get(params)))
    logging.info("init.rahf: params of step %d of %s", step, init.rahf)
  host, _ = init_weights.host_params(config, model_cfg, abstract)
  for path, value in flax.traverse_util.flatten_dict(host).items():
    if isinstance(value, np.ndarray):
      loaded[path] = value
  return loaded


def with_pretrained(config, model_cfg, params):
  """`params` (inside t5x's jitted init) with config.init's groups read by host callbacks.

  Each loaded leaf is a `jax.pure_callback` that returns the file's value when the init runs,
  so no weights become constants of the compiled init, and nothing is read while t5x only
  traces it for shapes or restores a checkpoint instead. Files are read once per process.
  """
  import flax  # noqa: PLC0415

  groups = _init_groups(config, params.keys())
  if not groups:
    return params
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  cache: dict[str, dict] = {}

  def read_all():
    if "params" not in cache:
      cache["params"] = _read_pretrained(config, model_cfg, abstract)
      for group in sorted(params):
        logging.info("init: %-32s %s", group, "loaded" if group in groups else "random")
    return cache["params"]

  def leaf(path, value):
    def fetch():
      loaded = read_all()
      if path not in loaded:
        raise ValueError(f"pretrained start: no value for parameter {'/'.join(path)}.")
      return np.asarray(loaded[path], value.dtype)

    return jax.pure_callback(fetch, jax.ShapeDtypeStruct(value.shape, value.dtype))

  flat = flax.traverse_util.flatten_dict(dict(params))
  flat = {p: leaf(p, v) if p[0] in groups else v for p, v in flat.items()}
  return flax.traverse_util.unflatten_dict(flat)


def merge_overrides(first: Mapping[str, Any], second: Mapping[str, Any] | None) -> dict:
  """`first` updated with `second` (two CONFIG_OVERRIDES dicts; gin has no dict merge)."""
  return {**dict(first), **dict(second or {})}
