#!/usr/bin/env bash
# The GPU benchmark in ONE device call (about 7 minutes, then the torch side-by-side in what is
# left of TOTAL_S, default 530 s; see bench/README.md for the `run` call).
#
# Runs on the device image's python3 (jax CUDA, flax, optax, orbax, chex; no TensorFlow), with
# ml_collections installed from the carried .whl/ folder. Downloads nothing. Writes
# $OUT/bench_gpu.json, $OUT/bench_gpu.log and $OUT/nvidia_smi.txt; prints the table last.
#
# Dry run on a CPU machine: ALLOW_CPU=1 PYTHON=.venv/bin/python RUNS=test:multihead:2 bash ...
# Env overrides: RUNS (bench_model.py --runs list), DEADLINE_S (wall seconds for all runs),
# MODEL=0 / REWARD=0 / TORCH_BASELINE=0 (skip a step), TOTAL_S (the whole call's budget),
# STEPS, EXTRA (more bench_model.py flags, e.g. EXTRA='--model_overrides {"remat_policy":"full"}').
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-/tmp/bench_gpu_out}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "run_gpu.sh: installing .whl/*.whl failed"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # rahf_jax from this checkout, no install
export PYTHONUNBUFFERED=1
# Let one process use (nearly) the whole card: the default 75% pool would cap an H100 at ~58
# GiB and hide whether batch 32 fits in the 75 GiB target.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
export TF_CPP_MIN_LOG_LEVEL=2
# A compilation cache shared by this call's run processes only (fresh each call): the runs of
# one size and variant reuse the init program; no run's train-step compile can be a cache hit.
export JAX_COMPILATION_CACHE_DIR="$(mktemp -d /tmp/jax_cache.XXXXXX)"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
  --format=csv 2>&1 | tee "$OUT_DIR/nvidia_smi.txt"
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT_DIR/nvidia_smi.txt" || exit 1
import sys
import flax, jax, ml_collections, optax  # noqa: F401  (fail fast if the image lacks one)
from rahf_jax import models  # noqa: F401
from rahf_jax.train import steps  # noqa: F401
print("python", sys.version.split()[0], "jax", jax.__version__, "flax", flax.__version__,
      "optax", optax.__version__, "devices", jax.devices())
import os
if not os.environ.get("ALLOW_CPU"):  # ALLOW_CPU=1: a dry run of this script on a CPU machine
  assert jax.devices()[0].platform == "gpu", "run_gpu.sh: jax sees no GPU"
EOF

# Priority order: the target row first (L16 multi-head), then memory at batch 32 without and
# with rematerialisation (ViT/T5 blocks and heatmap-head blocks), bf16 params with fp32 master
# weights, then the other configs. Each run is its own process (clean peak-memory counter; an
# OOM cannot take the others down); runs that would start with under 45 s left are skipped.
# A run's 5th field sets options: model-config fields, or training-config ones as train.<field>.
RUNS="${RUNS:-L16:multihead:16,L16:multihead:32:train+infer,L16:multihead:32:train:remat_policy=full+heatmap_head_remat=full,L16:multihead:16:train:train.param_dtype=bfloat16,B16:multihead:16:train+infer,L16:augmented:16:train,L16:multihead:8:train}"
# MODEL=0 skips this step (e.g. MODEL=0 REWARD=0: the torch side-by-side alone).
[ "${MODEL:-1}" = 0 ] || "$PY" bench/bench_model.py --isolate --runs "$RUNS" \
  --deadline_s "${DEADLINE_S:-400}" --steps "${STEPS:-20}" --warmup 3 --infer_steps 10 \
  --json "$OUT_DIR/bench_gpu.json" ${EXTRA:-} 2>&1 | tee "$OUT_DIR/bench_gpu.log"

# RAHF as a reward (bench/bench_reward.py): Scorer throughput (heads; + greedy words) and the
# differentiable reward (+ its pixel gradient), L16 multi-head; needs sentencepiece in the
# carried .whl/ (`pip download ... sentencepiece==0.2.2` beside ml-collections). REWARD=0 skips.
[ "${REWARD:-1}" = 0 ] || timeout "${REWARD_TIMEOUT_S:-240}" "$PY" bench/bench_reward.py --size L16 --batch_sizes "${REWARD_BATCHES:-8,16}" --json "$OUT_DIR/bench_reward.json" 2>&1 | tee "$OUT_DIR/bench_reward.log"

# OUR model against the PyTorch reproduction's architecture on the same card
# (bench/bench_torch_baseline.py, one process per measurement): L16 multi-head heads-only
# inference at batch 16, then train steps at batch 8, in bf16 (TB_DTYPES=float32,bfloat16 adds
# fp32); ours alone where the image has no torch/transformers. It gets what is left of TOTAL_S
# (so the whole call stays inside one `run` timeout); TORCH_BASELINE=0 skips it.
TB_LEFT=$(( ${TOTAL_S:-530} - SECONDS ))
if [ "${TORCH_BASELINE:-1}" = 0 ]; then :
elif [ "$TB_LEFT" -lt 90 ]; then echo "bench_torch_baseline.py skipped: ${TB_LEFT} s left of TOTAL_S" | tee "$OUT_DIR/bench_torch_baseline.log"
else timeout "$TB_LEFT" "$PY" bench/bench_torch_baseline.py --size L16 --parts infer,train --dtypes "${TB_DTYPES:-bfloat16}" --steps 10 --warmup 3 --deadline_s "$(( TB_LEFT - 20 ))" --json "$OUT_DIR/bench_torch_baseline.json" 2>&1 | tee "$OUT_DIR/bench_torch_baseline.log"
fi
