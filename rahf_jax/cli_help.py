"""`rahf-jax <command> --help`: each command's own flags, one line each, and an example.

The flags themselves are defined in rahf_jax/cli.py, rahf_jax/reward/score_cli.py and
rahf_jax/reward/serve_cli.py; this file
says which command takes which flag and what it means there (`--out`, `--best`, `--split` mean a
little different things per command). A flag's default is read off its definition.
"""

import dataclasses

from absl import flags


@dataclasses.dataclass(frozen=True)
class Command:
  summary: str  # one line
  usage: str  # the arguments after `rahf-jax <command>`
  flags: tuple[tuple[str, str, str], ...]  # (flag name, value placeholder or "", meaning)
  example: str  # one command line


_WORKDIR = ("workdir", "DIR", "the training run (or `rahf-jax convert` output) to load")
_BEST = (
  "best",
  "",
  "the best checkpoint (by the run's best_metric); --nobest: the newest. Default: the best "
  "where the run keeps one, else the newest",
)

COMMANDS: dict[str, Command] = {
  "train": Command(
    "train a RAHF model from a config into a workdir (resumes where it stopped)",
    "--config configs/rahf.py:<size>,<variant> --workdir DIR [--config.<field>=<value> ...]",
    (
      ("config", "FILE:ARG", "the config: configs/rahf.py:<size>,<variant>[,runlocal]"),
      ("config.<field>", "VALUE", "override one config field, e.g. --config.num_train_steps=300"),
      ("workdir", "DIR", "where checkpoints, config.json and TensorBoard logs go"),
    ),
    "rahf-jax train --config configs/rahf.py:tiny,multihead --workdir /tmp/rahf_tiny",
  ),
  "calibrate": Command(
    "choose the constrained decoder's mark bias on a held-out split (writes mark_bias.json)",
    "--workdir DIR [--split dev] [--data_dir D] [--best | --nobest]",
    (
      _WORKDIR,
      ("split", "NAME", "the held-out split to choose on (default here: dev)"),
      ("data_dir", "DIR", "the TFDS data dir holding richhf18k (default: the run's)"),
      _BEST,
    ),
    "rahf-jax calibrate --workdir demo_out/workdir",
  ),
  "eval": Command(
    "the paper's metrics of a checkpoint on a split: metrics.json, metrics.md, overlays",
    "--workdir DIR [--split test] [--data_dir D] [--out DIR] [flags]",
    (
      _WORKDIR,
      ("split", "NAME", "the split to evaluate: train, dev or test"),
      ("data_dir", "DIR", "the TFDS data dir holding richhf18k (default: the run's)"),
      ("out", "DIR", "where the report goes (default: <workdir>/eval_<split>)"),
      _BEST,
      ("max_batches", "N", "stop after N batches; -1: the whole split"),
      ("protocol", "NAME", "paper (the paper's metrics) or reproduction (the PyTorch one's)"),
      ("decoding", "NAME", "constrained (copy the prompt, choose the marks) or free (greedy)"),
      ("mark_bias", "B", "constrained decoding's mark bias (default: the calibrated one, else 0)"),
    ),
    "rahf-jax eval --workdir demo_out/workdir --split test --out /tmp/eval_test",
  ),
  "predict": Command(
    "scores, heatmaps and misaligned words of one image and its prompt (JSON, overlay PNG)",
    "--workdir DIR --image PATH --prompt TEXT [--out DIR] [--best | --nobest]",
    (
      _WORKDIR,
      ("image", "PATH", "the image file (PNG, JPEG, ...)"),
      ("prompt", "TEXT", "the text-to-image prompt it was generated from"),
      ("out", "DIR", "also write prediction.json and overlay.png here"),
      _BEST,
    ),
    'rahf-jax predict --workdir demo_out/workdir --image cat.png --prompt "a yellow cat" '
    "--out pred/",
  ),
  "score": Command(
    "score many (image, prompt) pairs into a resumable JSON-lines file; rank, masks, gallery",
    "--workdir DIR (--manifest F.jsonl | --images DIR --prompt TEXT) --out F.jsonl [flags]",
    (
      _WORKDIR,
      ("manifest", "FILE", 'JSON lines of {"image": PATH, "prompt": TEXT[, "id": ID]}'),
      ("images", "DIR", "a folder of images, all scored against --prompt"),
      ("prompt", "TEXT", "with --images: the prompt of them all"),
      ("out", "FILE", "the results file (JSON lines); a rerun continues after its rows"),
      ("words", "", "also decode the misaligned words (runs the decoder; slower)"),
      ("rank", "", "rank the images of each prompt by --weights (<out stem>.ranks.jsonl)"),
      (
        "weights",
        "MIX",
        "the ranking's mix of scores, e.g. overall=1 or plausibility=1,alignment=1",
      ),
      ("masks", "DIR", "write one inpainting-mask PNG per image here"),
      ("mask_threshold", "T", "--masks: the implausibility heat above which a pixel is masked"),
      ("mask_dilation", "PX", "--masks: grow the mask by this many pixels; -1: by the image size"),
      ("mask_min_area", "PX", "--masks: drop regions smaller than this; -1: by the image size"),
      ("gallery", "FILE", "write one self-contained HTML page of overlays, scores and ranks"),
      ("batch_size", "N", "pairs per model call (one compiled program per size)"),
      _BEST,
    ),
    "rahf-jax score --workdir demo_out/workdir --manifest pairs.jsonl --out results.jsonl --words",
  ),
  "serve": Command(
    "an HTTP reward server for training loops: POST /score, dynamic batching, /healthz, /readyz",
    "--workdir DIR [--host 127.0.0.1] [--port 8000] [--batch_size N] [flags]",
    (
      _WORKDIR,
      ("host", "ADDR", "the address to listen on (0.0.0.0: every interface)"),
      ("port", "N", "the TCP port; 0: any free one (printed, and written to --port_file)"),
      ("batch_size", "N", "pairs per model call: requests are batched into buckets of this size"),
      ("max_wait_ms", "MS", "the longest a pair waits for its batch to fill"),
      ("max_queue", "N", "pairs waiting to be scored before requests get 503 + Retry-After"),
      ("max_body_mb", "MB", "the largest request body; larger ones get 413"),
      ("max_image_pixels", "N", "the largest image (H * W, read from its header); larger: 413"),
      ("shutdown_timeout", "S", "on SIGTERM, how long to wait for the accepted requests"),
      ("port_file", "FILE", "write the bound port here once listening (for scripts)"),
      _BEST,
    ),
    "rahf-jax serve --workdir demo_out/workdir --port 8000 --batch_size 16 --max_wait_ms 10",
  ),
  "convert": Command(
    "convert the PyTorch reproduction's rahf_model.pt into a workdir that predicts and evaluates",
    "--checkpoint rahf_model.pt --spiece spiece.model --out DIR [--vit_num_heads N]",
    (
      ("checkpoint", "FILE", "the reproduction's state dict (rahf_model.pt)"),
      ("spiece", "FILE", "t5-base's SentencePiece model (spiece.model)"),
      ("out", "DIR", "the workdir to write (config.json, checkpoints/0, spiece.model)"),
      ("vit_num_heads", "N", "ViT attention heads, only for a non-standard ViT width"),
    ),
    "rahf-jax convert --checkpoint rahf_model.pt --spiece t5-base/spiece.model --out rahf_l16",
  ),
  "plan": Command(
    "compile a run's steps for a TPU slice (no TPU needed) or CPU devices: memory per chip, "
    "FLOPs, estimated step time, collectives; exit 1 when a step does not fit",
    "--config configs/rahf.py:<size>,<variant> --topology T [--steps S] [--out DIR]",
    (
      ("config", "FILE:ARG", "the config to plan: configs/rahf.py:<size>,<variant>"),
      ("config.<field>", "VALUE", "override one config field (mesh, batch size, ...)"),
      (
        "topology",
        "T",
        "a TPU slice as libtpu names it (v5e:8x8, v5p:2x4x4, v4:2x4x4, v6e:8x8), h100:N "
        "(N H100 GPUs, through the CUDA plugin), cpu:N (N fake CPU devices) or local (this "
        "runtime's devices)",
      ),  # fmt: skip
      ("steps", "LIST", "the steps to compile, comma-separated: train, eval, score"),
      ("out", "DIR", "write the plan's report here"),
      ("save_executables", "", "also write each compiled step's serialized executable to --out"),
    ),
    "rahf-jax plan --config configs/rahf.py:L16_t5base_384,multihead --topology v5e:8x8 "
    "--config.num_microbatches=2",
  ),
  "demo": Command(
    "synthetic RichHF-format data -> tfds build -> train the tiny model -> evaluate (~14 min)",
    "[--out demo_out] [--data_only | --applications [--num_prompts N]]",
    (
      ("out", "DIR", "where data, run, evaluation and REPORT.md go"),
      ("data_only", "", "only make and build the synthetic data"),
      (
        "applications",
        "",
        "after the demo: best-of-n and the repair loop measured against the synthetic truth "
        "(<out>/APPLICATIONS.md, applications.json; about a minute)",
      ),
      ("num_prompts", "N", "--applications: measure the first N test prompts"),
    ),
    "rahf-jax demo --out demo_out   (then: rahf-jax demo --applications --out demo_out)",
  ),
}

COMMON = (
  ("verbose", "", "also show the libraries' start-up notices (TensorFlow, CUDA, libtpu)"),
  ("help", "", "this help; --helpfull lists every flag of every command"),
)


def _default(name: str) -> str:
  if name not in flags.FLAGS or name in ("help", "verbose", "best"):
    return ""
  default = flags.FLAGS[name].default
  if default is None or default is False or default == "":
    return ""
  if isinstance(default, list):
    default = ",".join(default)
  return f" (default: {default})"


def _flag_lines(entries) -> list[str]:
  heads = [f"--{name}" + (f" {value}" if value else "") for name, value, _ in entries]
  width = max(len(h) for h in heads) + 2
  return [
    f"  {head:<{width}}{meaning}{_default(name)}"
    for head, (name, _, meaning) in zip(heads, entries, strict=True)
  ]


def command_help(command: str) -> str:
  """The text of `rahf-jax <command> --help`."""
  c = COMMANDS[command]
  return "\n".join(
    [
      f"usage: rahf-jax {command} {c.usage}",
      "",
      f"{c.summary[0].upper()}{c.summary[1:]}.",
      "",
      "flags:",
      *_flag_lines(c.flags + COMMON),
      "",
      "example:",
      f"  {c.example}",
      "",
    ]
  )


def overview() -> str:
  """The text of `rahf-jax --help`: the commands, one line each."""
  width = max(len(name) for name in COMMANDS) + 2
  lines = [f"  {name:<{width}}{c.summary}" for name, c in COMMANDS.items()]
  return "\n".join(
    [
      "usage: rahf-jax <command> [flags]",
      "",
      "commands:",
      *lines,
      "",
      "`rahf-jax <command> --help` lists a command's flags, with an example.",
      "",
    ]
  )
