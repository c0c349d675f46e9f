"""train_and_evaluate end to end on synthetic batches: learning, resume, NaN stop, best kept.

The runs cycle 3 distinct batches and use T5 dropout 0.1, and the resume tests stop at a step
that is not a multiple of the batch count: a resume that restarted the data stream at batch 0,
or drew its dropout masks from another key, would train on other batches or masks and miss the
uninterrupted run's parameters.
"""

import glob
import os

import jax
import numpy as np
import pytest
import train_testlib

from rahf_jax.train import input_batches, loop
from rahf_jax.train.checkpointing import Checkpointer

STEPS = train_testlib.LOOP_STEPS
NUM_BATCHES = train_testlib.LOOP_BATCHES
RESUME_AT = 13  # not a multiple of NUM_BATCHES: the stream resumes mid-cycle


def _config(**kw):
  base = {"checkpoint_every": 4, "eval_every": 8, "keep_checkpoints": 2,
          "best_metric": "dev/loss", "best_mode": "min"}  # fmt: skip
  return train_testlib.loop_config(**(base | kw))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  calls = []

  def eval_fn(state, step):
    calls.append(step)
    return {"hook_step": float(step), "dev/hook_params": float(np.asarray(state.step))}

  result = loop.train_and_evaluate(_config(), workdir, eval_fn=eval_fn)
  result["state"] = jax.device_get(result["state"])
  return workdir, result, calls


@pytest.mark.slow
def test_loss_falls_and_eval_runs(full_run):
  workdir, result, calls = full_run
  losses = np.array([result["train_losses"][s] for s in range(1, STEPS + 1)])
  assert np.all(np.isfinite(losses))
  # 3 batches and dropout: the last three steps' loss is 0.67 of the first three's (measured);
  # a run that does not learn stays near 1.
  assert losses[-3:].mean() < 0.75 * losses[:3].mean(), losses
  assert int(result["state"].step) == STEPS and result["num_params"] > 1000
  assert sorted(result["eval"]) == [8, 16, 24] and calls == [8, 16, 24]
  dev = result["eval"][24]
  for key in ("dev/loss", "dev/heatmap_loss", "dev/score_loss", "dev/text_loss"):
    assert np.isfinite(dev[key]), key
  assert dev["dev/hook_step"] == 24.0 and dev["dev/hook_params"] == 24.0
  assert dev["dev/loss"] < result["eval"][8]["dev/loss"] * 1.05
  # Best checkpoint: the evaluation with the lowest dev loss; keep-2 periodic checkpoints.
  ckpt = Checkpointer(workdir, keep=2, best_metric="dev/loss")
  best_step = min(result["eval"], key=lambda s: result["eval"][s]["dev/loss"])
  assert ckpt.best.latest_step() == best_step
  assert ckpt.best_value == pytest.approx(result["eval"][best_step]["dev/loss"])
  assert ckpt.periodic.all_steps() == [20, 24]
  ckpt.close()
  assert os.path.exists(os.path.join(workdir, "config.json"))
  assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))


@pytest.mark.slow
def test_resume_equals_uninterrupted(full_run, tmp_path):
  _, full, _ = full_run
  workdir = str(tmp_path / "resumed")
  first = loop.train_and_evaluate(_config(), workdir, stop_at_step=RESUME_AT)
  assert first["start_step"] == 0 and int(first["state"].step) == RESUME_AT
  second = loop.train_and_evaluate(_config(), workdir)
  assert second["start_step"] == RESUME_AT and RESUME_AT % NUM_BATCHES != 0
  for s in range(RESUME_AT + 1, STEPS + 1):
    np.testing.assert_allclose(second["train_losses"][s], full["train_losses"][s], rtol=1e-6)
  final = jax.device_get(second["state"])
  for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(full["state"]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(
    second["eval"][24]["dev/loss"], full["eval"][24]["dev/loss"], rtol=1e-6
  )


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(full_run, tmp_path, monkeypatch):
  real = input_batches.train_batches

  def poisoned(config, model_config, start_batch=0):
    for t, batch in enumerate(real(config, model_config, start_batch), start=start_batch):
      if t == 5:  # the batch of step 6
        batch = dict(batch, image=np.full_like(batch["image"], np.nan))
      yield batch

  monkeypatch.setattr(input_batches, "train_batches", poisoned)
  workdir = str(tmp_path / "nan")
  with pytest.raises(
    loop.NonFiniteLossError, match=r"nan at step 6\. The last good checkpoint is step 4"
  ):
    loop.train_and_evaluate(_config(), workdir)
  ckpt = Checkpointer(workdir, keep=2)
  assert ckpt.periodic.all_steps() == [4]
  setup = loop.setup_training(_config())
  state, meta = ckpt.restore(setup.abstract_state)
  ckpt.close()
  assert meta["step"] == 4
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))


@pytest.mark.slow
def test_augmented_variant_learns(tmp_path):
  config = train_testlib.train_config(
    "augmented", num_train_steps=16, eval_every=16, checkpoint_every=16, best_metric=""
  )
  result = loop.train_and_evaluate(config, str(tmp_path))
  losses = np.array([result["train_losses"][s] for s in range(1, 17)])
  assert np.all(np.isfinite(losses))
  assert losses[-3:].mean() < 0.7 * losses[:3].mean(), losses
  assert np.isfinite(result["eval"][16]["dev/loss"])


def test_bad_config_values_are_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="logical_rules 'nope'"):
    loop.setup_training(train_testlib.train_config(logical_rules="nope"))
  with pytest.raises(ValueError, match="batch_size=6 is not divisible"):
    loop.setup_training(train_testlib.train_config(batch_size=6))
  with pytest.raises(ValueError, match=r"heatmap_loss='l1' is unknown; use one of \('mse', "):
    loop.setup_training(train_testlib.train_config(heatmap_loss="l1"))
  with pytest.raises(ValueError, match="data.source must be"):
    next(input_batches.train_batches(train_testlib.train_config(**{"data.source": "x"}), None))


def _seqio_fakes():
  """tests/data/seqio_fakes.py (the data room's hand-made source), loaded by path."""
  import importlib.util

  path = os.path.join(os.path.dirname(__file__), os.pardir, "data", "seqio_fakes.py")
  spec = importlib.util.spec_from_file_location("seqio_fakes_for_train", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_resume_equals_uninterrupted_on_the_seqio_pipeline(tmp_path):
  pytest.importorskip("seqio")
  from rahf_jax.data import tasks, vocab

  mc = train_testlib.model_config()
  names = tasks.register_tasks(
    data_dir=None, image_size=mc.image_size, heatmap_size=mc.heatmap_size,
    vocabulary=vocab.demo_vocabulary(), suffix="_train_loop_test",
    source=_seqio_fakes().fake_source(),
  )  # fmt: skip
  # The other tests' config (its schedule spans STEPS), stopped at step 6 before any evaluation:
  # the same compiled train step as theirs, only the data differs.
  config = _config()
  config.data.source = "tfds"
  config.data.task_name = names["multihead"]
  full = loop.train_and_evaluate(config, str(tmp_path / "full"), stop_at_step=6)
  loop.train_and_evaluate(config, str(tmp_path / "resumed"), stop_at_step=3)
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"), stop_at_step=6)
  assert resumed["start_step"] == 3 and int(resumed["state"].step) == 6
  assert not full["eval"] and not resumed["eval"]
  for s in range(4, 7):
    np.testing.assert_allclose(resumed["train_losses"][s], full["train_losses"][s], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(resumed["state"]), jax.tree.leaves(full["state"]), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
