"""The t5x demo-parity rule (route_parity_testlib) on the recorded figures; runs without t5x.

The rule bounds the gap between the two routes' means by the spread of each route's own runs
(at least 0.05). These checks hold it to the recorded three seeds per route, show that a gap
the pooled range of all six runs would absorb fails it, and that one seed per route is not
enough to show parity (which is why the opt-in live test trains three).
"""

import math

import numpy as np
import pytest
import route_parity_testlib as rp

NATIVE, T5X = rp.RECORDED["native"], rp.RECORDED["t5x"]


def _row(rows, metric):
  return next(r for r in rows if r["metric"] == metric)


def test_the_recorded_means_agree_within_each_routes_spread():
  rows = rp.parity_table(NATIVE, T5X)
  assert [r["metric"] for r in rows] == list(NATIVE) and set(NATIVE) == set(T5X)
  assert all(len(v) == 3 for v in [*NATIVE.values(), *T5X.values()])
  assert rp.failures(rows) == []
  # Alignment PLCC: t5x 0.656 vs native 0.622. The routes' own ranges (0.006 and 0.035) are
  # under the floor, so the bound is 0.05, not the six runs' pooled range 0.053.
  align = _row(rows, "alignment/plcc")
  assert align["gap"] == pytest.approx(0.0343, abs=5e-4)
  assert align["bound"] == rp.FLOOR
  assert np.ptp(NATIVE["alignment/plcc"] + T5X["alignment/plcc"]) == pytest.approx(0.053)
  # Plausibility PLCC: native seeds range 0.066, which is its bound.
  assert _row(rows, "plausibility/plcc")["bound"] == pytest.approx(0.066)


def test_a_shift_the_pooled_range_absorbs_fails_the_per_route_bound():
  """Every t5x alignment PLCC 0.02 higher: the gap of the means becomes 0.054; the pooled range
  of the six runs (0.073) would have let it through, each route's own range (0.035) does not."""
  shifted = dict(T5X, **{"alignment/plcc": [v + 0.02 for v in T5X["alignment/plcc"]]})
  rows = rp.parity_table(NATIVE, shifted, recorded={"native": NATIVE, "t5x": shifted})
  gap = _row(rows, "alignment/plcc")["gap"]
  assert gap == pytest.approx(0.0543, abs=5e-4)
  assert np.ptp(NATIVE["alignment/plcc"] + shifted["alignment/plcc"]) > abs(gap)  # pooled
  assert [f.split(":")[0] for f in rp.failures(rows)] == ["alignment/plcc"]


def test_one_seed_per_route_is_not_enough_to_show_parity():
  """The recorded seed-0 pair alone: alignment PLCC 0.671 vs 0.618 (gap 0.053 > 0.05)."""
  first = [{k: v[:1] for k, v in route.items()} for route in (NATIVE, T5X)]
  failed = [f.split(":")[0] for f in rp.failures(rp.parity_table(*first))]
  assert "alignment/plcc" in failed


def test_a_non_finite_figure_fails():
  broken = dict(T5X, **{"misalignment/cc": [math.nan]})
  failed = rp.failures(rp.parity_table(NATIVE, broken))
  assert [f.split(":")[0] for f in failed] == ["misalignment/cc"]
