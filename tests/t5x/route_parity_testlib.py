"""Whether two training routes give the same results: the gap of their means against the spread
of each route's own runs (no t5x needed; tests/t5x/test_route_parity.py, and the opt-in
tests/t5x/test_t5x_demo_parity.py on fresh runs).

A metric's bound is the larger of FLOOR and the range (max - min) of every route's runs taken
one route at a time: the seed-to-seed scatter of a route. A range over both routes' runs
together would also hold the gap between the routes, the thing to bound, and grow with it.

RECORDED holds the figures of the demo's parity record (docs/t5x.md; 2026-11-30,
2-core AMD EPYC): configs/rahf.py:tiny,multihead, 1,500 steps of batch 32, seeds 0, 1, 2 on each
route, one build of the demo's data, test split, step 1,500. MSEs are ratios to their trivial
baseline on that split (the mean score: plausibility 0.0803, alignment 0.0393, aesthetics
0.0442, overall 0.0273; the all-zeros map: implausibility 0.00344, misalignment 0.00247), from
the MSEs as recorded (the t5x route's to two significant digits).
"""

from collections.abc import Mapping, Sequence

import numpy as np

FLOOR = 0.05  # the claim: every figure within 0.05 of the native route's

_MEAN_SCORE_MSE = {"plausibility": 0.0803, "alignment": 0.0393, "aesthetics": 0.0442,
                   "overall": 0.0273}  # fmt: skip
_ALL_ZEROS_MSE = {"implausibility": 0.00344, "misalignment": 0.00247}


def _ratios(mses, baseline):
  return [m / baseline for m in mses]


RECORDED = {
  "native": {
    "plausibility/plcc": [0.543, 0.533, 0.599],
    "alignment/plcc": [0.618, 0.624, 0.623],
    "aesthetics/plcc": [0.884, 0.883, 0.877],
    "overall/plcc": [0.548, 0.536, 0.563],
    "implausibility/cc": [0.619, 0.607, 0.639],
    "misalignment/cc": [0.497, 0.509, 0.511],
    "implausibility/auc_judd": [0.935, 0.929, 0.935],
    "misalignment/auc_judd": [0.892, 0.895, 0.899],
    "plausibility/mse_vs_mean_score": _ratios([0.0588, 0.0581, 0.0515], 0.0803),
    "alignment/mse_vs_mean_score": _ratios([0.0254, 0.0247, 0.0247], 0.0393),
    "aesthetics/mse_vs_mean_score": _ratios([0.0097, 0.0101, 0.0104], 0.0442),
    "overall/mse_vs_mean_score": _ratios([0.0194, 0.0195, 0.0191], 0.0273),
    "implausibility/mse_vs_all_zeros": _ratios([0.00244, 0.00238, 0.00218], 0.00344),
    "misalignment/mse_vs_all_zeros": _ratios([0.00216, 0.00214, 0.00214], 0.00247),
    "dev text loss": [0.185, 0.196, 0.160],
  },
  "t5x": {
    "plausibility/plcc": [0.569, 0.625, 0.603],
    "alignment/plcc": [0.671, 0.636, 0.661],
    "aesthetics/plcc": [0.880, 0.881, 0.880],
    "overall/plcc": [0.581, 0.586, 0.560],
    "implausibility/cc": [0.651, 0.653, 0.648],
    "misalignment/cc": [0.524, 0.504, 0.514],
    "implausibility/auc_judd": [0.936, 0.939, 0.932],
    "misalignment/auc_judd": [0.902, 0.895, 0.896],
    "plausibility/mse_vs_mean_score": _ratios([0.055, 0.050, 0.051], 0.0803),
    "alignment/mse_vs_mean_score": _ratios([0.022, 0.024, 0.023], 0.0393),
    "aesthetics/mse_vs_mean_score": _ratios([0.010, 0.010, 0.010], 0.0442),
    "overall/mse_vs_mean_score": _ratios([0.018, 0.018, 0.019], 0.0273),
    "implausibility/mse_vs_all_zeros": _ratios([0.0022, 0.0021, 0.0021], 0.00344),
    "misalignment/mse_vs_all_zeros": _ratios([0.0021, 0.0022, 0.0021], 0.00247),
    "dev text loss": [0.151, 0.162, 0.203],
  },
}


def bound(metric: str, *routes: Mapping[str, Sequence[float]], floor: float = FLOOR) -> float:
  """max(floor, the range of each route's runs of `metric`), each `routes` entry being one
  route's {metric: runs} (routes without the metric or with one run add a range of 0)."""
  spreads = [float(np.ptp(r[metric])) for r in routes if len(r.get(metric, ())) > 1]
  return max([floor, *spreads])


def parity_table(
  native: Mapping[str, Sequence[float]],
  t5x: Mapping[str, Sequence[float]],
  recorded: Mapping[str, Mapping[str, Sequence[float]]] = RECORDED,
  floor: float = FLOOR,
) -> list[dict]:
  """One row per metric of `native`: the means of each route's runs, their gap (t5x - native),
  its bound (`bound` over the given routes and the recorded ones) and whether the gap is
  within it (a non-finite figure never is)."""
  rows = []
  for metric, runs in native.items():
    n, t = float(np.mean(runs)), float(np.mean(t5x[metric]))
    b = bound(metric, native, t5x, recorded["native"], recorded["t5x"], floor=floor)
    gap = t - n
    rows.append({"metric": metric, "native": n, "t5x": t, "gap": gap, "bound": b,
                 "ok": bool(np.isfinite(gap) and abs(gap) <= b)})  # fmt: skip
  return rows


def failures(rows: Sequence[dict]) -> list[str]:
  """The rows of `parity_table` whose gap exceeds its bound, as readable lines."""
  return [
    f"{r['metric']}: t5x {r['t5x']:.4f} vs native {r['native']:.4f}, gap {r['gap']:+.4f} > "
    f"{r['bound']:.3f}"
    for r in rows
    if not r["ok"]
  ]
