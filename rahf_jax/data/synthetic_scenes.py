"""Synthetic RichHF-style scenes: coloured shapes, misalignments, artifacts, annotators.

One scene = a prompt naming 1-3 coloured shapes on a coloured background, the
image "generated" for it (some named objects missing or drawn wrong, some
visible artifacts), and what three simulated annotators would label:
  * per-word labels (0 = misaligned) on the words of a missing / wrongly drawn object
    (its colour or shape word) and on a wrong background colour;
  * artifact and misalignment maps (512x512 uint8): each annotator clicks each
    artifact / wrong object it notices (jittered), every click a disk of radius 1/20
    of the map height; the three binary maps are averaged (0, 85, 170 or 255);
  * four scores from the picture: plausibility from artifact area, alignment from
    the fraction of aligned attribute words, aesthetics from colourfulness and
    composition of the rendered image, overall a mix; each turned into three noisy
    5-point Likert ratings whose mean is rescaled to [0, 1] (multiples of 1/12).
Nothing target-related is at a fixed pixel or in the uid/filename. Pure numpy + PIL.
"""

import dataclasses
import io
import math
import uuid

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
  "red": (215, 40, 40),
  "green": (40, 165, 60),
  "blue": (40, 80, 215),
  "yellow": (235, 210, 40),
  "purple": (135, 60, 175),
  "orange": (245, 135, 30),
  "white": (242, 242, 242),
  "black": (25, 25, 25),
  "pink": (240, 130, 185),
  "brown": (125, 80, 40),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
# (words before the objects, delimiter after the last object, words after); "{bg}" is the
# background colour and "{a}" its article.
TEMPLATES = (
  ((), "", ("on", "{a}", "{bg}", "background")),
  (("a", "picture", "of"), "", ("on", "{a}", "{bg}", "background")),
  (("an", "image", "showing"), ",", ("{bg}", "background")),
  ((), ".", ("{bg}", "background")),
)
FATES = ("ok", "missing", "wrong_colour", "wrong_shape")
FATE_PROBS = (0.7, 0.08, 0.11, 0.11)
# Bumped whenever a change makes the same seed draw different scenes (a demo regenerates its
# data when the version it recorded differs).
SCENE_VERSION = 3
MAP_SIZE = 512
DISK_RADIUS = MAP_SIZE / 20  # 1/20 of the map height
NUM_ANNOTATORS = 3


@dataclasses.dataclass
class Scene:
  """A rendered scene and its simulated labels."""

  uid: str
  prompt: str
  words: list[str]
  labels: list[int]
  image: np.ndarray  # uint8 [S, S, 3]
  artifact_map: np.ndarray  # uint8 [512, 512]
  misalignment_map: np.ndarray  # uint8 [512, 512]
  scores: dict[str, float]  # source keys: artifact_score, misalignment_score, ...
  latent: dict  # the quantities the scores come from (for tests and analysis)


def new_uid(rng: np.random.Generator) -> str:
  """A Pick-a-Pic-like uuid4 string drawn from `rng`."""
  return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def _shape_polygon(shape: str, cx: float, cy: float, r: float, rot: float):
  def ring(radii, n):
    return [
      (
        cx + radii[i % len(radii)] * math.sin(rot + 2 * math.pi * i / n),
        cy - radii[i % len(radii)] * math.cos(rot + 2 * math.pi * i / n),
      )
      for i in range(n)
    ]

  if shape == "square":
    return _rotated_square(cx, cy, r * 0.8, rot)
  if shape == "triangle":
    return ring([r], 3)
  if shape == "star":
    return ring([r, 0.45 * r], 10)
  if shape == "diamond":
    return [(cx, cy - r), (cx + 0.6 * r, cy), (cx, cy + r), (cx - 0.6 * r, cy)]
  raise ValueError(shape)


def _rotated_square(cx, cy, half, rot):
  corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
  c, s = math.cos(rot), math.sin(rot)
  return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


def _draw(draw: ImageDraw.ImageDraw, shape, cx, cy, r, rot, fill):
  if shape == "circle":
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
  else:
    draw.polygon(_shape_polygon(shape, cx, cy, r, rot), fill=fill)


def _place(rng, n, size):
  """Non-overlapping (cx, cy, r) for n objects (best effort)."""
  placed = []
  for _ in range(n):
    for _attempt in range(60):
      r = rng.uniform(0.09, 0.17) * size
      cx, cy = rng.uniform(r, size - r, size=2)
      if all(math.hypot(cx - x, cy - y) > r + q + 2 for x, y, q in placed):
        break
    placed.append((cx, cy, r))
  return placed


def _background(rng, rgb, size):
  base = np.array(rgb, np.float32)
  ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
  direction = rng.uniform(0, 2 * math.pi)
  grad = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None]
  img = base[None, None, :] + rng.uniform(8, 25) * grad[..., None]
  img += 3.0 * rng.standard_normal((size, size, 3), dtype=np.float32)
  return np.clip(img, 0, 255)


def _colourfulness(img: np.ndarray) -> float:
  """Hasler and Suesstrunk's colourfulness of an RGB image (about 0..150)."""
  r, g, b = (img[..., i].astype(np.float64) for i in range(3))
  rg, yb = r - g, 0.5 * (r + g) - b
  return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _disk_map(clicks, radius=DISK_RADIUS):
  """Union of disks of `radius` (map pixels) around the clicks, as a bool [512, 512] map."""
  out = np.zeros((MAP_SIZE, MAP_SIZE), bool)
  for x, y in clicks:
    x0, x1 = max(int(x - radius) - 1, 0), min(int(x + radius) + 2, MAP_SIZE)
    y0, y1 = max(int(y - radius) - 1, 0), min(int(y + radius) + 2, MAP_SIZE)
    if x0 >= x1 or y0 >= y1:
      continue
    yy, xx = np.ogrid[y0:y1, x0:x1]
    out[y0:y1, x0:x1] |= (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= radius**2
  return out


def _annotate_map(rng, regions, size, p_notice=0.85, p_false=0.03):
  """Three annotators click the regions (cx, cy, half-extent) they notice; averaged disks."""
  scale = MAP_SIZE / size
  total = np.zeros((MAP_SIZE, MAP_SIZE), np.float32)
  for _ in range(NUM_ANNOTATORS):
    clicks = []
    for cx, cy, half in regions:
      if rng.random() < p_notice:
        n_clicks = 1 + int(half * scale > 1.6 * DISK_RADIUS)
        for _ in range(n_clicks):
          jitter = rng.normal(0, 0.35 * half * scale, size=2)
          clicks.append((cx * scale + jitter[0], cy * scale + jitter[1]))
    if rng.random() < p_false:
      clicks.append(tuple(rng.uniform(0, MAP_SIZE, size=2)))
    total += _disk_map(clicks)
  return np.round(total / NUM_ANNOTATORS * 255).astype(np.uint8)


def likert_score(rng, true_value: float, noise: float = 0.6) -> float:
  """Mean of three noisy 1..5 ratings of `true_value` in [0, 1], rescaled to [0, 1]."""
  ratings = np.clip(np.rint(1 + 4 * true_value + rng.normal(0, noise, NUM_ANNOTATORS)), 1, 5)
  return float((ratings.mean() - 1) / 4)


def _apply_artifacts(rng, img, objects, size):
  """Adds 0-2 artifacts in place; returns [(cx, cy, half-extent, kind)]."""
  artifacts = []
  if rng.random() >= 0.5:
    return artifacts
  drawn = [o for o in objects if o["drawn"]]
  for _ in range(1 + int(rng.random() < 0.3)):
    # A warp of the smooth background is invisible, so warps (like breaks) sit on an object.
    kind = rng.choice(["noise", "warp", "broken"] if drawn else ["noise"])
    if kind == "broken":
      o = drawn[rng.integers(len(drawn))]
      cx, cy, r = o["cx"], o["cy"], o["r"]
      x0, x1 = int(max(cx - r - 2, 0)), int(min(cx + r + 2, size))
      y0, y1 = int(max(cy - r - 2, 0)), int(cy)
      shift = int(rng.choice([-1, 1]) * rng.uniform(0.35, 0.6) * r)
      img[y0:y1, x0:x1] = np.roll(img[y0:y1, x0:x1], shift, axis=1)
      artifacts.append((cx, cy, r, "broken"))
      continue
    half = rng.uniform(0.06, 0.13) * size
    if kind == "warp":
      o = drawn[rng.integers(len(drawn))]
      half = max(half, 0.9 * o["r"])
      cx = min(max(o["cx"], half), size - half)
      cy = min(max(o["cy"], half), size - half)
    else:
      cx, cy = rng.uniform(half, size - half, size=2)
    x0, x1, y0, y1 = (int(v) for v in (cx - half, cx + half, cy - half, cy + half))
    patch = img[y0:y1, x0:x1]
    if kind == "noise":
      noise = rng.uniform(0, 255, size=patch.shape)
      img[y0:y1, x0:x1] = 0.25 * patch + 0.75 * noise
    else:  # warp: rows displaced by a sinusoid, columns by another
      h, w = patch.shape[:2]
      amp = rng.uniform(0.15, 0.3) * half
      ys, xs = np.mgrid[0:h, 0:w]
      sx = np.clip(xs + amp * np.sin(2 * np.pi * ys / max(h / 2, 1)), 0, w - 1).astype(int)
      sy = np.clip(ys + amp * np.sin(2 * np.pi * xs / max(w / 2, 1)), 0, h - 1).astype(int)
      img[y0:y1, x0:x1] = patch[sy, sx]
    artifacts.append((cx, cy, half, str(kind)))
  return artifacts


def prompt_tokens(objects, background: str, bg_wrong: bool, template) -> list[tuple[str, int]]:
  """The prompt as (token, label) pairs for `objects` (dicts with colour, shape, fate) in order,
  on `background`, worded by `template` (one of TEMPLATES); label 0 marks a misaligned word."""
  tokens = []
  for i, o in enumerate(objects):
    if i and i == len(objects) - 1:
      tokens.append(("and", 1))
    colour_ok = o["fate"] not in ("missing", "wrong_colour")
    shape_ok = o["fate"] not in ("missing", "wrong_shape")
    sep = "," if len(objects) > 2 and i < len(objects) - 2 else ""
    tokens += [
      (_article(o["colour"]), 1),
      (o["colour"], int(colour_ok)),
      (o["shape"] + sep, int(shape_ok)),
    ]
  pre, delimiter, post = template
  last_word, last_label = tokens[-1]
  tokens[-1] = (last_word + delimiter, last_label)
  post_tokens = []
  for w in post:
    if w == "{bg}":
      post_tokens.append((background, int(not bg_wrong)))
    else:
      post_tokens.append((_article(background) if w == "{a}" else w, 1))
  return [(w, 1) for w in pre] + tokens + post_tokens


def make_scene(rng: np.random.Generator, size: int = 256, uid: str | None = None) -> Scene:
  """Draws one random scene (prompt, image, labels, maps, scores) from `rng`."""
  uid = uid or new_uid(rng)
  names = list(COLOURS)
  bg = names[rng.integers(len(names))]
  n = int(rng.integers(1, 4))
  pairs = set()
  while len(pairs) < n:
    colour = names[rng.integers(len(names))]
    if colour != bg:
      pairs.add((colour, SHAPES[rng.integers(len(SHAPES))]))
  objects = []
  # sorted() first: a set's order follows the per-process string hash (PYTHONHASHSEED).
  for colour, shape in sorted(sorted(pairs), key=lambda p: rng.random()):
    fate = FATES[rng.choice(len(FATES), p=FATE_PROBS)]
    drawn_colour, drawn_shape = colour, shape
    if fate == "wrong_colour":
      drawn_colour = rng.choice([c for c in names if c not in (colour, bg)])
    elif fate == "wrong_shape":
      drawn_shape = rng.choice([s for s in SHAPES if s != shape])
    objects.append(
      dict(
        colour=colour,
        shape=shape,
        fate=fate,
        drawn=fate != "missing",
        drawn_colour=str(drawn_colour),
        drawn_shape=str(drawn_shape),
      )
    )
  bg_wrong = rng.random() < 0.06
  drawn_bg = rng.choice([c for c in names if c != bg]) if bg_wrong else bg

  # Prompt as (token, label) pairs; tokens hold at most a trailing delimiter.
  template = TEMPLATES[rng.integers(len(TEMPLATES))]
  all_tokens = prompt_tokens(objects, bg, bg_wrong, template)
  prompt = " ".join(t for t, _ in all_tokens)
  words = [t.rstrip(",.") for t, _ in all_tokens]
  labels = [label for _, label in all_tokens]

  # Render.
  img = _background(rng, COLOURS[drawn_bg], size)
  canvas = Image.fromarray(img.astype(np.uint8))
  mask = Image.new("L", (size, size), 0)
  draw, mdraw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
  for o, (cx, cy, r) in zip(objects, _place(rng, len(objects), size), strict=True):
    o.update(cx=cx, cy=cy, r=r)
    if o["drawn"]:
      rot = (
        rng.uniform(-0.3, 0.3)
        if o["drawn_shape"] in ("square", "diamond")
        else rng.uniform(0, 2 * math.pi)
      )
      shade = np.clip(np.array(COLOURS[o["drawn_colour"]]) + rng.normal(0, 8, 3), 0, 255)
      _draw(draw, o["drawn_shape"], cx, cy, r, rot, tuple(int(v) for v in shade))
      _draw(mdraw, o["drawn_shape"], cx, cy, r, rot, 255)
  img = np.asarray(canvas).astype(np.float32)
  artifacts = _apply_artifacts(rng, img, objects, size)
  img = np.clip(img, 0, 255).astype(np.uint8)

  # Maps.
  artifact_map = _annotate_map(rng, [(x, y, h) for x, y, h, _ in artifacts], size)
  wrong = [
    (o["cx"], o["cy"], o["r"]) for o in objects if o["fate"] in ("wrong_colour", "wrong_shape")
  ]
  misalignment_map = _annotate_map(rng, wrong, size)

  # Scores from the picture.
  artifact_area = min(1.0, sum((2 * h) ** 2 for _, _, h, _ in artifacts) / size**2)
  attribute = [
    lab for (t, lab), w in zip(all_tokens, words, strict=True) if w in COLOURS or w in SHAPES
  ]
  aligned_fraction = float(np.mean(attribute))
  coverage = float(np.asarray(mask).mean() / 255)
  colourfulness = min(1.0, _colourfulness(img) / 110)
  composition = max(0.0, 1 - abs(coverage - 0.2) / 0.2)
  true = {
    "artifact_score": math.exp(-12 * artifact_area),
    "misalignment_score": aligned_fraction,
    "aesthetics_score": 0.6 * colourfulness + 0.4 * composition,
  }
  true["overall_score"] = (
    0.4 * true["artifact_score"] + 0.3 * true["misalignment_score"] + 0.3 * true["aesthetics_score"]
  )
  scores = {k: likert_score(rng, v) for k, v in true.items()}
  latent = dict(
    artifact_area=artifact_area,
    aligned_fraction=aligned_fraction,
    coverage=coverage,
    colourfulness=colourfulness,
    true_scores=true,
    objects=objects,
    artifacts=artifacts,
    background=bg,
    drawn_background=str(drawn_bg),
  )
  return Scene(uid, prompt, words, labels, img, artifact_map, misalignment_map, scores, latent)


def encode_jpeg(img: np.ndarray, quality: int = 90) -> bytes:
  """JPEG bytes of an RGB uint8 image (Pick-a-Pic style)."""
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def encode_png(grey: np.ndarray) -> bytes:
  """PNG bytes of a single-channel uint8 map."""
  buf = io.BytesIO()
  Image.fromarray(grey, mode="L").save(buf, format="PNG", optimize=False)
  return buf.getvalue()


@dataclasses.dataclass
class EncodedScene:
  """A scene as the synthetic sources store it: its labels, and its media encoded (no pixels)."""

  uid: str
  prompt: str
  labels: list[int]
  scores: dict[str, float]
  artifact_png: bytes
  misalignment_png: bytes
  jpeg: bytes
  mirrored_jpeg: bytes  # the image mirrored left-right: a second generation for the same prompt


def encode_scene(
  seed: list[int], size: int, quality: int, mirrored_quality: int
) -> tuple[EncodedScene, np.random.Generator]:
  """make_scene of the generator seeded by `seed`, encoded; returns the generator too, in the
  state make_scene left it (callers draw more from it). Its work is in numpy and PIL, which
  release the GIL, so a thread pool runs it in parallel."""
  rng = np.random.default_rng(seed)
  scene = make_scene(rng, size)
  encoded = EncodedScene(
    uid=scene.uid,
    prompt=scene.prompt,
    labels=scene.labels,
    scores=scene.scores,
    artifact_png=encode_png(scene.artifact_map),
    misalignment_png=encode_png(scene.misalignment_map),
    jpeg=encode_jpeg(scene.image, quality),
    mirrored_jpeg=encode_jpeg(np.ascontiguousarray(scene.image[:, ::-1]), mirrored_quality),
  )
  return encoded, rng
