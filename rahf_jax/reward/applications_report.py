"""`rahf-jax demo --applications`: the applications study on a finished demo, as Markdown + JSON.

Reads <out>/workdir (the demo's trained model) and <out>/raw/synthetic_manifest.json (how its
synthetic data was drawn), runs rahf_jax.reward.applications and writes <out>/APPLICATIONS.md
and <out>/applications.json.
"""

import datetime
import json
import os
import platform
from collections.abc import Mapping

from rahf_jax.reward import applications as A

DEFAULT_NUM_PROMPTS = 200  # the demo's whole test split: about a minute on 2 CPU cores
MANIFEST = os.path.join("raw", "synthetic_manifest.json")

ROW_LABELS = {
  "input": "none (the input image)",
  "rahf_loop": "RAHF heatmap, repair loop (rounds kept while predicted plausibility rises)",
  "rahf_one_round": "RAHF heatmap, one round",
  "ground_truth_heatmap": "annotators' heatmap, one round (upper bound)",
  "random_mask": "random mask: RAHF's one-round mask randomly shifted, one round (baseline)",
}


def demo_inputs(out_dir: str) -> tuple[str, dict]:
  """(workdir, the synthetic data's config) of a finished demo in out_dir (one with REPORT.md, a
  trained workdir and raw/synthetic_manifest.json), or a one-line error."""
  from rahf_jax.data import synthetic_scenes  # noqa: PLC0415 (the data layer)
  from rahf_jax.sharding import workdir_files  # noqa: PLC0415

  workdir = os.path.join(out_dir, "workdir")
  manifest_path = os.path.join(out_dir, MANIFEST)
  run_first = f"run `make demo DEMO_OUT={out_dir}` (or `rahf-jax demo --out {out_dir}`) first"
  has_model = os.path.exists(os.path.join(workdir, "config.json")) and (
    workdir_files.checkpoint_steps(workdir) or workdir_files.checkpoint_steps(workdir, best=True)
  )
  finished = os.path.exists(os.path.join(out_dir, "REPORT.md"))  # the demo's last output
  if not (finished and has_model and os.path.exists(manifest_path)):
    raise FileNotFoundError(f"{out_dir} holds no finished demo (REPORT.md, a trained workdir/ "
                            f"and raw/ are its outputs); {run_first}.")  # fmt: skip
  with open(manifest_path, encoding="utf-8") as f:
    manifest = json.load(f)
  if manifest.get("scene_version") != synthetic_scenes.SCENE_VERSION:
    raise ValueError(f"{manifest_path} was written by another version of the scene generator; "
                     f"{run_first}.")  # fmt: skip
  return workdir, manifest["config"]


def _pct(x) -> str:
  return "n/a" if x is None else f"{100 * x:.1f}%"


def _best_of_n_md(name: str, table: Mapping) -> str:
  mix = ", ".join(f"{k}={v:g}" for k, v in table["weights"].items())
  lines = [
    f"### Ranked by {name} ({mix})",
    "",
    f"| n | true {name}: RAHF | random | oracle | gap closed (95% interval) "
    "| flaws: RAHF | random | oracle |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in table["rows"]:
    gap = "n/a"
    if r["gap_closed"] is not None:
      lo, hi = r["gap_closed_95"]
      gap = f"{r['gap_closed']:.2f} ({lo:.2f} to {hi:.2f})"
    lines.append(
      f"| {r['n']} | {r['rahf']:.3f} | {r['random']:.3f} | {r['oracle']:.3f} | {gap} | "
      f"{r['flaws_rahf']:.2f} | {r['flaws_random']:.2f} | {r['flaws_oracle']:.2f} |"
    )
  return "\n".join(lines)


def repair_md(repair: Mapping) -> str:
  """The repair table (one row per mask)."""
  lines = [
    "| mask | area | flaw pixels painted | clean pixels painted | artifacts repaired "
    "| predicted plausibility | true plausibility | true plausibility, images with artifacts |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for key, label in ROW_LABELS.items():
    r = repair[key]
    flawed = (
      "n/a" if r["true_plausibility_flawed"] is None else f"{r['true_plausibility_flawed']:.3f}"
    )
    lines.append(
      f"| {label} | {_pct(r['mask_area'])} | {_pct(r['flaw_pixels_painted'])} | "
      f"{_pct(r['clean_pixels_painted'])} | {_pct(r['artifacts_repaired'])} | "
      f"{r['predicted_plausibility']:.3f} | {r['true_plausibility']:.3f} | {flawed} |"
    )
  return "\n".join(lines)


def to_markdown(figures: Mapping) -> str:
  """APPLICATIONS.md from run_applications' figures (with the "meta" written by `run`)."""
  meta = figures["meta"]
  loop = figures["repair"]["rahf_loop"]
  ious = ", ".join(
    f"{t}: {v:.3f}" for t, v in figures["mask_threshold"]["iou_by_threshold"].items()
  )
  bon = "\n\n".join(_best_of_n_md(n, t) for n, t in figures["best_of_n"].items())
  stops = ", ".join(f"{k}: {v}" for k, v in sorted(loop["stop_reasons"].items()))
  return (
    "# RAHF's uses, measured against the synthetic truth\n\n"
    f"Model: `{meta['workdir']}`, checkpoint step {meta['checkpoint_step']} "
    f"({meta['checkpoint']}). "
    f"The first {figures['num_prompts']} prompts of the synthetic test split; measured "
    f"{meta['date']} on {meta['machine']} in {sum(figures['timings_s'].values()):.0f} s. "
    "Definitions: docs/applications.md.\n\n"
    f"## Best-of-n\n\n{figures['candidates_per_prompt']} candidate images per prompt, drawn by "
    "the synthetic generator with its usual random flaws. Values are the TRUE (noiseless) "
    "scores of the picked image, averaged over prompts; random is the expected value of a "
    "uniformly random pick; oracle picks by the true score; gap closed = (RAHF - random) / "
    "(oracle - random). Flaws: artifacts + objects not drawn as named + a wrong background.\n\n"
    f"{bon}\n\n"
    "## Repair (heatmap-guided inpainting, OpenCV Telea)\n\n"
    f"Mask threshold {figures['mask_threshold']['threshold']:g}, chosen on "
    f"{figures['dev_scenes']} dev images by the IoU of RAHF's mask with the annotators' ({ious}). "
    f"Loop: up to {figures['rounds']} rounds; mean rounds kept {loop['mean_rounds_kept']:.2f}; "
    f"stopped by {stops}. Pixel shares are pooled over the split; an artifact is repaired when "
    "at least half its pixels were painted; true plausibility = exp(-12 x the area of the "
    "artifacts left).\n\n"
    f"{repair_md(figures['repair'])}\n"
  )


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
  except OSError:
    names = []
  return names[0] if names else f"{platform.machine()} ({platform.system()})"


def run(out_dir: str, num_prompts: int = DEFAULT_NUM_PROMPTS) -> tuple[str, str]:
  """The study on the demo in out_dir; writes APPLICATIONS.md and applications.json there and
  returns their paths."""
  from rahf_jax.inference.predictor import use_best  # noqa: PLC0415
  from rahf_jax.reward.scorer import Scorer  # noqa: PLC0415

  out_dir = os.path.abspath(out_dir)
  workdir, data_config = demo_inputs(out_dir)
  best = use_best(workdir, None)
  scorer = Scorer.from_workdir(workdir, best=best, batch_size=A.CHUNK)
  figures = A.run_applications(scorer, data_config, num_prompts)
  figures["meta"] = {
    "workdir": os.path.relpath(workdir, out_dir),
    "checkpoint": "the best by the dev metric" if best else "the newest",
    "checkpoint_step": getattr(scorer.predictor, "step", None),
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "machine": f"{_cpu_name()}, {len(os.sched_getaffinity(0))} CPU cores",
  }
  json_path = os.path.join(out_dir, "applications.json")
  md_path = os.path.join(out_dir, "APPLICATIONS.md")
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(figures, f, indent=2, default=str)
  with open(md_path, "w", encoding="utf-8") as f:
    f.write(to_markdown(figures))
  return md_path, json_path
