"""`rahf-jax score`: rows, error rows, ranks, masks, gallery, resume, and one-line user errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rahf_jax.reward import inpainting_mask
from rahf_jax.reward.score_cli import ranks_path, run_score

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = ("a red circle and a blue square", "a green triangle")


def _write_inputs(root, n=6):
  """n images of different sizes, a missing one and a corrupt one, over two prompts."""
  rng = np.random.default_rng(0)
  (root / "img").mkdir()
  entries = []
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (30 + 4 * i, 50 - 2 * i, 3), np.uint8)).save(
      root / "img" / f"{i}.png"
    )
    entries.append({"image": f"img/{i}.png", "prompt": PROMPTS[i % 2], "id": f"r{i}"})
  (root / "img" / "bad.png").write_bytes(b"not a png")
  entries.insert(2, {"image": "img/missing.png", "prompt": PROMPTS[0], "id": "missing"})
  entries.insert(5, {"image": "img/bad.png", "prompt": PROMPTS[1], "id": "bad"})
  with open(root / "pairs.jsonl", "w") as f:
    f.writelines(json.dumps(e) + "\n" for e in entries)
  return entries


def _read(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


class _CountingScorer:
  """Wraps a Scorer; counts the pairs it scores; raises KeyboardInterrupt on call `fail_on`."""

  def __init__(self, scorer, fail_on=None):
    self.scorer, self.fail_on, self.calls, self.pairs = scorer, fail_on, 0, 0

  def score(self, images, prompts, **kw):
    self.calls += 1
    if self.calls == self.fail_on:
      raise KeyboardInterrupt
    self.pairs += len(images)
    return self.scorer.score(images, prompts, **kw)


@pytest.mark.slow
def test_manifest_run_writes_scores_errors_ranks_masks_and_gallery(scorer, tmp_path, capsys):
  entries = _write_inputs(tmp_path)
  out = tmp_path / "out" / "results.jsonl"
  summary = run_score(
    "unused",
    str(out),
    manifest=str(tmp_path / "pairs.jsonl"),
    rank=True,
    masks=str(tmp_path / "masks"),
    gallery=str(tmp_path / "g.html"),
    batch_size=4,
    words=True,
    scorer=scorer,
  )
  rows = _read(out)
  assert [r["id"] for r in rows] == [e["id"] for e in entries]  # manifest order, none dropped
  errors = {r["id"]: r["error"] for r in rows if "error" in r}
  assert set(errors) == {"missing", "bad"}
  assert "not found" in errors["missing"] and "not a readable image" in errors["bad"]
  assert summary["errors"] == 2 and summary["error_ids"] == ["missing", "bad"]
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert "8 rows" in line and "2 unreadable" in line and "missing (" in line and "bad (" in line

  ok = [r for r in rows if "error" not in r]
  images = [np.asarray(Image.open(tmp_path / r["image"])) for r in ok]
  direct = scorer.score(images, [r["prompt"] for r in ok], heatmaps=True, words=True)
  for r, d, image in zip(ok, direct, images, strict=True):
    assert r["scores"] == pytest.approx(d.scores, abs=1e-6)
    assert r["misaligned_words"] == d.misaligned_words and r["marked_prompt"] == d.marked_prompt
    mask = np.asarray(Image.open(r["mask"])) > 0
    np.testing.assert_array_equal(mask, inpainting_mask(d.implausibility_heatmap))
    assert mask.shape == image.shape[:2]

  ranks = _read(ranks_path(str(out)))
  assert [g["prompt"] for g in ranks] == list(PROMPTS)
  for group in ranks:
    members = [r for r in ok if r["prompt"] == group["prompt"]]
    expected = sorted(members, key=lambda r: -r["scores"]["overall"])
    assert [m["id"] for m in group["ranking"]] == [m["id"] for m in expected]
    assert [m["rank"] for m in group["ranking"]] == list(range(1, len(members) + 1))
    assert {r["id"]: r["rank"] for r in members} == {m["id"]: m["rank"] for m in group["ranking"]}

  page = (tmp_path / "g.html").read_text()
  assert page.count('class="card"') == 6 and page.count("data:image/png;base64,") == 6
  assert 'src="http' not in page and "missing" in page and "bad" in page
  assert page.count("#1 &middot;") == 2  # one winner per prompt


@pytest.mark.slow
def test_interrupted_run_resumes_without_writing_anything_twice(scorer, tmp_path):
  entries = _write_inputs(tmp_path)
  manifest = str(tmp_path / "pairs.jsonl")
  full = tmp_path / "full.jsonl"
  run_score("unused", str(full), manifest=manifest, batch_size=3, scorer=scorer)

  out = tmp_path / "results.jsonl"
  first = _CountingScorer(scorer, fail_on=2)
  with pytest.raises(KeyboardInterrupt):
    run_score("unused", str(out), manifest=manifest, batch_size=3, scorer=first)
  written = _read(out)
  assert [r["id"] for r in written] == [e["id"] for e in entries[:3]]  # the first batch only
  with open(out, "a") as f:  # a kill in the middle of writing a row
    f.write('{"id": "r3", "image": "img/3.pn')

  second = _CountingScorer(scorer)
  summary = run_score("unused", str(out), manifest=manifest, batch_size=3, scorer=second)
  assert summary["resumed"] == 3 and summary["new"] == 5
  assert second.pairs == 4  # the five rows left, one of them the corrupt image
  rows = _read(out)
  assert [r["id"] for r in rows] == [e["id"] for e in entries]
  for r, f in zip(rows, _read(full), strict=True):
    assert r.get("scores") == pytest.approx(f.get("scores"), abs=1e-6) or "error" in r

  third = _CountingScorer(scorer)
  run_score("unused", str(out), manifest=manifest, batch_size=3, scorer=third)
  assert third.calls == 0 and len(_read(out)) == len(entries)


@pytest.mark.slow
def test_a_results_file_of_another_manifest_is_refused(scorer, tmp_path):
  _write_inputs(tmp_path)
  out = tmp_path / "results.jsonl"
  out.write_text(json.dumps({"id": "r0", "image": "other.png", "prompt": "x"}) + "\n")
  with pytest.raises(ValueError, match="written for another manifest"):
    run_score("unused", str(out), manifest=str(tmp_path / "pairs.jsonl"), scorer=scorer)


@pytest.mark.slow
def test_image_folder_mode_lists_every_file(scorer, tmp_path):
  _write_inputs(tmp_path, n=3)
  (tmp_path / "img" / "notes.txt").write_text("not an image")
  out = tmp_path / "results.jsonl"
  summary = run_score(
    "unused", str(out), images=str(tmp_path / "img"), prompt="a cat", scorer=scorer
  )
  rows = _read(out)
  assert [r["id"] for r in rows] == ["0.png", "1.png", "2.png", "bad.png", "notes.txt"]
  assert summary["errors"] == 2 and all(r["prompt"] == "a cat" for r in rows)


def _cli(*args):
  env = {k: v for k, v in os.environ.items() if k != "RAHF_DEBUG"}
  proc = subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", "score", *args],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=env,
    timeout=600,
  )
  return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(
  "args, message",
  [
    (["--workdir=/w", "--out=/tmp/r.jsonl"], "needs exactly one of --manifest FILE or --images"),
    (["--workdir=/w", "--out=/tmp/r.jsonl", "--images=/tmp"], "needs --prompt TEXT"),
    (["--out=/tmp/r.jsonl", "--images=/tmp", "--prompt=a"], "`rahf-jax score` needs --workdir"),
    (
      ["--workdir=/w", "--out=/tmp/r.jsonl", "--manifest=/nonexistent.jsonl"],
      "manifest '/nonexistent.jsonl' not found",
    ),
    (
      ["--workdir=/w", "--out=/tmp/r.jsonl", "--images=/nonexistent", "--prompt=a"],
      "--images '/nonexistent' is not a folder",
    ),
    (
      ["--workdir=/w", "--out=/tmp/r.jsonl", "--images=/tmp", "--prompt=a", "--weights=pretty=1"],
      "unknown score types ['pretty'] in weights",
    ),
    (
      ["--workdir=/w", "--out=/tmp/r.jsonl", "--images=/tmp", "--prompt=a", "--batch_size=0"],
      "--batch_size must be a positive integer",
    ),
  ],
)
def test_user_errors_are_one_line(args, message):
  code, _, stderr = _cli(*args)
  lines = [line for line in stderr.splitlines() if line.startswith("rahf-jax")]
  assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
  assert message in lines[0]


def test_bad_manifest_line_and_missing_workdir(tmp_path):
  (tmp_path / "m.jsonl").write_text('{"image": "a.png", "prompt": "x"}\n{"image": 3}\n')
  code, _, stderr = _cli(
    "--workdir=/w", f"--out={tmp_path / 'r.jsonl'}", f"--manifest={tmp_path / 'm.jsonl'}"
  )
  assert code == 2 and f"manifest {tmp_path / 'm.jsonl'}:2 needs string" in stderr
  (tmp_path / "m.jsonl").write_text('{"image": "a.png", "prompt": "x"}\n')
  code, _, stderr = _cli(
    "--workdir=/nonexistent/run",
    f"--out={tmp_path / 'r.jsonl'}",
    f"--manifest={tmp_path / 'm.jsonl'}",
  )
  assert code == 2 and "is not a training workdir" in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_cli_end_to_end(workdir, tmp_path):
  _write_inputs(tmp_path, n=5)
  out = tmp_path / "results.jsonl"
  masks, gallery = f"--masks={tmp_path / 'masks'}", f"--gallery={tmp_path / 'g.html'}"
  code, stdout, stderr = _cli(
    f"--workdir={workdir}",
    f"--images={tmp_path / 'img'}",
    "--prompt=a red circle",
    f"--out={out}",
    "--rank",
    "--batch_size=4",
    masks,
    gallery,
  )
  assert code == 0, stderr[-3000:]
  assert "score: 4/6 rows" in stderr and "rows/s  ETA" in stderr  # the progress line
  assert "6 rows in" in stdout and "1 unreadable: bad.png" in stdout
  rows = _read(out)
  assert sorted(r["rank"] for r in rows if "rank" in r) == [1, 2, 3, 4, 5]
  assert len(os.listdir(tmp_path / "masks")) == 5 and (tmp_path / "g.html").stat().st_size > 1000
