"""`rahf-jax train | calibrate | eval | predict | score | serve | convert | plan | demo`: the CLI.

  rahf-jax train   --config configs/rahf.py:tiny,multihead --workdir DIR [--config.<field>=<value>]
  rahf-jax calibrate --workdir DIR [--split dev] [--data_dir D] [--best]
  rahf-jax eval    --workdir DIR --split test [--data_dir D] [--out DIR] [--best]
                   [--protocol paper|reproduction] [--decoding constrained|free] [--mark_bias B]
  rahf-jax predict --workdir DIR --image PATH --prompt TEXT [--out DIR]
  rahf-jax score   --workdir DIR (--manifest F.jsonl | --images DIR --prompt TEXT) --out F.jsonl
                   [--rank] [--masks DIR] [--gallery F.html] [--words] [--batch_size N]
  rahf-jax serve   --workdir DIR [--host 127.0.0.1] [--port 8000] [--batch_size N]
                   [--max_wait_ms MS] [--max_queue N] [--max_body_mb MB] [--max_image_pixels N]
  rahf-jax convert --checkpoint rahf_model.pt --spiece t5-base/spiece.model --out DIR
  rahf-jax plan    --config configs/rahf.py:<size>,<variant> --topology v5e:8x8|h100:8|cpu:8
                   [--steps train,eval,score] [--out DIR] [--save_executables]
  rahf-jax demo    [--out demo_out] [--data_only | --applications [--num_prompts N]]

`rahf-jax <command> --help` lists that command's flags with an example (rahf_jax/cli_help.py).
A mistake a user can make (a wrong path, an unknown config name, a workdir without checkpoint,
an unreadable image) ends in one line on stderr and exit status 2, without a traceback; set
RAHF_DEBUG=1 to see the traceback. The libraries' start-up notices (TensorFlow, CUDA, libtpu)
are left out unless --verbose or a TF_CPP_* logging variable is given (rahf_jax/quiet_start.py).
"""

import json
import logging
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from rahf_jax import cli_help, quiet_start
from rahf_jax.reward import score_cli, serve_cli

COMMANDS = tuple(cli_help.COMMANDS)
HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-?")

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "configs/<file>.py:<arg>", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "training run directory (checkpoints, config.json)")
_SPLIT = flags.DEFINE_string(
  "split", "test", "eval: dataset split (train, dev, test); calibrate: the held-out split (dev)"
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "eval: TFDS data dir (default: the run's)")
_OUT = flags.DEFINE_string("out", None, "output folder (eval, predict, plan, demo)")
_BEST = flags.DEFINE_bool(
  "best",
  None,
  "calibrate/eval/predict/score/serve: the best checkpoint; --nobest: the newest (default: the "
  "best where the run keeps one, else the newest)",
)
_IMAGE = flags.DEFINE_string("image", None, "predict: image file")
_PROMPT = flags.DEFINE_string("prompt", None, "predict: the text-to-image prompt")
_DATA_ONLY = flags.DEFINE_bool("data_only", False, "demo: only make and build the data")
_APPLICATIONS = flags.DEFINE_bool(
  "applications",
  False,
  "demo: measure best-of-n and the repair loop on the finished demo (APPLICATIONS.md)",
)
_NUM_PROMPTS = flags.DEFINE_integer(
  "num_prompts", 200, "demo --applications: the first N test prompts (the demo's split has 200)"
)
_MAX_BATCHES = flags.DEFINE_integer("max_batches", -1, "eval: stop after N batches (-1: all)")
_PROTOCOL = flags.DEFINE_enum(
  "protocol",
  "paper",
  ["paper", "reproduction"],
  "eval: the paper's metric definitions, or the PyTorch reproduction's evaluation choices",
)
_DECODING = flags.DEFINE_enum(
  "decoding",
  "constrained",
  ["constrained", "free"],
  "eval: misaligned words by copying the prompt and choosing the marks (constrained), or by "
  "greedy decoding over the whole vocabulary (free)",
)
_MARK_BIAS = flags.DEFINE_float(
  "mark_bias",
  None,
  "eval: constrained decoding's mark bias (default: the one `rahf-jax calibrate` recorded for "
  "the checkpoint, else 0)",
)
_TOPOLOGY = flags.DEFINE_string(
  "topology",
  None,
  "plan: the devices to compile for: a TPU slice as libtpu names it (v5e:8x8, v5p:2x4x4, "
  "v4:2x4x4, v6e:8x8), h100:N (N H100 GPUs, compile-only through the CUDA plugin), cpu:N (N "
  "fake CPU devices) or local (this runtime's devices)",
)
_STEPS = flags.DEFINE_list("steps", ["train", "eval", "score"], "plan: the steps to compile")
_SAVE_EXECUTABLES = flags.DEFINE_bool(
  "save_executables", False, "plan: also write each compiled step's serialized executable to --out"
)
_CHECKPOINT = flags.DEFINE_string(
  "checkpoint", None, "convert: the PyTorch RAHF reproduction's state dict (rahf_model.pt)"
)
_SPIECE = flags.DEFINE_string("spiece", None, "convert: the t5-base SentencePiece spiece.model")
_VERBOSE = flags.DEFINE_bool(
  "verbose", False, "also show the libraries' start-up notices (TensorFlow, CUDA, libtpu)"
)
_VIT_NUM_HEADS = flags.DEFINE_integer(
  "vit_num_heads", None, "convert: ViT attention heads (only for a non-standard ViT width)"
)

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, KeyError,
               ImportError)  # fmt: skip


def _required(flag, command: str):
  if not flag.value:
    raise ValueError(f"`rahf-jax {command}` needs --{flag.name}; see `rahf-jax {command} --help`.")
  return flag.value


def _train() -> None:
  from rahf_jax.train.loop import train_and_evaluate  # noqa: PLC0415

  config = _CONFIG.value
  if config is None:
    raise ValueError("`rahf-jax train` needs --config configs/rahf.py:<size>,<variant>.")
  try:
    _ = config.model  # a config file that failed to load raises on first use
  except (OSError, AttributeError) as e:
    raise ValueError(_flag_error_line(e)) from e
  train_and_evaluate(config, _required(_WORKDIR, "train"))


def _calibrate() -> None:
  from rahf_jax.evaluation.mark_calibration import calibrate_workdir  # noqa: PLC0415

  workdir = _required(_WORKDIR, "calibrate")
  split = _SPLIT.value if _SPLIT.present else "dev"
  record = calibrate_workdir(workdir, split, _DATA_DIR.value, _BEST.value)
  print("mark bias | F1 % (all examples) | F1 % (examples with a misaligned word)")
  for bias, f1 in record["f1_by_bias"].items():
    print(f"{float(bias):9.1f} | {100 * (f1 or 0):19.1f} | "
          f"{100 * (record['f1_gt_positive_by_bias'][bias] or 0):.1f}")  # fmt: skip
  print(f"chose mark bias {record['mark_bias']:g} on {split} ({record['num_examples']} examples); "
        f"wrote {workdir}/mark_bias.json")  # fmt: skip


def _eval() -> None:
  from rahf_jax.evaluation.evaluator import evaluate_workdir  # noqa: PLC0415
  from rahf_jax.inference.predictor import use_best  # noqa: PLC0415

  workdir = _required(_WORKDIR, "eval")
  out = _OUT.value or os.path.join(workdir, f"eval_{_SPLIT.value}")
  best = use_best(workdir, _BEST.value)
  evaluate_workdir(workdir, _SPLIT.value, _DATA_DIR.value, out, best, _MAX_BATCHES.value,
                   protocol=_PROTOCOL.value, decoding=_DECODING.value,
                   mark_bias=_MARK_BIAS.value)  # fmt: skip
  with open(os.path.join(out, "metrics.md"), encoding="utf-8") as f:
    print(f.read())
  print(f"wrote {out}/metrics.json, metrics.md, words.tsv, overlays/")


def _predict() -> None:
  from rahf_jax.inference.predict_files import predict_image_file  # noqa: PLC0415

  result = predict_image_file(
    _required(_WORKDIR, "predict"), _required(_IMAGE, "predict"), _required(_PROMPT, "predict"),
    _OUT.value, best=_BEST.value,
  )  # fmt: skip
  print(json.dumps(result, indent=2))


def _convert() -> None:
  from rahf_jax.train.convert import convert_reproduction  # noqa: PLC0415

  out = _required(_OUT, "convert")
  summary = convert_reproduction(
    _required(_CHECKPOINT, "convert"), _required(_SPIECE, "convert"), out, _VIT_NUM_HEADS.value
  )
  print(json.dumps(summary, indent=2))
  print(f"wrote {out}/ (config.json, checkpoints/0, spiece.model); use it with "
        f"`rahf-jax predict --workdir {out} ...` or `rahf-jax eval --workdir {out}`.")  # fmt: skip


def _plan() -> None:
  from rahf_jax.plan.plan_cli import run_plan  # noqa: PLC0415

  config = _CONFIG.value
  if config is None:
    raise ValueError("`rahf-jax plan` needs --config configs/rahf.py:<size>,<variant>.")
  try:
    _ = config.model
  except (OSError, AttributeError) as e:
    raise ValueError(_flag_error_line(e)) from e
  quiet = quiet_start.wants_quiet(_VERBOSE.value)
  sys.exit(run_plan(config, _required(_TOPOLOGY, "plan"), _STEPS.value, _OUT.value,
                    _SAVE_EXECUTABLES.value, quiet=quiet))  # fmt: skip


def _serve() -> None:
  serve_cli.run(_required(_WORKDIR, "serve"), _BEST.value)


def _demo() -> None:
  from rahf_jax.demo import run_applications, run_demo  # noqa: PLC0415

  if _APPLICATIONS.value:
    run_applications(_OUT.value or "demo_out", _NUM_PROMPTS.value)
    return
  run_demo(_OUT.value or "demo_out", data_only=_DATA_ONLY.value)


_RUN = {
  "train": _train,
  "calibrate": _calibrate,
  "eval": _eval,
  "predict": _predict,
  "score": score_cli.run,
  "serve": _serve,
  "convert": _convert,
  "plan": _plan,
  "demo": _demo,
}


class _QuietLibraries(logging.Filter):
  """Drops orbax's INFO chatter (several lines per checkpoint); keeps its warnings."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


_NEEDS_TENSORFLOW = ("train", "calibrate", "eval", "demo")  # they read the data pipeline


def _start(command: str) -> None:
  """Starts TensorFlow (kept off the GPUs) and JAX's backends, their notices left out.

  `plan` sets its own XLA flags and a distributed `train` calls jax.distributed.initialize()
  first: their JAX backends start later, in the command.
  """
  jax_backends = command != "plan"
  if command == "train" and _CONFIG.value is not None:
    try:
      jax_backends = not _CONFIG.value.get("distributed", False)
    except (OSError, AttributeError, KeyError):
      jax_backends = False  # a config that does not load: `_train` says why
  quiet_start.start(command in _NEEDS_TENSORFLOW, jax_backends, verbose=_VERBOSE.value)


def _dispatch(command: str):
  def run(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments {argv[1:]}; flags take the form --name=value.")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("absl").addFilter(_QuietLibraries())
    try:
      _start(command)
      _RUN[command]()
    except USER_ERRORS as e:
      if os.environ.get("RAHF_DEBUG"):
        raise
      message = e.args[0] if isinstance(e, KeyError) and e.args else e
      print(f"rahf-jax {command}: error: {message}", file=sys.stderr)
      sys.exit(2)

  return run


def _flag_error_line(e: BaseException) -> str:
  """One line out of a flag or config error (config_flags embeds the config file's traceback)."""
  if isinstance(e, KeyError | AttributeError) and e.args:  # an override of a missing field
    arg = e.args[0]
    while isinstance(arg, BaseException) and arg.args:  # AttributeError(KeyError(message))
      arg = arg.args[0]
    field, *hint = str(arg).strip('"').splitlines()
    return " ".join([f"the config has no field {field}; check --config.<field>.", *hint])
  text = f"{e}\n{e.__cause__ or ''}"
  if "No such file or directory" in text:
    path = re.search(r"No such file or directory: '([^']*)'", text)
    return f"config file {path.group(1) if path else ''!r} not found; check --config PATH:ARG."
  errors = re.findall(r"^\s*\w*(?:Error|Exception): (.*)$", text, flags=re.M)
  return errors[-1] if errors else text.strip().splitlines()[-1]


def _parse_flags(command: str):
  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except (flags.Error, OSError, KeyError, AttributeError, ValueError) as e:
      if os.environ.get("RAHF_DEBUG"):
        raise
      print(f"rahf-jax {command}: error: {_flag_error_line(e)}", file=sys.stderr)
      sys.exit(2)

  return parse


def main(argv: list[str] | None = None) -> None:
  """Console script `rahf-jax`."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) >= 3 and argv[1] == "help" and argv[2] in COMMANDS:  # `rahf-jax help score`
    argv = [argv[0], argv[2], "--help"]
  if len(argv) < 2 or argv[1] not in COMMANDS:
    asked = len(argv) >= 2 and argv[1] in (*HELP_FLAGS, "help")
    if len(argv) >= 2 and not asked:
      print(f"rahf-jax: unknown command {argv[1]!r}.\n", file=sys.stderr)
    print(cli_help.overview(), file=sys.stdout if asked else sys.stderr, end="")
    sys.exit(0 if asked else 2)
  command = argv[1]
  if any(a in HELP_FLAGS for a in argv[2:]):
    print(cli_help.command_help(command), end="")
    sys.exit(0)
  app.run(_dispatch(command), argv=[f"rahf-jax {command}"] + argv[2:],
          flags_parser=_parse_flags(command))  # fmt: skip


if __name__ == "__main__":
  main()
