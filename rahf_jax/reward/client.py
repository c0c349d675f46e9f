"""`RewardClient`: call a `rahf-jax serve` reward server from any training loop (stdlib only).

  client = RewardClient("http://127.0.0.1:8000")
  client.wait_ready()
  rewards = client.rewards(images, prompts)               # float32 [B]: the overall score
  results = client.score(images, prompts, heatmaps=True)  # list of dicts, heatmaps as arrays

Images: uint8 arrays [H, W, 3] (or [H, W], [H, W, 4]), float arrays in [0, 1], PIL images, or
PNG/JPEG bytes; arrays travel as .npy (lossless), PIL images as PNG. A PyTorch tensor [B, 3, H,
W] in [0, 1] becomes `x.permute(0, 2, 3, 1).cpu().numpy()`; a JAX array `np.asarray(x)`.

Retries: a refused or reset connection, a timeout, 502/503/504 (honouring Retry-After) are
retried with exponential backoff (`backoff` doubling up to `max_backoff` seconds) for up to
`retries` further attempts, each with the same request id; 4xx answers are not retried and
raise RewardServerError with the server's one-line reason. Only the Python standard library and
numpy are imported, so PyTorch trainers need nothing else.
"""

import base64
import http.client
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RETRY_STATUS = (502, 503, 504)


class RewardServerError(RuntimeError):
  """The server refused a request (4xx), or it could not be reached within the retries."""

  def __init__(self, message: str, status: int | None = None):
    super().__init__(message)
    self.status = status


def encode_image(image: Any) -> str:
  """An image (module docstring) -> base64 of its PNG/JPEG bytes or of a .npy array."""
  if isinstance(image, bytes | bytearray | memoryview):
    raw = bytes(image)
  elif hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    raw = buf.getvalue()
  else:
    buf = io.BytesIO()
    np.save(buf, np.asarray(image), allow_pickle=False)
    raw = buf.getvalue()
  return base64.b64encode(raw).decode("ascii")


def _decode_heatmap(data: str) -> np.ndarray:
  raw = base64.b64decode(data)
  if raw.startswith(b"\x93NUMPY"):
    return np.load(io.BytesIO(raw), allow_pickle=False)
  from PIL import Image  # noqa: PLC0415 (only for PNG heatmaps)

  with Image.open(io.BytesIO(raw)) as im:
    return np.asarray(im, np.float32) / 255.0


class RewardClient:
  """A client of one reward server (module docstring).

  Args:
    url: the server's base URL, e.g. http://127.0.0.1:8000.
    timeout: seconds for one attempt (connect + scoring + answer).
    retries: further attempts after a failed one (connection errors, timeouts, 502/503/504).
    backoff: the first wait between attempts in seconds; doubles up to `max_backoff`.
  """

  def __init__(
    self,
    url: str,
    timeout: float = 120.0,
    retries: int = 8,
    backoff: float = 0.25,
    max_backoff: float = 5.0,
  ):
    self.url = url.rstrip("/")
    self.timeout = float(timeout)
    self.retries = int(retries)
    self.backoff = float(backoff)
    self.max_backoff = float(max_backoff)
    self.attempts = 0  # HTTP attempts made (for load tests)

  def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    wait, last = self.backoff, "no attempt made"
    for attempt in range(self.retries + 1):
      if attempt:
        time.sleep(wait)
        wait = min(2 * wait, self.max_backoff)
      self.attempts += 1
      request = urllib.request.Request(
        self.url + path, data=body, headers={"Content-Type": "application/json"}, method="POST"
      )
      try:
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
          return json.loads(response.read())
      except urllib.error.HTTPError as e:
        reason = _reason(e)
        if e.code not in RETRY_STATUS:
          raise RewardServerError(f"{self.url}{path}: {e.code}: {reason}", e.code) from None
        last = f"{e.code}: {reason}"
        retry_after = e.headers.get("Retry-After")
        if retry_after and retry_after.isdigit():
          wait = max(wait, min(float(retry_after), self.max_backoff))
      except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    raise RewardServerError(
      f"{self.url}{path} did not answer after {self.retries + 1} attempts (last: {last}); "
      "check that `rahf-jax serve` runs there, or raise retries=."
    )

  def _get(self, path: str) -> tuple[int, dict[str, Any]]:
    try:
      with urllib.request.urlopen(self.url + path, timeout=self.timeout) as response:
        return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
      try:
        return e.code, json.loads(e.read())
      except ValueError:
        return e.code, {}
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError):
      return 0, {}

  def ready(self) -> bool:
    """True when /readyz answers 200 (the model is loaded and compiled)."""
    return self._get("/readyz")[0] == 200

  def healthy(self) -> bool:
    return self._get("/healthz")[0] == 200

  def stats(self) -> dict[str, Any]:
    return self._get("/stats")[1]

  def wait_ready(self, timeout: float = 300.0, poll: float = 0.2) -> None:
    """Returns once the server is ready; RewardServerError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      status, body = self._get("/readyz")
      if status == 200:
        return
      if body.get("status") == "failed":
        raise RewardServerError(f"{self.url}: the model failed to load: {body.get('error')}")
      time.sleep(poll)
    raise RewardServerError(f"{self.url} was not ready after {timeout:g} s; see its log.")

  def score(
    self,
    images: Sequence[Any],
    prompts: str | Sequence[str],
    heatmaps: bool = False,
    heatmap_format: str = "npy",
    words: bool = False,
    weights: Mapping[str, float] | None = None,
    request_id: str | None = None,
  ) -> list[dict[str, Any]]:
    """One dict per image: "scores" ({type: float}), with `weights` "reward", with `heatmaps`
    "heatmaps" ({type: float32 [H, W]}), with `words` "misaligned_words" and "marked_prompt"."""
    return self.score_response(images, prompts, heatmaps, heatmap_format, words, weights,
                               request_id)["results"]  # fmt: skip

  def score_response(
    self,
    images: Sequence[Any],
    prompts: str | Sequence[str],
    heatmaps: bool = False,
    heatmap_format: str = "npy",
    words: bool = False,
    weights: Mapping[str, float] | None = None,
    request_id: str | None = None,
  ) -> dict[str, Any]:
    """The whole response {"id", "results"} (`score` returns its results)."""
    payload: dict[str, Any] = {
      "id": request_id or uuid.uuid4().hex,
      "images": [encode_image(im) for im in images],
      "heatmaps": bool(heatmaps),
      "heatmap_format": heatmap_format,
      "words": bool(words),
    }
    if isinstance(prompts, str):
      payload["prompt"] = prompts
    else:
      payload["prompts"] = list(prompts)
    if weights is not None:
      payload["weights"] = dict(weights)
    response = self._post("/score", payload)
    if response.get("id") != payload["id"]:
      raise RewardServerError(f"answer for request {response.get('id')!r}, not {payload['id']!r}")
    for result in response["results"]:
      if "heatmaps" in result:
        result["heatmaps"] = {k: _decode_heatmap(v) for k, v in result["heatmaps"].items()}
    return response

  def rewards(
    self, images: Sequence[Any], prompts: str | Sequence[str], weights=None
  ) -> np.ndarray:
    """float32 [B]: each image's weighted mix of scores (default: the overall score)."""
    results = self.score(images, prompts, weights=weights or {"overall": 1.0})
    return np.asarray([r["reward"] for r in results], np.float32)


def _reason(e: urllib.error.HTTPError) -> str:
  try:
    return json.loads(e.read()).get("error", e.reason)
  except (ValueError, AttributeError, OSError):
    return str(e.reason)
