"""`rahf-jax serve` in process: answers equal the Scorer's, bad inputs get a one-line 4xx and the
server keeps serving, a full queue gets 503 + Retry-After, shutdown answers what it accepted."""

import io
import json
import threading

import numpy as np
import pytest
from PIL import Image
from serve_testlib import (
  HeldScorer,
  ThreadServer,
  get,
  huge_png_header,
  jpeg_bytes,
  npy_bytes,
  png_bytes,
  post,
  request_body,
  wait_until,
)

from rahf_jax.reward.client import RewardClient, RewardServerError
from rahf_jax.reward.server_io import decode_heatmap

# Each test starts a server over a trained model (`make test`; `make test-fast` leaves them out).
pytestmark = pytest.mark.slow

PROMPTS = ["a red circle and a blue square", "a cat on a mat", "a green star"]


@pytest.fixture(scope="module")
def server(scorer, tmp_path_factory):
  srv = ThreadServer(lambda: scorer, tmp_path_factory.mktemp("serve"), max_body_mb=1.0,
                     max_wait_ms=5.0)  # fmt: skip
  RewardClient(srv.url).wait_ready(120)
  yield srv
  srv.stop()
  srv.join()


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, (48, 40, 3), np.uint8) for _ in range(n)]


def test_answers_equal_the_scorers_for_png_jpeg_and_npy(server, scorer):
  images = _images(3)
  raw = [png_bytes(images[0]), jpeg_bytes(images[1]), npy_bytes(images[2])]
  body = request_body(raw, PROMPTS, id="r1", heatmaps=True, weights={"overall": 1, "alignment": 1})
  status, answer, _ = post(server.url, body)
  assert status == 200 and answer["id"] == "r1" and len(answer["results"]) == 3
  decoded_jpeg = np.asarray(Image.open(io.BytesIO(raw[1])).convert("RGB"))
  expected = scorer.score([images[0], decoded_jpeg, images[2]], PROMPTS, heatmaps=True)
  for got, want in zip(answer["results"], expected, strict=True):
    np.testing.assert_allclose([got["scores"][s] for s in want.scores], list(want.scores.values()),
                               atol=1e-6)  # fmt: skip
    assert got["reward"] == pytest.approx((want.overall + want.alignment) / 2, abs=1e-6)
    heat = decode_heatmap(got["heatmaps"]["implausibility"])
    assert heat.shape == (48, 40)
    np.testing.assert_array_equal(heat, want.implausibility_heatmap)
  png = post(server.url, request_body(raw[:1], PROMPTS[:1], heatmaps=True, heatmap_format="png"))
  heat = decode_heatmap(png[1]["results"][0]["heatmaps"]["misalignment"])
  np.testing.assert_array_equal(heat, np.round(255 * expected[0].misalignment_heatmap) / 255)


def test_the_client_returns_scores_words_and_arrays(server, scorer):
  client = RewardClient(server.url, retries=0)
  images = _images(2, seed=1)
  results = client.score(images, PROMPTS[0], heatmaps=True, words=True)
  expected = scorer.score(images, PROMPTS[0], words=True)
  assert [r["misaligned_words"] for r in results] == [e.misaligned_words for e in expected]
  assert results[0]["heatmaps"]["implausibility"].dtype == np.float32
  rewards = client.rewards(images, [PROMPTS[0]] * 2)
  np.testing.assert_allclose(rewards, [e.overall for e in expected], atol=1e-6)


BAD = {  # name: (body, status, words the one-line reason names)
  "non-image bytes": (request_body([b"hello, not an image"], ["a cat"]), 400, "images[0]"),
  "20,000 x 20,000 image": (request_body([huge_png_header()], ["a cat"]), 413, "400000000 pixels"),
  # Under Pillow's own bomb limit: only the server's --max_image_pixels check refuses it.
  "5,000 x 5,000 image": (request_body([huge_png_header(5000, 5000)], ["a"]), 413, "5000 x 5000"),
  "empty prompt": (
    request_body([png_bytes(np.zeros((8, 8, 3), np.uint8))], [" "]),
    400,
    "prompts[0] is empty",
  ),  # fmt: skip
  "malformed JSON": (b'{"images": [', 400, "not JSON"),
  "over the size limit": (
    request_body([npy_bytes(np.zeros((700, 700, 3), np.uint8))], ["a"]),
    413,
    "--max_body_mb",
  ),  # fmt: skip
  "truncated npy": (
    request_body([npy_bytes(np.zeros((8, 8, 3), np.uint8))[:70]], ["a"]),
    400,
    "images[0]",
  ),  # fmt: skip
  "prompts missing": (json.dumps({"images": []}).encode(), 400, '"images"'),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_inputs_get_a_one_line_4xx_and_the_server_keeps_serving(server, name):
  body, status, words = BAD[name]
  got, answer, _ = post(server.url, body)
  assert got == status, answer
  assert words in answer["error"] and "\n" not in answer["error"], answer
  ok, answer, _ = post(server.url, request_body([png_bytes(_images(1)[0])], ["a cat"]))
  assert ok == 200 and len(answer["results"]) == 1
  assert get(server.url, "/healthz")[0] == 200 and get(server.url, "/readyz")[0] == 200


def test_the_client_raises_the_servers_reason_without_retrying(server):
  client = RewardClient(server.url, retries=5)
  with pytest.raises(RewardServerError, match="prompts\\[0\\] is empty") as e:
    client.score(_images(1), [""])
  assert e.value.status == 400 and client.attempts == 1


def test_a_full_queue_answers_503_with_retry_after_and_the_client_retries(scorer, tmp_path):
  held = HeldScorer(scorer)
  srv = ThreadServer(lambda: held, tmp_path, max_queue=8, max_wait_ms=0.0)
  try:
    RewardClient(srv.url).wait_ready(120)
    image = png_bytes(_images(1)[0])
    first = []
    threading.Thread(
      target=lambda: first.append(post(srv.url, request_body([image], ["a"])))
    ).start()
    assert held.started.wait(60)  # the worker holds the first batch: the queue is empty
    filling = []
    t = threading.Thread(
      target=lambda: filling.append(post(srv.url, request_body([image] * 8, ["a"] * 8)))
    )
    t.start()
    wait_until(lambda: get(srv.url, "/stats")[1]["queued"] == 8, what="8 queued pairs")
    status, answer, headers = post(srv.url, request_body([image], ["a"]))
    assert status == 503 and headers["Retry-After"] == "1" and "--max_queue" in answer["error"]
    client = RewardClient(srv.url, retries=20, backoff=0.05, max_backoff=0.2)
    retried = []
    c = threading.Thread(target=lambda: retried.append(client.score(_images(1), ["a"])))
    c.start()
    wait_until(lambda: get(srv.url, "/stats")[1]["refused_requests"] >= 2, what="a refused retry")
    held.release.set()
    t.join(60)
    c.join(60)
    assert first[0][0] == 200 and filling[0][0] == 200 and len(filling[0][1]["results"]) == 8
    assert len(retried) == 1 and client.attempts >= 2
  finally:
    held.release.set()
    srv.stop()
    srv.join()


def test_shutdown_answers_every_accepted_request(scorer, tmp_path):
  held = HeldScorer(scorer)
  srv = ThreadServer(lambda: held, tmp_path, max_wait_ms=60_000.0)  # batches would wait a minute
  RewardClient(srv.url).wait_ready(120)
  image = png_bytes(_images(1)[0])
  answers = []
  threads = [threading.Thread(target=lambda i=i: answers.append(
    post(srv.url, request_body([image] * (i + 1), ["a"] * (i + 1), id=f"q{i}"))))
    for i in range(3)]  # fmt: skip
  for t in threads:
    t.start()
  wait_until(lambda: get(srv.url, "/stats")[1]["queued"] == 6, what="6 accepted pairs")
  assert not held.started.is_set()  # all six wait for a batch to fill
  srv.stop()  # as SIGTERM: not ready any more; the queued pairs are scored without waiting
  wait_until(lambda: held.started.is_set(), what="the drain to start a batch")
  held.release.set()
  for t in threads:
    t.join(60)
  srv.join()
  assert sorted((a[0], a[1]["id"], len(a[1]["results"])) for a in answers) == [
    (200, "q0", 1), (200, "q1", 2), (200, "q2", 3)]  # fmt: skip
