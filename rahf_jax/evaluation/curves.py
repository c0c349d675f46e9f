"""Learning curves of a run, per output, from its TensorBoard event files, as one PNG.

`read_scalars(workdir)` reads every scalar the training loop wrote (rahf_jax.train.loop writes
`train/<term>` every log_every steps and `dev/<term>` at every dev evaluation) with
TensorBoard's EventAccumulator. `write_learning_curves(workdir, path)` draws one panel per loss
term ("loss", then one per output: "score_<type>", "heatmap_<type>", "text_loss", then the
weighted sums "score_loss", "heatmap_loss"; any other term after them): the
train values as a line, the dev values of the same term as dots. Drawn with Pillow (no
matplotlib needed).
"""

import os
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rahf_jax import features

# train/ scalars that are not loss terms.
NOT_LOSSES = ("grad_norm", "learning_rate", "steps_per_sec", "examples_per_sec")
# Panel order: the total, one term per output (scores, heatmaps, words), the weighted sums.
_ORDER = (
  ("loss",)
  + tuple(f"score_{s}" for s in features.SCORE_TYPES)
  + tuple(f"heatmap_{h}" for h in features.HEATMAP_TYPES)
  + ("text_loss", "score_loss", "heatmap_loss")
)
PANEL = (360, 220)  # width, height of one panel
MARGIN = (56, 26, 12, 30)  # left, top, right, bottom inside a panel
COLUMNS = 3
TRAIN_COLOUR = (31, 119, 180)
DEV_COLOUR = (255, 127, 14)
AXIS = (90, 90, 90)
TEXT = (0, 0, 0)


def read_scalars(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value)], ascending steps} of every scalar in workdir's event files."""
  from tensorboard.backend.event_processing import event_accumulator  # noqa: PLC0415
  from tensorboard.util import tensor_util  # noqa: PLC0415

  acc = event_accumulator.EventAccumulator(
    workdir,
    size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0},
  )
  acc.Reload()
  out: dict[str, dict[int, float]] = {}
  tags = acc.Tags()
  for tag in tags.get("scalars", []):
    for e in acc.Scalars(tag):
      out.setdefault(tag, {})[int(e.step)] = float(e.value)
  for tag in tags.get("tensors", []):
    for e in acc.Tensors(tag):
      value = np.asarray(tensor_util.make_ndarray(e.tensor_proto))
      if value.size == 1 and np.issubdtype(value.dtype, np.number):
        out.setdefault(tag, {})[int(e.step)] = float(value.reshape(()))
  return {tag: sorted(values.items()) for tag, values in out.items()}


def loss_series(scalars: Mapping[str, Sequence]) -> dict[str, dict[str, list]]:
  """{term: {"train": [(step, value)], "dev": [...]}} of the loss terms, "loss" first."""
  terms = {}
  for tag, values in scalars.items():
    split, _, name = tag.partition("/")
    if split not in ("train", "dev") or not name or name in NOT_LOSSES or name.startswith("num_"):
      continue
    terms.setdefault(name, {"train": [], "dev": []})[split] = list(values)
  terms = {k: v for k, v in terms.items() if v["train"]}  # dev-only metrics are not curves here
  order = {name: i for i, name in enumerate(_ORDER)}
  return dict(sorted(terms.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow without scalable default font
    return ImageFont.load_default()


def _draw_panel(draw, x0: int, y0: int, name: str, series: Mapping, font) -> None:
  left, top, right, bottom = MARGIN
  w, h = PANEL
  ax0, ay0, ax1, ay1 = x0 + left, y0 + top, x0 + w - right, y0 + h - bottom
  points = series["train"] + series["dev"]
  steps = [s for s, _ in points]
  values = [v for _, v in points if np.isfinite(v)]
  s_lo, s_hi = min(steps), max(steps)
  v_lo, v_hi = (min(values), max(values)) if values else (0.0, 1.0)
  if v_hi <= v_lo:
    v_lo, v_hi = v_lo - 0.5 * abs(v_lo or 1.0), v_hi + 0.5 * abs(v_hi or 1.0)
  s_span = max(s_hi - s_lo, 1)

  def xy(step, value):
    return (
      ax0 + (step - s_lo) / s_span * (ax1 - ax0),
      ay1 - (value - v_lo) / (v_hi - v_lo) * (ay1 - ay0),
    )

  draw.text((x0 + left, y0 + 6), name, fill=TEXT, font=font)
  draw.rectangle([ax0, ay0, ax1, ay1], outline=AXIS)
  draw.text((x0 + 2, ay0 - 6), f"{v_hi:.3g}", fill=AXIS, font=font)
  draw.text((x0 + 2, ay1 - 6), f"{v_lo:.3g}", fill=AXIS, font=font)
  draw.text((ax0, ay1 + 4), f"step {s_lo}", fill=AXIS, font=font)
  hi_text = f"{s_hi}"
  draw.text((ax1 - draw.textlength(hi_text, font=font), ay1 + 4), hi_text, fill=AXIS, font=font)
  train = [xy(s, v) for s, v in series["train"] if np.isfinite(v)]
  if len(train) > 1:
    draw.line(train, fill=TRAIN_COLOUR, width=2)
  elif train:
    x, y = train[0]
    draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=TRAIN_COLOUR)
  for s, v in series["dev"]:
    if np.isfinite(v):
      x, y = xy(s, v)
      draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=DEV_COLOUR)


def plot_curves(series: Mapping[str, Mapping], path: str, title: str = "") -> str:
  """Draws `loss_series` output as a grid of panels into the PNG `path`; returns the path."""
  if not series:
    raise ValueError("no loss curves to draw: the run wrote no train/ scalars.")
  n = len(series)
  cols = min(COLUMNS, n)
  rows = -(-n // cols)
  header = 40
  canvas = Image.new("RGB", (cols * PANEL[0], header + rows * PANEL[1]), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = _font(12)
  draw.text((8, 6), title or "learning curves", fill=TEXT, font=font)
  draw.line([(8, 28), (28, 28)], fill=TRAIN_COLOUR, width=2)
  draw.text((32, 22), "train", fill=TEXT, font=font)
  draw.ellipse([78, 25, 84, 31], fill=DEV_COLOUR)
  draw.text((90, 22), "dev", fill=TEXT, font=font)
  for i, (name, values) in enumerate(series.items()):
    _draw_panel(draw, (i % cols) * PANEL[0], header + (i // cols) * PANEL[1], name, values, font)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  canvas.save(path, format="PNG")
  return path


def write_learning_curves(workdir: str, path: str, title: str = "") -> str | None:
  """The run's loss curves (train line, dev dots, one panel per term) as a PNG at `path`.

  Returns:
    The path, or None when the workdir holds no train/ scalars (nothing is written then).
  """
  series = loss_series(read_scalars(workdir))
  if not series:
    return None
  return plot_curves(series, path, title)
