"""The synthetic generator's ground truth, for measuring what RAHF's uses do to an image.

rahf_jax.data.synthetic_scenes draws a prompt and its image together and records in each scene's
`latent` what its scores come from. Measuring best-of-n needs several images for one prompt, and
measuring a repair needs the truth after a region is repainted; this module gives both, in numpy
(no TensorFlow):

  * `split_scene(seed, split, index, size)`: the scene the synthetic data holds at that place
    (rahf_jax.data.synthetic seeds example `index` of a split with [seed, split id, index]).
  * `candidate_scene(scene, rng)`: another generation for the same prompt. The prompt's objects,
    background and wording stay; everything make_scene draws after the prompt is drawn afresh
    from `rng` with make_scene's probabilities: each object's fate (drawn as named, missing,
    wrong colour, wrong shape), a wrong background, the layout and shading, 0-2 artifacts, the
    annotators' maps and the noisy ratings.
  * `true_scores(scene)`: the noiseless scores make_scene derives from the picture (before the
    annotators' Likert noise), under the model's score names.
  * `flaw_count(scene)`: artifacts + objects not drawn as named + a wrong background colour.
  * `artifact_regions(scene)`: each artifact's pixels: the patch make_scene replaced (noise,
    warp: the square of half-extent h around its centre; broken: the band of rows above the
    object's centre that make_scene shifted sideways).
  * `repaired_truth(scene, painted)`: an artifact counts as repaired when at least
    REPAIR_COVERAGE (half) of its pixels lie in the painted mask, whatever the inpainter put
    there; the true plausibility after is make_scene's formula, exp(-12 * area), over the
    artifacts that remain (each counts its (2h)^2 as in make_scene, the total capped at 1).
"""

import math

import numpy as np
from PIL import Image, ImageDraw

from rahf_jax import features as F
from rahf_jax.data import synthetic_scenes as S

SPLIT_IDS = {"train": 0, "dev": 1, "test": 2}  # as rahf_jax.data.synthetic.SPLIT_IDS
REPAIR_COVERAGE = 0.5
WRONG_BACKGROUND_PROB = 0.06  # make_scene's chance of drawing another background colour


def split_scene(seed: int, split: str, index: int, size: int = 256) -> S.Scene:
  """Example `index` of `split` in the synthetic data written with `seed` and `size`."""
  return S.make_scene(np.random.default_rng([seed, SPLIT_IDS[split], index]), size)


def true_scores(scene: S.Scene) -> dict[str, float]:
  """{score type: noiseless value} (features.SCORE_TYPES order) of a scene."""
  true = scene.latent["true_scores"]
  return {s: float(true[F.SCORE_SOURCE_KEYS[s]]) for s in F.SCORE_TYPES}


def flaw_count(scene: S.Scene) -> int:
  """Artifacts + objects not drawn as the prompt names them + a wrong background colour."""
  latent = scene.latent
  wrong = sum(o["fate"] != "ok" for o in latent["objects"])
  return len(latent["artifacts"]) + wrong + int(latent["drawn_background"] != latent["background"])


def _region(artifact, size: int) -> tuple[slice, slice]:
  cx, cy, half, kind = artifact
  if kind == "broken":  # make_scene: rows above the centre, shifted sideways
    r = half
    x0, x1 = int(max(cx - r - 2, 0)), int(min(cx + r + 2, size))
    return slice(int(max(cy - r - 2, 0)), int(cy)), slice(x0, x1)
  x0, x1, y0, y1 = (int(v) for v in (cx - half, cx + half, cy - half, cy + half))
  return slice(y0, y1), slice(x0, x1)


def artifact_regions(scene: S.Scene) -> list[np.ndarray]:
  """One bool [S, S] mask per artifact: the pixels make_scene replaced."""
  size = scene.image.shape[0]
  out = []
  for artifact in scene.latent["artifacts"]:
    region = np.zeros((size, size), bool)
    region[_region(artifact, size)] = True
    out.append(region)
  return out


def flaw_mask(scene: S.Scene) -> np.ndarray:
  """bool [S, S]: the union of the scene's artifact regions (its true implausible pixels)."""
  size = scene.image.shape[0]
  return np.logical_or.reduce([np.zeros((size, size), bool), *artifact_regions(scene)])


def plausibility_of(artifacts, size: int) -> float:
  """make_scene's noiseless plausibility of an image holding `artifacts` [(cx, cy, h, kind)]."""
  area = min(1.0, sum((2 * h) ** 2 for _, _, h, _ in artifacts) / size**2)
  return math.exp(-12 * area)


def repaired_truth(scene: S.Scene, painted: np.ndarray, coverage: float = REPAIR_COVERAGE):
  """What repainting `painted` (bool [S, S]) did to the scene's artifacts, by the truth.

  Returns {"repaired": [bool per artifact], "remaining": artifacts not repaired,
  "plausibility": the true plausibility of the repainted image}.
  """
  painted = np.asarray(painted, bool)
  size = scene.image.shape[0]
  if painted.shape != (size, size):
    raise ValueError(f"painted mask must be [{size}, {size}] like the image, got {painted.shape}.")
  repaired = [bool(painted[r].mean() >= coverage) for r in artifact_regions(scene)]
  artifacts = scene.latent["artifacts"]
  remaining = [a for a, done in zip(artifacts, repaired, strict=True) if not done]
  return {
    "repaired": repaired,
    "remaining": remaining,
    "plausibility": plausibility_of(remaining, size),
  }


# A scene for the same prompt: make_scene's steps after the prompt's objects are chosen.


def _template_of(scene: S.Scene):
  objects, bg = scene.latent["objects"], scene.latent["background"]
  for template in S.TEMPLATES:
    if " ".join(t for t, _ in S.prompt_tokens(objects, bg, False, template)) == scene.prompt:
      return template
  raise ValueError(f"scene {scene.uid}: its prompt {scene.prompt!r} matches no template.")


def scores_from(image: np.ndarray, coverage: float, artifacts, attribute_labels) -> dict:
  """make_scene's noiseless source scores of a rendered image (uint8 [S, S, 3]) whose objects
  cover `coverage` of it, holding `artifacts`, with the labels of its colour and shape words."""
  size = image.shape[0]
  colourfulness = min(1.0, S._colourfulness(image) / 110)
  composition = max(0.0, 1 - abs(coverage - 0.2) / 0.2)
  true = {
    "artifact_score": plausibility_of(artifacts, size),
    "misalignment_score": float(np.mean(attribute_labels)),
    "aesthetics_score": 0.6 * colourfulness + 0.4 * composition,
  }
  true["overall_score"] = (
    0.4 * true["artifact_score"] + 0.3 * true["misalignment_score"] + 0.3 * true["aesthetics_score"]
  )
  return true


def candidate_scene(scene: S.Scene, rng: np.random.Generator) -> S.Scene:
  """Another image for `scene`'s prompt, with flaws drawn afresh (see the module docstring)."""
  size = scene.image.shape[0]
  template = _template_of(scene)
  uid = S.new_uid(rng)
  names = list(S.COLOURS)
  bg = scene.latent["background"]
  objects = []
  for old in scene.latent["objects"]:
    colour, shape = old["colour"], old["shape"]
    fate = S.FATES[rng.choice(len(S.FATES), p=S.FATE_PROBS)]
    drawn_colour, drawn_shape = colour, shape
    if fate == "wrong_colour":
      drawn_colour = rng.choice([c for c in names if c not in (colour, bg)])
    elif fate == "wrong_shape":
      drawn_shape = rng.choice([s for s in S.SHAPES if s != shape])
    objects.append(dict(colour=colour, shape=shape, fate=fate, drawn=fate != "missing",
                        drawn_colour=str(drawn_colour), drawn_shape=str(drawn_shape)))  # fmt: skip
  bg_wrong = rng.random() < WRONG_BACKGROUND_PROB
  drawn_bg = rng.choice([c for c in names if c != bg]) if bg_wrong else bg
  all_tokens = S.prompt_tokens(objects, bg, bg_wrong, template)
  words = [t.rstrip(",.") for t, _ in all_tokens]
  labels = [label for _, label in all_tokens]

  img = S._background(rng, S.COLOURS[drawn_bg], size)
  canvas = Image.fromarray(img.astype(np.uint8))
  mask = Image.new("L", (size, size), 0)
  draw, mdraw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
  for o, (cx, cy, r) in zip(objects, S._place(rng, len(objects), size), strict=True):
    o.update(cx=cx, cy=cy, r=r)
    if o["drawn"]:
      square = o["drawn_shape"] in ("square", "diamond")
      rot = rng.uniform(-0.3, 0.3) if square else rng.uniform(0, 2 * math.pi)
      shade = np.clip(np.array(S.COLOURS[o["drawn_colour"]]) + rng.normal(0, 8, 3), 0, 255)
      S._draw(draw, o["drawn_shape"], cx, cy, r, rot, tuple(int(v) for v in shade))
      S._draw(mdraw, o["drawn_shape"], cx, cy, r, rot, 255)
  img = np.asarray(canvas).astype(np.float32)
  artifacts = S._apply_artifacts(rng, img, objects, size)
  img = np.clip(img, 0, 255).astype(np.uint8)

  artifact_map = S._annotate_map(rng, [(x, y, h) for x, y, h, _ in artifacts], size)
  wrong = [(o["cx"], o["cy"], o["r"]) for o in objects
           if o["fate"] in ("wrong_colour", "wrong_shape")]  # fmt: skip
  misalignment_map = S._annotate_map(rng, wrong, size)
  attribute = [lab for w, lab in zip(words, labels, strict=True) if w in S.COLOURS or w in S.SHAPES]
  coverage = float(np.asarray(mask).mean() / 255)
  true = scores_from(img, coverage, artifacts, attribute)
  scores = {k: S.likert_score(rng, v) for k, v in true.items()}
  latent = dict(
    artifact_area=min(1.0, sum((2 * h) ** 2 for _, _, h, _ in artifacts) / size**2),
    aligned_fraction=float(np.mean(attribute)),
    coverage=coverage,
    true_scores=true,
    objects=objects,
    artifacts=artifacts,
    background=bg,
    drawn_background=str(drawn_bg),
  )
  return S.Scene(uid, scene.prompt, words, labels, img, artifact_map, misalignment_map, scores,
                 latent)  # fmt: skip
