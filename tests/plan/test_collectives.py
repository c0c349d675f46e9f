"""The HLO collective parser: bytes, group sizes and ring traffic of each collective kind."""

import pytest

from rahf_jax.plan.collectives import parse_collectives

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
  got = parse_collectives(_HLO, 16, sharded_shapes=frozenset({(64, 128)}))
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
