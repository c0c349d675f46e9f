"""rahf-jax: Rich Automatic Human Feedback (RAHF, CVPR 2024) in JAX/Flax, T5X-style.

Install for development with `make install` (creates .venv and installs `-e .[dev]`).
"""

import setuptools

# Pinned to a set probed together on Python 3.11, x86_64, from PyPI.
INSTALL_REQUIRES = [
  "jax==0.10.2",
  "jaxlib==0.10.2",
  "flax==0.12.8",
  "optax==0.2.8",
  "orbax-checkpoint==0.12.8",
  "chex==0.1.92",
  "numpy>=2.4,<2.5",
  "scipy",
  "pillow",
  "ml-collections==1.1.0",
  "absl-py",
  "clu==0.0.12",
  # clu.metric_writers needs tensorboard; TF 2.21 no longer pulls it in.
  "tensorboard",
  # Data layer (only rahf_jax.data imports these).
  "tensorflow==2.21.0",
  "tensorflow-text==2.21.1",
  "tensorflow-datasets==4.9.10",
  "seqio==0.0.20",
  # apache-beam caps protobuf < 7, which breaks sentencepiece 0.2.3.
  "sentencepiece==0.2.2",
  "pyarrow",
  # The `tfds build` command needs these three.
  "apache-beam",
  "mlcroissant",
  "importlib_resources",
  "gin-config==0.5.0",
  # Hugging Face .safetensors weights are read with safetensors.numpy (no torch needed).
  "safetensors==0.8.0",
  # `rahf-jax serve`, the HTTP reward server (its client needs only the standard library).
  "aiohttp==3.14.5",
  # The repair loop's default inpainter (cv2.inpaint); the headless build needs no GUI libraries.
  "opencv-python-headless==5.1.0.95",
]

# PyTorch state dicts (.pt / .bin, e.g. the PyTorch RAHF reproduction's checkpoint) are read with
# torch. Exactly 2.13.0: its CPU build is ~750 MB, while an unpinned or newer torch pulls a
# multi-GB CUDA build. transformers 4.57.6 works with it (parity tests build their reference
# ViT/T5 from it).
TORCH = ["torch==2.13.0"]
TRANSFORMERS = ["transformers==4.57.6"]

TPU = ["jax[tpu]==0.10.2"]

EXTRAS_REQUIRE = {
  "dev": [
    "pytest",
    "pytest-xdist",
    "filelock",  # tests/shared_runs.py: one training run per test session, shared by the workers
    "dill",  # tfds.testing.DatasetBuilderTestCase imports it
    "ruff",
    "nbclient",
    "nbformat",
    "ipykernel",
    *TORCH,
    *TRANSFORMERS,
    # libtpu: XLA:TPU compiles for compile-only TPU devices on any machine (`rahf-jax plan`,
    # tests/plan/test_tpu_compile.py); jax runs on the CPU where no TPU is attached.
    *TPU,
  ],
  "torch": TORCH,
  # t5x, airio and jestimator are not on PyPI (jestimator's PyPI release is broken on
  # current jax); they install from GitHub. Their own requirements pull flax/optax/clu/seqio from
  # GitHub HEAD, tensorflow-cpu and tfds-nightly, which replace this project's pins: prefer the
  # README's `pip install --no-deps` route; this extra is for an environment made for t5x.
  "t5x": [
    "t5x @ git+https://github.com/google-research/t5x",
    "airio @ git+https://github.com/google/airio",
    "jestimator @ git+https://github.com/google-research/jestimator",
    "fiddle",
    "jaxtyping",
    "cached-property",
    "grain==0.2.12",
    "cloudpickle",
    "libcst",
  ],
  "gpu": ["jax[cuda12]==0.10.2"],
  "tpu": TPU,
}

setuptools.setup(
  name="rahf-jax",
  version="0.1.0",
  description="RAHF (Rich Human Feedback for Text-to-Image Generation) in JAX/Flax, T5X-style",
  long_description=open("README.md", encoding="utf-8").read(),
  long_description_content_type="text/markdown",
  python_requires=">=3.11",
  # Namespace discovery also names the data folders (dummy_data, vocab) as packages, which their
  # package_data needs; plain find_packages made setuptools warn about each at every install.
  packages=setuptools.find_namespace_packages(
    include=["rahf_jax", "rahf_jax.*"], exclude=["*.__pycache__"]
  ),
  package_data={
    "rahf_jax.data.richhf18k": ["*.tsv", "*.bib", "*.md", "dummy_data/*", "dummy_data/**/*"],
    "rahf_jax.data": ["vocab/*"],
  },
  include_package_data=True,
  install_requires=INSTALL_REQUIRES,
  extras_require=EXTRAS_REQUIRE,
  entry_points={"console_scripts": ["rahf-jax=rahf_jax.cli:main"]},
)
