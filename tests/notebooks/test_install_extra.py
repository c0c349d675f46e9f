"""The notebook's install cell: the jax build for the runtime's accelerator (tpu, gpu or dev), and
a check, after the install, that JAX sees that accelerator."""

import json
import os
import subprocess

import pytest

from rahf_jax import colab_runtime
from rahf_jax.colab_runtime import check_jax_sees, install_extra, runtime_accelerator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(REPO, "notebooks", "rahf_colab_tpu.ipynb")


@pytest.mark.parametrize(
  "environ, files, accelerator, extra",
  [
    ({}, (), "cpu", "dev"),
    ({"COLAB_GPU": "0"}, (), "cpu", "dev"),
    ({"COLAB_GPU": "1"}, (), "gpu", "gpu"),
    ({}, ("/dev/nvidia0",), "gpu", "gpu"),
    ({"COLAB_TPU_ADDR": "10.0.0.2:8470"}, (), "tpu", "tpu"),
    ({"TPU_ACCELERATOR_TYPE": "v5litepod-1"}, (), "tpu", "tpu"),
    ({}, ("/dev/accel0",), "tpu", "tpu"),
    ({}, ("/dev/vfio/0",), "tpu", "tpu"),
  ],
)
def test_the_extra_follows_the_runtime(environ, files, accelerator, extra):
  assert runtime_accelerator(environ, exists=lambda p: p in files) == accelerator
  assert install_extra(accelerator) == extra


def test_jax_must_see_the_runtimes_accelerator():
  assert "GPU" in check_jax_sees("gpu", "gpu") and "TPU" in check_jax_sees("tpu", "TPU")
  assert "No accelerator" in check_jax_sees("cpu", "cpu")
  with pytest.raises(RuntimeError, match="has a GPU but JAX sees CPU devices only: restart"):
    check_jax_sees("gpu", "cpu")
  with pytest.raises(RuntimeError, match="has a TPU but JAX sees CPU"):
    check_jax_sees("tpu", "cpu")
  with pytest.raises(ValueError, match="unknown"):
    install_extra("ipu")


def _install_cell() -> str:
  with open(NOTEBOOK, encoding="utf-8") as f:
    cells = json.load(f)["cells"]
  (cell,) = [
    c for c in cells if c["cell_type"] == "code" and "install_extra(" in "".join(c["source"])
  ]
  return "".join(cell["source"])


def _run_install_cell(monkeypatch, environ: dict, jax_platform: str) -> list[list[str]]:
  """Runs the notebook's install cell with pip and the JAX probe faked; returns the commands."""
  for name in ("COLAB_GPU", *colab_runtime.TPU_ENV):
    monkeypatch.delenv(name, raising=False)
  for name, value in environ.items():
    monkeypatch.setenv(name, value)
  monkeypatch.setattr(colab_runtime, "TPU_FILES", ())
  monkeypatch.setattr(colab_runtime, "GPU_FILES", ())
  calls = []

  def fake_run(cmd, **kw):
    calls.append(list(cmd))
    return subprocess.CompletedProcess(cmd, 0, stdout=f"{jax_platform}\n", stderr="")

  monkeypatch.setattr(subprocess, "run", fake_run)
  ns = {"INSTALL": True, "REPO_DIR": REPO, "REPO_URL": ""}
  exec(compile(_install_cell(), "install cell", "exec"), ns)  # noqa: S102
  return calls


@pytest.mark.parametrize(
  "environ, extra", [({"COLAB_GPU": "1"}, "gpu"), ({"COLAB_TPU_ADDR": "x"}, "tpu"), ({}, "dev")]
)
def test_the_install_cell_installs_the_runtimes_extra(monkeypatch, capsys, environ, extra):
  platform = {"gpu": "gpu", "tpu": "tpu", "dev": "cpu"}[extra]
  pip, probe = _run_install_cell(monkeypatch, environ, platform)
  assert pip[-4:] == ["install", "-q", "-e", f"{REPO}[{extra}]"]
  assert "import jax" in probe[-1]
  assert f"Installed {REPO}[{extra}]" in capsys.readouterr().out


def test_the_install_cell_stops_when_jax_misses_the_gpu(monkeypatch):
  with pytest.raises(RuntimeError, match="has a GPU but JAX sees CPU"):
    _run_install_cell(monkeypatch, {"COLAB_GPU": "1"}, "cpu")
