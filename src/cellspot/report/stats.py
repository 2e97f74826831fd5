"""Pure statistics on trajectories and point sets: speed, MSD, diffusion, persistence, tests.

Positions are physical (micrometres) ``(n, ndim)`` arrays with integer frame indices ``t``;
``dt`` is the time between frames in seconds. Tracks may skip frames: every statistic uses the
real frame differences rather than assuming consecutive rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _as_track(t, pos) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=np.int64).ravel()
    pos = np.asarray(pos, dtype=float).reshape(len(t), -1)
    order = np.argsort(t, kind="stable")
    return t[order], pos[order]


def step_speeds(t, pos, dt: float) -> np.ndarray:
    """Speed of each step of a track (µm/s for µm positions and ``dt`` in s).

    Returns an array of ``len(t)`` values aligned with the sorted frames; the first is NaN
    (no previous position). A step across a gap of ``k`` frames is divided by ``k * dt``.
    """
    t, pos = _as_track(t, pos)
    out = np.full(len(t), np.nan)
    if len(t) > 1:
        dist = np.linalg.norm(np.diff(pos, axis=0), axis=1)
        out[1:] = dist / (np.diff(t) * float(dt))
    return out


def path_length(pos) -> float:
    """Sum of step lengths along the (time-sorted) positions."""
    pos = np.asarray(pos, dtype=float)
    if len(pos) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(pos, axis=0), axis=1).sum())


def net_displacement(pos) -> float:
    """Distance between the first and the last position."""
    pos = np.asarray(pos, dtype=float)
    if len(pos) < 2:
        return 0.0
    return float(np.linalg.norm(pos[-1] - pos[0]))


def persistence(pos) -> float:
    """Net displacement / path length (1 = straight line, near 0 = random walk); NaN if static."""
    length = path_length(pos)
    return net_displacement(pos) / length if length > 0 else float("nan")


def msd(t, pos, max_lag: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-averaged mean squared displacement of one track.

    Parameters
    ----------
    t : (n,) int
        Frames (any order, may have gaps).
    pos : (n, ndim) float
        Positions.
    max_lag : int, optional
        Largest lag in frames (default: the track's span).

    Returns
    -------
    lags : (m,) int
        Lags in frames with at least one pair of positions.
    values : (m,) float
        MSD at each lag (units of ``pos`` squared).
    counts : (m,) int
        Number of position pairs averaged at each lag.
    """
    t, pos = _as_track(t, pos)
    if len(t) < 2:
        return np.zeros(0, int), np.zeros(0), np.zeros(0, int)
    span = int(t[-1] - t[0])
    max_lag = span if max_lag is None else min(int(max_lag), span)
    # A dense (span+1, ndim) grid with NaN at missing frames turns every lag into one vector op.
    grid = np.full((span + 1, pos.shape[1]), np.nan)
    grid[t - t[0]] = pos
    lags, values, counts = [], [], []
    for lag in range(1, max_lag + 1):
        sq = np.sum((grid[lag:] - grid[:-lag]) ** 2, axis=1)
        ok = np.isfinite(sq)
        if ok.any():
            lags.append(lag)
            values.append(float(sq[ok].mean()))
            counts.append(int(ok.sum()))
    return np.asarray(lags, int), np.asarray(values), np.asarray(counts, int)


def diffusion_coefficient(lags, msd_values, dt: float, ndim: int = 3,
                          fit_lags: int = 4) -> float:
    """Diffusion coefficient from the slope of the MSD: ``MSD(τ) = 2·ndim·D·τ + c``.

    A free intercept ``c`` absorbs the localisation error (``2·ndim·σ²``), so D is not
    inflated by position noise. Only the first ``fit_lags`` lags are fitted: they have the
    most pairs and the least correlated averages. Returns NaN with fewer than two lags
    (one lag: the intercept cannot be separated, so the slope through the origin is used).

    Units: ``msd_values`` in µm² and ``dt`` in s give µm²/s.
    """
    lags = np.asarray(lags, float)[:fit_lags]
    values = np.asarray(msd_values, float)[:fit_lags]
    if len(lags) == 0:
        return float("nan")
    tau = lags * float(dt)
    if len(lags) == 1:
        slope = values[0] / tau[0]
    else:
        slope = np.polyfit(tau, values, 1)[0]
    return float(max(slope, 0.0) / (2 * ndim))


def msd_exponent(lags, msd_values, fit_lags: int = 10) -> float:
    """Anomalous exponent α of ``MSD ∝ τ^α`` (≈1 diffusive, ≈2 directed, <1 confined)."""
    lags = np.asarray(lags, float)[:fit_lags]
    values = np.asarray(msd_values, float)[:fit_lags]
    ok = values > 0
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(lags[ok]), np.log(values[ok]), 1)[0])


@dataclass(frozen=True)
class PermutationResult:
    """Observed statistic, its null distribution and the p-values."""

    observed: float
    null: np.ndarray
    p_less: float
    p_greater: float

    @property
    def null_mean(self) -> float:
        return float(np.mean(self.null)) if len(self.null) else float("nan")

    @property
    def p_two_sided(self) -> float:
        return float(min(1.0, 2 * min(self.p_less, self.p_greater)))


def permutation_test_groups(observed: list[np.ndarray], pools: list[np.ndarray],
                            statistic: str = "mean", n_permutations: int = 1000,
                            seed: int | None = 0) -> PermutationResult:
    """Compare values at observed positions with random placement inside the same groups.

    Each group (a cell at one timepoint) has the values at its ``k`` observed points (e.g.
    the distance of each RNA to the nucleus) and a pool of values at every place a point
    could be (every voxel of that cell). The null draws ``k`` places uniformly from each
    group's pool; the statistic is pooled over all groups.

    Parameters
    ----------
    observed : list of 1-D arrays
        Values at the observed points, one array per group.
    pools : list of 1-D arrays
        Values at all admissible places, one non-empty array per group.
    statistic : {"mean", "fraction_negative"}
        Mean value, or the fraction of values below 0 (e.g. inside the nucleus for a signed
        distance).
    n_permutations : int
    seed : int, optional

    Returns
    -------
    PermutationResult
        ``p_less`` = P(null <= observed), ``p_greater`` = P(null >= observed), both with the
        +1 correction so that a p-value is never 0.
    """
    if len(observed) != len(pools):
        raise ValueError("observed and pools must have one entry per group")
    keep = [i for i, (o, p) in enumerate(zip(observed, pools)) if len(o) and len(p)]
    if not keep:
        return PermutationResult(float("nan"), np.zeros(0), float("nan"), float("nan"))

    def stat(values: np.ndarray, axis=None):
        return values.mean(axis=axis) if statistic == "mean" else (values < 0).mean(axis=axis)

    if statistic not in ("mean", "fraction_negative"):
        raise ValueError(f"unknown statistic {statistic!r}")
    obs_all = np.concatenate([np.asarray(observed[i], float) for i in keep])
    obs = float(stat(obs_all))
    rng = np.random.default_rng(seed)
    groups = [(np.asarray(pools[i], float), len(observed[i])) for i in keep]
    # Permutations in blocks bound memory to block * n_points floats.
    block = max(1, min(n_permutations, 2_000_000 // max(len(obs_all), 1)))
    null = np.empty(n_permutations)
    for start in range(0, n_permutations, block):
        n = min(block, n_permutations - start)
        draws = np.empty((n, len(obs_all)))
        col = 0
        for pool, k in groups:
            draws[:, col:col + k] = pool[rng.integers(0, len(pool), size=(n, k))]
            col += k
        null[start:start + n] = stat(draws, axis=1)
    p_less = (1 + np.count_nonzero(null <= obs)) / (n_permutations + 1)
    p_greater = (1 + np.count_nonzero(null >= obs)) / (n_permutations + 1)
    return PermutationResult(obs, null, float(p_less), float(p_greater))
