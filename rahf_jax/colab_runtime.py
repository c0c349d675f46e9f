"""Which JAX build a notebook runtime needs, and whether JAX then sees the runtime's accelerator.

The Colab notebook (notebooks/rahf_colab_tpu.ipynb) imports this file from the checkout before
rahf-jax is installed, so it uses nothing but the standard library:

  accelerator = runtime_accelerator()        # "tpu", "gpu" or "cpu": what the runtime has
  extra = install_extra(accelerator)         # pip install -e "<repo>[<extra>]": tpu, gpu or dev
  ...                                        # after the install, in the same runtime:
  check_jax_sees(accelerator, jax.devices()[0].platform)
"""

import os
from collections.abc import Callable, Mapping

# Device files of a TPU VM (v2-v4: /dev/accel*, v5e and later: VFIO groups) and of an NVIDIA GPU.
TPU_FILES = ("/dev/accel0", "/dev/vfio/0")
GPU_FILES = ("/dev/nvidia0",)
TPU_ENV = ("COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE", "TPU_NAME")
EXTRAS = {"tpu": "tpu", "gpu": "gpu", "cpu": "dev"}


def runtime_accelerator(
  environ: Mapping[str, str] | None = None, exists: Callable[[str], bool] = os.path.exists
) -> str:
  """ "tpu", "gpu" or "cpu": the accelerator this runtime has, from Colab's variables (COLAB_GPU,
  COLAB_TPU_ADDR), TPU VM variables and the device files, without importing JAX."""
  environ = os.environ if environ is None else environ
  if any(environ.get(name) for name in TPU_ENV) or any(exists(p) for p in TPU_FILES):
    return "tpu"
  if environ.get("COLAB_GPU", "") not in ("", "0") or any(exists(p) for p in GPU_FILES):
    return "gpu"
  return "cpu"


def install_extra(accelerator: str) -> str:
  """The rahf-jax extra to install for `accelerator`: tpu (jax[tpu]), gpu (jax[cuda12]) or dev
  (CPU jax, plus the test tools)."""
  if accelerator not in EXTRAS:
    raise ValueError(f"accelerator {accelerator!r} unknown; use one of {sorted(EXTRAS)}.")
  return EXTRAS[accelerator]


def check_jax_sees(accelerator: str, platform: str) -> str:
  """Raises RuntimeError, with what to do, when the runtime has a TPU or GPU and JAX's first
  device (`platform`, e.g. jax.devices()[0].platform) is not one; returns a line saying what
  JAX runs on."""
  platform = platform.lower()
  if accelerator == "cpu":
    return "No accelerator: this runs, slowly. On Colab choose a TPU (or GPU) runtime."
  if platform != accelerator:
    raise RuntimeError(
      f"This runtime has a {accelerator.upper()} but JAX sees {platform.upper()} devices only: "
      "restart the runtime (Runtime > Restart session) and run the notebook again from the top, "
      f"so that the jax build installed for the {accelerator.upper()} is the one imported."
    )
  return f"JAX sees the runtime's {accelerator.upper()}."
