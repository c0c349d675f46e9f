"""bench_model.py's per-run options; scaling_on_paper.py's HLO collective parser (no compiling)."""

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


_HLO = "\n".join(
  [
    "  %all-gather.1 = f32[64,128]{1,0} all-gather(f32[8,128]{1,0} %param.1), "
    "channel_id=1, replica_groups=mesh['axis_0'=2,'axis_1'=8] {'axis_1'}, "
    "dimensions={0}",
    "  %all-reduce.2 = (f32[], f32[128,64]{1,0}) all-reduce(f32[] %a, "
    "f32[128,64]{1,0} %b), channel_id=2, replica_groups=[2,8]<=[16], to_apply=%add",
    "  %reduce-scatter.3 = bf16[4,10]{1,0} reduce-scatter(bf16[16,10]{1,0} %c), "
    "channel_id=3, replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={0}",
    "  %all-reduce.4 = f32[6]{0} all-reduce(f32[6]{0} %d), channel_id=4, "
    "replica_groups={}, to_apply=%add",
    "  %all-gather-start.5 = (bf16[2]{0}, "
    "bf16[16]{0}) all-gather-start(bf16[2]{0} %e), replica_groups=[2,8]<=[16], "
    "dimensions={0}",
    "  %all-gather-done.5 = bf16[16]{0} all-gather-done(%all-gather-start.5)",
    "  %collective-permute.6 = f32[3]{0} collective-permute(f32[3]{0} %f), "
    "source_target_pairs={{0,1},{1,0}}",
    "  %all-reduce.7 = f32[5]{0} all-reduce(f32[5]{0} %g), "
    "replica_groups=mesh['axis_0'=2,'axis_1'=8] {'axis_0'}, to_apply=%add",
  ]
)


def test_collective_parser_counts_bytes_groups_and_ring_traffic():
  got = scaling_on_paper.parse_collectives(_HLO, 16, sharded_shapes=frozenset({(64, 128)}))
  kinds = got["by_kind"]
  ag = 64 * 128 * 4
  assert kinds["all-gather"]["count"] == 2  # the async pair once
  assert kinds["all-gather"]["result_bytes"] == ag + 16 * 2
  assert kinds["all-gather"]["wire_bytes"] == pytest.approx((ag + 32) * 7 / 8)
  ar = 4 + 128 * 64 * 4
  assert kinds["all-reduce"]["count"] == 3
  assert kinds["all-reduce"]["result_bytes"] == ar + 24 + 20
  assert kinds["all-reduce"]["wire_bytes"] == pytest.approx(
    2 * 7 / 8 * ar + 2 * 15 / 16 * 24 + 2 * 1 / 2 * 20  # groups of 8, all 16, and 2
  )
  assert kinds["reduce-scatter"]["wire_bytes"] == pytest.approx(3 * 4 * 10 * 2)  # group of 4
  assert kinds["collective-permute"]["wire_bytes"] == 12
  assert got["count"] == 7
  # The sharded (64, 128) gradient, transposed in the HLO, costs a reduce-scatter on TPU.
  assert got["wire_bytes"] - got["tpu_wire_bytes"] == pytest.approx(7 / 8 * 128 * 64 * 4)


def test_mesh_shapes_cap_the_fsdp_axis():
  assert scaling_on_paper.mesh_shape("dp", 64, 4, 16) == {"data": 64, "fsdp": 1, "model": 1}
  assert scaling_on_paper.mesh_shape("fsdp", 64, 4, 16) == {"data": 4, "fsdp": 16, "model": 1}
  assert scaling_on_paper.mesh_shape("fsdp", 8, 4, 16) == {"data": 1, "fsdp": 8, "model": 1}
  assert scaling_on_paper.mesh_shape("fsdp_tp", 64, 4, 16) == {"data": 1, "fsdp": 16, "model": 4}
