"""Learning curves from a run's TensorBoard events (written as the training loop writes them)."""

import numpy as np
from PIL import Image

from rahf_jax.evaluation import curves


def _write_run(workdir, steps=10):
  from clu import metric_writers

  writer = metric_writers.create_default_writer(str(workdir))
  for step in range(1, steps + 1):
    writer.write_scalars(
      step,
      {
        "train/loss": 10.0 / step,
        "train/score_plausibility": 0.1 / step,
        "train/heatmap_implausibility": 0.02 / step,
        "train/text_loss": 5.0 / step,
        "train/grad_norm": 1.0,
        "train/num_tokens": 100.0,
        "steps_per_sec": 2.0,
      },
    )
    if step % 5 == 0:
      writer.write_scalars(step, {"dev/loss": 12.0 / step, "dev/text_loss": 6.0 / step})
  writer.close()


def test_read_scalars_and_loss_series(tmp_path):
  _write_run(tmp_path)
  scalars = curves.read_scalars(str(tmp_path))
  assert [s for s, _ in scalars["train/loss"]] == list(range(1, 11))
  np.testing.assert_allclose(
    [v for _, v in scalars["train/loss"]], [10.0 / s for s in range(1, 11)]
  )
  series = curves.loss_series(scalars)
  # The total first, then one term per output; not grad_norm, counts or speeds.
  assert list(series) == ["loss", "score_plausibility", "heatmap_implausibility", "text_loss"]
  assert [s for s, _ in series["loss"]["dev"]] == [5, 10]
  np.testing.assert_allclose(
    [v for _, v in series["loss"]["dev"]], [12.0 / 5, 12.0 / 10], rtol=1e-6
  )
  assert series["score_plausibility"]["dev"] == []


def test_write_learning_curves_png(tmp_path):
  _write_run(tmp_path / "run")
  path = curves.write_learning_curves(str(tmp_path / "run"), str(tmp_path / "out" / "c.png"))
  assert path == str(tmp_path / "out" / "c.png")
  image = np.asarray(Image.open(path).convert("RGB")).astype(int)
  w, h = curves.PANEL
  assert image.shape == (40 + 2 * h, 3 * w, 3)  # four panels in rows of three
  # The train line and the dev dots are drawn in the first panel.
  first = image[40 : 40 + h, :w]
  colour = lambda c: (np.abs(first - np.array(c)).sum(axis=-1) < 30).sum()
  assert colour(curves.TRAIN_COLOUR) > 50 and colour(curves.DEV_COLOUR) > 10


def test_no_train_scalars_writes_nothing(tmp_path):
  assert curves.write_learning_curves(str(tmp_path), str(tmp_path / "c.png")) is None
  assert not (tmp_path / "c.png").exists()
