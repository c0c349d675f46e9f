"""The constrained decoder's mark bias for a t5x checkpoint, as `rahf-jax calibrate` chooses it.

  python -m rahf_jax.t5x.calibrate --checkpoint=$MODEL_DIR/checkpoint_1500 --size=tiny \
    --variant=multihead [--split=dev] [--data_dir=D] [--config_flags=reproduction]

restores the parameters of the t5x checkpoint (its `state/` folder's `target`, read with orbax;
no t5x needed), decodes the split's misaligned words at each candidate bias with the native
Predictor and rahf_jax.evaluation.mark_calibration (the same copy plan and decoder as the t5x
adapter), and writes the best bias to `<MODEL_DIR>/mark_bias.json` (`--out` another folder) for
those parameters: the checkpoint's step and their params digest (rahf_jax.inference.mark_bias).
Then

  python -m t5x.eval ... --gin.MARK_BIAS_RECORD=\"$MODEL_DIR\"

decodes with it. The config (`--size`, `--variant`, `--config_flags`) must be the run's
(configs/rahf.py, as the gin model file's SIZE, VARIANT and CONFIG_FLAGS).
"""

import logging
import os
import re
from collections.abc import Sequence

import jax
import numpy as np

from rahf_jax.evaluation import mark_calibration
from rahf_jax.inference import mark_bias as mark_bias_lib
from rahf_jax.inference.predictor import InferenceSetup, Predictor, inference_dtype
from rahf_jax.inference.tokenizer import load_tokenizer
from rahf_jax.models import build_model_from_config
from rahf_jax.t5x import run_settings

_STEP_RE = re.compile(r"checkpoint_(\d+)/*$")


def restore_t5x_params(checkpoint: str, abstract_params) -> tuple[dict, int]:
  """(params, step) of a t5x checkpoint folder (`checkpoint_<step>`), in `abstract_params`'
  dtypes and shardings; a tree of another shape (another size, variant or MODEL_OVERRIDES) is
  refused."""
  import orbax.checkpoint as ocp  # noqa: PLC0415

  state = os.path.join(checkpoint, "state")
  if not os.path.isdir(state):
    raise FileNotFoundError(f"{state} not found: give a t5x checkpoint folder (checkpoint_<step>).")
  target = ocp.PyTreeCheckpointer().restore(state)["target"]
  want = jax.tree_util.tree_structure(abstract_params)
  if jax.tree_util.tree_structure(target) != want or any(
    np.shape(x) != a.shape
    for x, a in zip(jax.tree.leaves(target), jax.tree.leaves(abstract_params), strict=True)
  ):
    raise ValueError(
      f"{checkpoint} holds parameters of another model than the config's; pass the run's "
      "--size, --variant and --config_flags."
    )
  params = jax.tree.map(
    lambda x, a: jax.device_put(np.asarray(x, a.dtype), a.sharding), target, abstract_params
  )
  match = _STEP_RE.search(checkpoint)
  return params, int(match.group(1)) if match else -1


def calibrate_checkpoint(
  checkpoint: str,
  run_config,
  split: str = "dev",
  data_dir: str | None = None,
  out: str | None = None,
  candidates: Sequence[float] = mark_calibration.CANDIDATES,
) -> dict:
  """Chooses the mark bias of a t5x checkpoint's parameters on `split` (mark_calibration) and
  writes the record to `out` (default: the checkpoint's model dir); returns the record."""
  config = run_config.copy_and_resolve_references()
  if data_dir:
    config.data.data_dir = data_dir
  dtype = inference_dtype(build_model_from_config(config)[0].dtype)
  setup = InferenceSetup.from_config(config, dtype)
  params, step = restore_t5x_params(checkpoint, setup.abstract_params)
  tokenizer = load_tokenizer(config.data.vocabulary)
  predictor = Predictor(setup, params, tokenizer, "constrained", 0.0, step=step,
                        checkpoint_kind="t5x")  # fmt: skip
  by_bias, n = mark_calibration.f1_by_mark_bias(predictor, split, data_dir, candidates)
  record = {
    "mark_bias": mark_calibration.choose_mark_bias(by_bias),
    "checkpoint": {
      "kind": "t5x",
      "path": os.path.abspath(checkpoint),
      "step": step,
      "params_digest": predictor.params_digest(),
    },
    "split": split,
    "num_examples": n,
    "f1_by_bias": {str(b): m["f1"] for b, m in by_bias.items()},
    "f1_gt_positive_by_bias": {str(b): m["f1_gt_positive"] for b, m in by_bias.items()},
  }
  out = out or os.path.dirname(os.path.abspath(checkpoint).rstrip("/"))
  os.makedirs(out, exist_ok=True)
  path = mark_bias_lib.write_mark_bias(out, record)
  logging.info("mark bias %.1f (F1 on %s: %s); wrote %s", record["mark_bias"], split,
               record["f1_by_bias"][str(record["mark_bias"])], path)  # fmt: skip
  return record


def main(argv):
  del argv
  from absl import flags  # noqa: PLC0415

  f = flags.FLAGS
  config = run_settings.run_config(f.size, f.variant, f.config_flags or ())
  calibrate_checkpoint(f.checkpoint, config, f.split, f.data_dir, f.out)


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("checkpoint", None, "a t5x checkpoint folder, MODEL_DIR/checkpoint_<step>")
  flags.DEFINE_string("size", None, "the run's model size (gin SIZE), e.g. tiny")
  flags.DEFINE_string("variant", None, "multihead or augmented (gin VARIANT)")
  flags.DEFINE_list("config_flags", [], "get_config flags (gin CONFIG_FLAGS), e.g. reproduction")
  flags.DEFINE_string("split", "dev", "the held-out split to choose the bias on")
  flags.DEFINE_string("data_dir", None, "TFDS data dir holding richhf18k (default: the config's)")
  flags.DEFINE_string("out", None, "folder of mark_bias.json (default: the checkpoint's parent)")
  flags.mark_flags_as_required(["checkpoint", "size", "variant"])
  app.run(main)
