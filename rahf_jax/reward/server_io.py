"""The reward server's wire format: request JSON -> checked images and prompts; results -> JSON.

Request (POST /score, a JSON object):

  {"id": "step12-0",                # optional; echoed in the response (default: a new uuid)
   "images": ["<base64>", ...],     # each: PNG or JPEG bytes, or a .npy array: uint8 [H, W, 3]
                                    #   (or [H, W], [H, W, 4]) or float in [0, 1]
   "prompts": ["a red cube", ...],  # one per image; or "prompt": "..." for all of them
   "heatmaps": false,               # optional: also the two heatmaps at each image's size
   "heatmap_format": "npy",         # "npy" (float32 [H, W]) or "png" (8-bit, round(255 * map))
   "words": false,                  # optional: the misaligned words (runs the decoder; slower)
   "weights": {"overall": 1.0}}     # optional: add "reward", this mix of the scores

Response: {"id": ..., "results": [{"scores": {plausibility, alignment, aesthetics, overall},
"reward"?, "heatmaps"?: {"implausibility": "<base64>", "misalignment": "<base64>"},
"misaligned_words"?, "marked_prompt"?}, ...]} in image order. An error is {"error": "<one
line>"} with a 4xx status (5xx for the server's own faults).

Image sizes are read from the PNG/JPEG header or the .npy header before anything is decoded, so
a small file that would decode to a huge image (a decompression bomb) is refused cheaply.
"""

import base64
import binascii
import io
import json
import re
import uuid
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from rahf_jax import features as F
from rahf_jax.reward import ranking
from rahf_jax.reward.image_inputs import ImageInputError, load_image

HEATMAP_FORMATS = ("npy", "png")
NPY_MAGIC = b"\x93NUMPY"
IMAGE_FIX = "send PNG or JPEG bytes, or np.save bytes of a uint8 [H, W, 3] array, in base64"
FIX = 'send {"images": [base64 PNG/JPEG/.npy, ...], "prompts": [text, ...]}'


class RequestError(ValueError):
  """A request the server refuses: `status` (4xx) and a one-line message."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


def _b64(data: str, what: str) -> bytes:
  if not isinstance(data, str):
    raise RequestError(f"{what} is a {type(data).__name__}; send a base64 string.")
  try:
    return base64.b64decode(data, validate=True)
  except (binascii.Error, ValueError) as e:
    raise RequestError(f"{what} is not valid base64 ({e}); send base64 of the file's bytes.") from e


def _check_size(h: int, w: int, max_pixels: int, what: str) -> None:
  if h * w > max_pixels:
    raise RequestError(
      f"{what} is {w} x {h} pixels, over the server's limit of {max_pixels} pixels "
      "(--max_image_pixels); send a smaller image.",
      413,
    )


def _decode_npy(raw: bytes, max_pixels: int, what: str) -> np.ndarray:
  f = io.BytesIO(raw)
  try:
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)  # fmt: skip
    shape, _, dtype = read_header(f)
  except (ValueError, SyntaxError, UnicodeDecodeError, EOFError) as e:
    raise RequestError(f"{what} is not a readable .npy array ({e}); send np.save's bytes.") from e
  if len(shape) not in (2, 3) or dtype.kind not in "uf":
    raise RequestError(
      f"{what} is a .npy array of shape {shape} and dtype {dtype}; send uint8 [H, W, 3] "
      "(or floats in [0, 1])."
    )
  _check_size(int(shape[0]), int(shape[1]), max_pixels, what)
  try:
    arr = np.load(io.BytesIO(raw), allow_pickle=False)
    return load_image(arr)
  except ImageInputError as e:
    raise RequestError(f"{what}: {e}") from e
  except (ValueError, OSError, EOFError) as e:
    raise RequestError(f"{what} is not a readable .npy array ({e}); send np.save's bytes.") from e


def decode_image(raw: bytes, max_pixels: int, what: str = "image") -> np.ndarray:
  """PNG / JPEG / .npy bytes -> uint8 [H, W, 3]; RequestError (400/413) for anything else."""
  if raw.startswith(NPY_MAGIC):
    return _decode_npy(raw, max_pixels, what)
  try:
    with Image.open(io.BytesIO(raw)) as im:  # reads the header only
      w, h = im.size
      _check_size(h, w, max_pixels, what)
      return np.asarray(im.convert("RGB"))
  except RequestError:
    raise
  except Image.DecompressionBombError as e:  # Pillow's own check, at twice its MAX_IMAGE_PIXELS
    pixels = re.search(r"\((\d+) pixels\)", str(e))
    raise RequestError(
      f"{what} is {pixels.group(1) if pixels else 'too many'} pixels, over the server's limit "
      f"of {max_pixels} pixels (--max_image_pixels); send a smaller image.",
      413,
    ) from e
  except UnidentifiedImageError as e:
    raise RequestError(
      f"{what} is not a PNG, JPEG or .npy image (unknown format); {IMAGE_FIX}."
    ) from e
  except (OSError, ValueError, SyntaxError) as e:
    raise RequestError(
      f"{what} is not a readable image ({str(e).splitlines()[0]}); {IMAGE_FIX}."
    ) from e


def parse_request(body: bytes, max_pixels: int, max_images: int) -> dict[str, Any]:
  """Request bytes -> {"id", "images" (uint8 arrays), "prompts", "heatmaps", "heatmap_format",
  "words", "weights"}; RequestError with a one-line reason for anything wrong."""
  try:
    req = json.loads(body)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise RequestError(f"request body is not JSON ({e}); {FIX}.") from e
  if not isinstance(req, dict):
    raise RequestError(f"request body is a JSON {type(req).__name__}, not an object; {FIX}.")
  unknown = sorted(set(req) - {"id", "images", "prompts", "prompt", "heatmaps", "heatmap_format",
                               "words", "weights"})  # fmt: skip
  if unknown:
    raise RequestError(f"request has unknown fields {unknown}; {FIX}.")
  images = req.get("images")
  if not isinstance(images, list) or not images:
    raise RequestError(f'request needs "images", a non-empty list; {FIX}.')
  if len(images) > max_images:
    raise RequestError(
      f"request has {len(images)} images, over the server's limit of {max_images} per request "
      "(--max_queue); split it.",
      413,
    )
  if "prompt" in req and "prompts" in req:
    raise RequestError('request has both "prompt" and "prompts"; send one of them.')
  prompts = [req["prompt"]] * len(images) if "prompt" in req else req.get("prompts")
  if not isinstance(prompts, list) or len(prompts) != len(images):
    n = len(prompts) if isinstance(prompts, list) else "no"
    raise RequestError(f"request has {len(images)} images but {n} prompts; send one each.")
  for i, p in enumerate(prompts):
    if not isinstance(p, str) or not p.strip():
      raise RequestError(f"prompts[{i}] is empty; send the prompt the image was generated from.")
  fmt = req.get("heatmap_format", "npy")
  if fmt not in HEATMAP_FORMATS:
    raise RequestError(f"heatmap_format {fmt!r} unknown; use one of {list(HEATMAP_FORMATS)}.")
  flags = {k: req.get(k, False) for k in ("heatmaps", "words")}
  for k, v in flags.items():
    if not isinstance(v, bool):
      raise RequestError(f'"{k}" is {v!r}; send true or false.')
  weights = req.get("weights")
  if weights is not None:
    try:
      weights = ranking.check_weights(weights)
    except (ValueError, TypeError, AttributeError) as e:
      raise RequestError(f'"weights": {e}') from e
  rid = req.get("id")
  if rid is None:
    rid = uuid.uuid4().hex
  elif not isinstance(rid, str | int) or isinstance(rid, bool) or len(str(rid)) > 200:
    raise RequestError('"id" must be a string or integer of at most 200 characters.')
  pixels = [decode_image(_b64(b, f"images[{i}]"), max_pixels, f"images[{i}]")
            for i, b in enumerate(images)]  # fmt: skip
  return {"id": rid, "images": pixels, "prompts": prompts, "heatmap_format": fmt,
          "weights": weights, **flags}  # fmt: skip


def encode_heatmap(heatmap: np.ndarray, fmt: str) -> str:
  """float [H, W] in [0, 1] -> base64 of a .npy (float32) or an 8-bit greyscale PNG."""
  heat = np.asarray(heatmap, np.float32)
  buf = io.BytesIO()
  if fmt == "npy":
    np.save(buf, heat, allow_pickle=False)
  else:
    grey = np.round(255.0 * np.clip(heat, 0.0, 1.0)).astype(np.uint8)
    Image.fromarray(grey, mode="L").save(buf, format="PNG")
  return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_heatmap(data: str) -> np.ndarray:
  """The inverse of encode_heatmap: float32 [H, W] (a PNG's values divided by 255)."""
  raw = base64.b64decode(data)
  if raw.startswith(NPY_MAGIC):
    return np.load(io.BytesIO(raw), allow_pickle=False)
  with Image.open(io.BytesIO(raw)) as im:
    return np.asarray(im, np.float32) / 255.0


def result_json(result: Any, request: dict[str, Any]) -> dict[str, Any]:
  """One ScoreResult -> its response entry, with what `request` asked for."""
  out: dict[str, Any] = {"scores": result.scores}
  if request["weights"] is not None:
    out["reward"] = ranking.combined_score(result.scores, request["weights"])
  if request["heatmaps"]:
    out["heatmaps"] = {h: encode_heatmap(getattr(result, f"{h}_heatmap"),
                                         request["heatmap_format"])
                       for h in F.HEATMAP_TYPES}  # fmt: skip
  if request["words"]:
    out["misaligned_words"] = list(result.misaligned_words)
    out["marked_prompt"] = result.marked_prompt
  return out
