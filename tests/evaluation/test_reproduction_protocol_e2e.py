"""`--protocol reproduction` end to end on the tests' tiny trained run (synthetic data, CPU).

The heatmap MSE (all) it reports is checked against the reproduction's definition computed
here directly: the TFDS uint8 maps resized with PIL bilinear and / 255, `nn.MSELoss`-style
means over consecutive batches, their mean.
"""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from rahf_jax import features as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import shared_runs  # noqa: E402
from data_testlib import build_synthetic_richhf18k  # noqa: E402

pytestmark = pytest.mark.slow

BATCH = 5  # the reproduction's batch size for this test (12 test examples: 5, 5, 2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """root: the synthetic RichHF build (root/tfds, 12 test examples) and, in root/run, a copy of
  the tests' tiny run (tests/shared_runs.py) set to read that build. The protocol is about the
  metrics' definitions, not the model: any trained run will do (the input pipeline resizes
  the build's images to the model's size)."""
  root = tmp_path_factory.mktemp("reproduction_eval")
  sizes = dict(num_train=16, num_dev=8, num_test=12, image_size=64, rows_per_group=16, seed=3)
  data_dir = build_synthetic_richhf18k(str(root), **sizes)
  updates = {"data.source": "tfds", "data.data_dir": data_dir}
  shared_runs.copy_of(shared_runs.tiny_run(), root, name="run", config_updates=updates)
  return root


def _tfds_test_examples(data_dir):
  import tensorflow_datasets as tfds

  ds = tfds.builder("richhf18k", data_dir=str(data_dir)).as_dataset(split="test")
  return list(tfds.as_numpy(ds))


def test_reproduction_protocol_end_to_end(workdir, monkeypatch):
  from rahf_jax.evaluation import evaluator, protocols
  from rahf_jax.inference.predictor import Predictor

  monkeypatch.setattr(protocols, "REPRODUCTION_BATCH_SIZE", BATCH)
  predictor = Predictor.from_workdir(str(workdir / "run"))
  metrics, collected = evaluator.evaluate(predictor, "test", protocol=protocols.REPRODUCTION)
  assert metrics["protocol"] == protocols.REPRODUCTION

  # The same predictions, paired with the TFDS examples by their four scores.
  examples = {tuple(float(ex[s]) for s in F.SCORE_TYPES): ex for ex in _tfds_test_examples(
    workdir / "tfds")}  # fmt: skip
  refs = collected.ref
  keys = [tuple(float(refs[s][i]) for s in F.SCORE_TYPES) for i in range(len(refs["overall"]))]
  assert len(keys) == len(examples) == 12 and set(keys) == set(examples)
  for h in F.HEATMAP_TYPES:
    preds = np.asarray(collected.pred[h], np.float64)
    size = preds.shape[1:]
    gts = []
    for key in keys:
      m = np.asarray(examples[key][f"heatmap_{h}"])[..., 0]
      gts.append(np.asarray(Image.fromarray(m).resize(size[::-1], Image.BILINEAR)) / 255.0)
    gts = np.asarray(gts)
    per_map = ((preds - gts) ** 2).mean(axis=(1, 2))
    batch_means = [((preds[i : i + BATCH] - gts[i : i + BATCH]) ** 2).mean() for i in (0, 5, 10)]
    ours = metrics["heatmaps"][h]
    assert ours["mse_all"] == pytest.approx(np.mean(batch_means), rel=1e-5)
    assert ours["mse_all"] != pytest.approx(per_map.mean(), rel=1e-9)
    gt0 = gts.reshape(12, -1).sum(axis=1) == 0
    if gt0.any():
      assert ours["mse_gt0"] == pytest.approx(per_map[gt0].mean(), rel=1e-5)
  # Words: every example, against the labelled prompt made from the stored words and labels.
  for key, ref in zip(keys, refs[F.WORDS_TYPE], strict=True):
    ex = examples[key]
    assert ref == protocols.labelled_prompt(list(ex["words"]), list(ex["word_labels"]))
  assert metrics["words"]["num_examples"] == 12


def test_cli_writes_the_protocol(workdir):
  import subprocess
  import sys

  out = workdir / "eval_reproduction"
  proc = subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", "eval", f"--workdir={workdir / 'run'}",
     "--split=test", "--protocol=reproduction", f"--out={out}"],
    capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["protocol"] == "reproduction"
  assert (out / "metrics.md").read_text().startswith("### Evaluation protocol: reproduction")
