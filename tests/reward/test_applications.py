"""Best-of-n and repair measured against the synthetic truth: the truth itself (scores, flaws,
what a repainted region repairs), the picks and tallies with stand-in scorers whose answers are
known, and `rahf-jax demo --applications` end to end on a tiny trained model."""

import hashlib
import json
import os

import numpy as np
import pytest

from rahf_jax.reward import ScoreResult, applications_report
from rahf_jax.reward import applications as A
from rahf_jax.reward import synthetic_truth as T

S = T.S  # rahf_jax.data.synthetic_scenes
SIZE = 96
QUALITY = 90


def _scenes(n, split="test"):
  return [T.split_scene(0, split, i, SIZE) for i in range(n)]


def test_the_truth_is_make_scenes_own():
  """The recomputed scores and labels equal those make_scene recorded (the candidate generator
  reuses these functions)."""
  for scene in _scenes(24):
    attribute = [lab for w, lab in zip(scene.words, scene.labels, strict=True)
                 if w in S.COLOURS or w in S.SHAPES]  # fmt: skip
    lat = scene.latent
    assert T.scores_from(
      scene.image, lat["coverage"], lat["artifacts"], attribute
    ) == pytest.approx(lat["true_scores"], abs=1e-12)
    bg_wrong = lat["drawn_background"] != lat["background"]
    tokens = S.prompt_tokens(lat["objects"], lat["background"], bg_wrong, T._template_of(scene))
    assert " ".join(t for t, _ in tokens) == scene.prompt and [x for _, x in tokens] == scene.labels


def test_artifact_regions_hold_the_pixels_make_scene_changed():
  scene = next(s for s in _scenes(20) if sum(o["drawn"] for o in s.latent["objects"]) >= 2)
  kinds = set()
  for k in range(40):
    img = scene.image.astype(np.float32)
    artifacts = S._apply_artifacts(np.random.default_rng(k), img, scene.latent["objects"], SIZE)
    changed = np.abs(img - scene.image).max(-1) > 0
    fake = S.Scene("", "", [], [], scene.image, None, None, {}, {"artifacts": artifacts})
    regions = T.artifact_regions(fake)
    assert not (changed & ~np.logical_or.reduce([changed & False, *regions])).any()
    for (*_, kind), region in zip(artifacts, regions, strict=True):
      assert changed[region].mean() > 0.05, kind
      kinds.add(kind)
  assert kinds == {"noise", "warp", "broken"}


def test_a_flaw_is_repaired_when_at_least_half_its_pixels_are_painted():
  scene = next(s for s in _scenes(40) if len(s.latent["artifacts"]) == 1)
  (region,) = T.artifact_regions(scene)
  before = T.repaired_truth(scene, np.zeros_like(region))
  assert before["repaired"] == [False]
  assert before["plausibility"] == pytest.approx(scene.latent["true_scores"]["artifact_score"])
  assert before["plausibility"] < 1
  rows = np.flatnonzero(region.any(1))
  for share, repaired in ((0.4, False), (0.6, True)):
    painted = region.copy()
    painted[rows[int(share * len(rows)) :]] = False  # the top `share` of its rows
    truth = T.repaired_truth(scene, painted)
    assert truth["repaired"] == [repaired]
    assert truth["plausibility"] == (1.0 if repaired else before["plausibility"])


def test_candidates_share_the_prompt_and_draw_their_flaws_afresh():
  scene = _scenes(1)[0]
  cands = [T.candidate_scene(scene, np.random.default_rng([0, 100, 0, j])) for j in range(16)]
  again = T.candidate_scene(scene, np.random.default_rng([0, 100, 0, 3]))
  np.testing.assert_array_equal(again.image, cands[3].image)
  assert {c.prompt for c in cands} == {scene.prompt}
  assert len({T.flaw_count(c) for c in cands}) > 1
  assert len({tuple(o["fate"] for o in c.latent["objects"]) for c in cands}) > 1
  assert len({round(T.true_scores(c)["overall"], 6) for c in cands}) > 8
  for c in cands:  # labels follow the fates drawn
    wrong = sum(o["fate"] != "ok" for o in c.latent["objects"])
    assert T.flaw_count(c) == len(c.latent["artifacts"]) + wrong + (
      c.latent["drawn_background"] != c.latent["background"]
    )
    assert T.true_scores(c)["alignment"] == pytest.approx(
      np.mean(
        [lab for w, lab in zip(c.words, c.labels, strict=True) if w in S.COLOURS or w in S.SHAPES]
      )  # fmt: skip
    )


def _key(image):
  return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


class LookupScorer:
  """Answers the true scores of the images it was told about (sign -1: their opposite), and for
  any other image plausibility 1 with an empty heatmap; heatmap: the image's true flaw mask."""

  def __init__(self, scenes, sign=1.0):
    self.scenes = {_key(A.stored_image(s.image, QUALITY)): s for s in scenes}
    self.sign = sign

  def score(self, images, prompts, heatmaps=False):
    out = []
    for image in images:
      scene = self.scenes.get(_key(image))
      if scene is None:
        out.append(ScoreResult(1.0, 1.0, 1.0, 1.0, np.zeros(image.shape[:2], np.float32)))
        continue
      true = T.true_scores(scene)
      vals = {k: 0.5 + self.sign * (v - 0.5) for k, v in true.items()}
      out.append(ScoreResult(**vals, implausibility_heatmap=T.flaw_mask(scene).astype(np.float32)))
    return out


def test_best_of_n_with_a_perfect_and_a_reversed_scorer():
  scenes = _scenes(3)
  cands = [T.candidate_scene(s, np.random.default_rng([0, A.CANDIDATE_STREAM, i, j]))
           for i, s in enumerate(scenes) for j in range(4)]  # fmt: skip
  ns, rankings = (1, 2, 4), {"overall": {"overall": 1.0}, "plausibility": {"plausibility": 1.0}}
  perfect = A.best_of_n_study(LookupScorer(cands), scenes, [0, 1, 2], 0, QUALITY, ns, rankings)
  worst = A.best_of_n_study(LookupScorer(cands, -1), scenes, [0, 1, 2], 0, QUALITY, ns, rankings)
  for name in rankings:
    one, *more = perfect[name]["rows"]
    assert one["rahf"] == one["random"] == one["oracle"] and one["gap_closed"] is None
    for row in more:
      assert row["rahf"] == pytest.approx(row["oracle"]) and row["gap_closed"] == pytest.approx(1)
      assert row["flaws_rahf"] == row["flaws_oracle"]
  overall = [T.true_scores(c)["overall"] for c in cands]
  best4 = np.mean([max(overall[4 * i : 4 * i + 4]) for i in range(3)])
  assert perfect["overall"]["rows"][2]["oracle"] == pytest.approx(best4)
  assert perfect["overall"]["rows"][2]["random"] == pytest.approx(np.mean(overall))
  assert worst["overall"]["rows"][2]["gap_closed"] < 0


def test_repair_rows_by_the_truth_with_a_perfect_heatmap():
  split = _scenes(40)
  scenes = [s for s in split if s.latent["artifacts"]][:4] + [
    next(s for s in split if not s.latent["artifacts"])
  ]
  figures = A.repair_study(LookupScorer(scenes), scenes, list(range(5)), 0, QUALITY, 0.5)
  inp, loop, one = figures["input"], figures["rahf_loop"], figures["rahf_one_round"]
  assert inp["flaw_pixels_painted"] == inp["mask_area"] == inp["artifacts_repaired"] == 0
  assert inp["true_plausibility"] == pytest.approx(
    np.mean([s.latent["true_scores"]["artifact_score"] for s in scenes])
  )
  # The flaw mask dilated: every flaw pixel painted, every artifact repaired, true plausibility 1.
  assert loop["flaw_pixels_painted"] == one["flaw_pixels_painted"] == 1.0
  assert loop["artifacts_repaired"] == 1.0 and loop["true_plausibility"] == 1.0
  assert 0 < loop["clean_pixels_painted"] < 0.1
  assert loop["predicted_plausibility"] == 1.0 and loop["mean_rounds_kept"] == pytest.approx(0.8)
  rnd = figures["random_mask"]
  assert rnd["mask_area"] == pytest.approx(one["mask_area"])
  assert rnd["flaw_pixels_painted"] < 0.6 and rnd["true_plausibility"] < 1.0
  gt = figures["ground_truth_heatmap"]
  assert gt["flaw_pixels_painted"] > rnd["flaw_pixels_painted"]


@pytest.mark.slow
def test_demo_applications_end_to_end_on_a_tiny_model(workdir, tmp_path):
  out = tmp_path / "demo_out"
  with pytest.raises(FileNotFoundError, match="holds no finished demo.*make demo"):
    applications_report.run(str(out))
  (out / "raw").mkdir(parents=True)
  os.symlink(workdir, out / "workdir")
  config = dict(seed=0, image_size=SIZE, num_test=2, num_dev=3, jpeg_quality=QUALITY)
  manifest = {"scene_version": S.SCENE_VERSION, "config": config}
  (out / "raw" / "synthetic_manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(FileNotFoundError, match="holds no finished demo"):
    applications_report.run(str(out))  # the demo has not finished: no REPORT.md
  (out / "REPORT.md").write_text("# rahf-jax demo report\n")
  md_path, json_path = applications_report.run(str(out), num_prompts=5)
  figures = json.loads(open(json_path).read())
  assert figures["num_prompts"] == 2 and figures["dev_scenes"] == 3
  assert [r["n"] for r in figures["best_of_n"]["alignment"]["rows"]] == list(A.NS)
  assert set(figures["repair"]) == set(applications_report.ROW_LABELS)
  text = open(md_path).read()
  assert "| 16 |" in text and "annotators' heatmap, one round (upper bound)" in text
