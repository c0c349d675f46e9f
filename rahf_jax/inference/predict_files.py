"""`rahf-jax predict`: one image file + prompt -> scores, misaligned words (JSON), overlay PNG."""

import json
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from rahf_jax.inference.overlays import save_overlay
from rahf_jax.inference.predictor import Predictor


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] of an image file; one clear error for a missing or unreadable file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"image {path!r} not found; pass an existing file to --image.")
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise ValueError(f"image {path!r} is not a readable image ({e}); pass a PNG or JPEG.") from e


def predict_image_file(
  workdir: str,
  image_path: str,
  prompt: str,
  out_dir: str | None = None,
  best: bool | None = None,
) -> dict:
  """Predicts for one (image, prompt); writes prediction.json and overlay.png into out_dir.

  `best`: which checkpoint, as in Predictor.from_workdir (None: the best where the run keeps one).
  """
  image = read_image(image_path)
  predictor = Predictor.from_workdir(workdir, best=best)
  pred = predictor.predict([image], [prompt])[0]
  result = {
    "image": image_path,
    "prompt": prompt,
    "scores": pred["scores"],
    "misaligned_words": pred["misaligned_words"],
    "misaligned": pred["misaligned_prompt_words"],  # prompt words only, in prompt order
  }
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    size = int(predictor.model_config.image_size)
    small = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    save_overlay(os.path.join(out_dir, "overlay.png"), small, pred["heatmaps"],
                 title=result["misaligned_words"])  # fmt: skip
    with open(os.path.join(out_dir, "prediction.json"), "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
    result["out"] = out_dir
  return result
