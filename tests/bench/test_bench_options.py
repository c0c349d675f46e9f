"""bench_model.py's per-run options; scaling_on_paper.py's mesh shapes (no compiling)."""

import argparse
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

import bench_model  # noqa: E402
import model_runner  # noqa: E402
import scaling_on_paper  # noqa: E402


def _args(**kw):
  base = dict(runs="", sizes="tiny", variants="multihead", batch_sizes="2", no_decode=False,
              no_infer=False, steps=1, warmup=0, infer_steps=1, prompt_len=8, target_len=8,
              model_overrides="", train_overrides="", seed=0)  # fmt: skip
  return argparse.Namespace(**{**base, **kw})


def test_run_options_split_into_model_and_train_overrides():
  args = _args(
    runs="L16:multihead:32:train:remat_policy=full+heatmap_head_remat=dots+vit.depth=2,"
    "tiny:augmented:4::train.param_dtype=bfloat16,B16:multihead:8",
    model_overrides='{"attention_impl": "cudnn"}',
  )
  a, b, c = bench_model.parse_runs(args)
  assert (a["size"], a["batch"], a["parts"]) == ("L16_t5base_384", 32, ["train"])
  assert a["model_overrides"] == {
    "attention_impl": "cudnn",
    "remat_policy": "full",
    "heatmap_head_remat": "dots",
    "vit.depth": 2,  # JSON-parsed
  }
  assert a["train_overrides"] == {} and a["options"].startswith("remat_policy=full")
  assert b["parts"] == list(bench_model.PARTS)  # empty parts field: all parts
  assert b["train_overrides"] == {"param_dtype": "bfloat16"}
  assert b["model_overrides"] == {"attention_impl": "cudnn"}
  assert c["options"] == "" and bench_model._base(c)["options"] == "-"
  with pytest.raises(ValueError, match="field=value"):
    bench_model.parse_runs(_args(runs="tiny:multihead:2:train:remat_policy"))


def test_options_reach_the_configs():
  run = bench_model.parse_runs(
    _args(runs="tiny:multihead:2:train:remat_policy=full+train.param_dtype=bfloat16")
  )[0]
  assert model_runner._model_config(run).remat_policy == "full"
  assert model_runner._train_config(run).param_dtype == "bfloat16"
  bad = {**run, "train_overrides": {"no_such_field": 1}}
  with pytest.raises(ValueError, match="no_such_field"):
    model_runner._train_config(bad)


def test_mesh_shapes_cap_the_fsdp_axis():
  assert scaling_on_paper.mesh_shape("dp", 64, 4, 16) == {"data": 64, "fsdp": 1, "model": 1}
  assert scaling_on_paper.mesh_shape("fsdp", 64, 4, 16) == {"data": 4, "fsdp": 16, "model": 1}
  assert scaling_on_paper.mesh_shape("fsdp", 8, 4, 16) == {"data": 1, "fsdp": 8, "model": 1}
  assert scaling_on_paper.mesh_shape("fsdp_tp", 64, 4, 16) == {"data": 1, "fsdp": 16, "model": 4}
