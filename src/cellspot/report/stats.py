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
        if np.isnan(self.p_less) or np.isnan(self.p_greater):
            return float("nan")
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


# --------------------------------------------------------------------------- many tracks at once


def msd_many(track_ids, t, pos, max_lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        np.ndarray]:
    """Time-averaged MSD of many tracks at once (same definition as :func:`msd`).

    Each point's partner at lag ``L`` is found by binary search on a ``(track, t)`` key, so
    the cost is ``O(max_lag · n log n)`` for ``n`` points in all, with no per-track loop.

    Returns
    -------
    tracks : (k,) unique track ids
    lags : (max_lag,) int, 1..max_lag
    values : (k, max_lag) float, NaN where a track has no pair at that lag
    counts : (k, max_lag) int
    """
    track_ids = np.asarray(track_ids)
    t = np.asarray(t, np.int64)
    pos = np.asarray(pos, float).reshape(len(t), -1) if len(t) else np.zeros((0, 3))
    tracks, tix = np.unique(track_ids, return_inverse=True)
    lags = np.arange(1, max_lag + 1)
    values = np.full((len(tracks), max_lag), np.nan)
    counts = np.zeros((len(tracks), max_lag), np.int64)
    if len(t) == 0:
        return tracks, lags, values, counts
    stride = int(t.max() - t.min()) + max_lag + 1
    key = tix.astype(np.int64) * stride + (t - t.min())
    order = np.argsort(key, kind="stable")
    skey, spos = key[order], pos[order]
    stix = tix[order]
    for j, lag in enumerate(lags):
        k = np.searchsorted(skey, skey + lag)
        ok = k < len(skey)
        ok[ok] = skey[k[ok]] == skey[ok] + lag
        sq = np.sum((spos[k[ok]] - spos[ok]) ** 2, axis=1)
        n = np.bincount(stix[ok], minlength=len(tracks))
        s = np.bincount(stix[ok], weights=sq, minlength=len(tracks))
        counts[:, j] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            values[:, j] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return tracks, lags, values, counts


def _rowwise_slope(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope per row over the finite entries of ``y``, and their number."""
    ok = np.isfinite(y)
    n = ok.sum(axis=1)
    xs = np.where(ok, x, 0.0)
    ys = np.where(ok, y, 0.0)
    sx, sy = xs.sum(axis=1), ys.sum(axis=1)
    sxx, sxy = (xs * xs).sum(axis=1), (xs * ys).sum(axis=1)
    den = n * sxx - sx ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(den > 0, (n * sxy - sx * sy) / den, np.nan)
        through_origin = np.where(sxx > 0, sxy / sxx, np.nan)  # one lag: no intercept
    return np.where(n == 1, through_origin, slope), n


def diffusion_many(lags, values, dt: float, ndim: int = 3, fit_lags: int = 4) -> np.ndarray:
    """:func:`diffusion_coefficient` for every row of an MSD matrix from :func:`msd_many`.

    Note: fits the first ``fit_lags`` *lags* (NaN lags skipped), which equals the single-track
    function for tracks without gaps.
    """
    lags = np.asarray(lags, float)[:fit_lags]
    y = np.asarray(values, float)[:, :fit_lags]
    slope, n = _rowwise_slope(np.broadcast_to(lags * float(dt), y.shape), y)
    d = np.maximum(slope, 0.0) / (2 * ndim)
    return np.where(n >= 1, d, np.nan)


def exponent_many(lags, values, fit_lags: int = 10) -> np.ndarray:
    """:func:`msd_exponent` for every row of an MSD matrix."""
    lags = np.asarray(lags, float)[:fit_lags]
    y = np.asarray(values, float)[:, :fit_lags]
    with np.errstate(divide="ignore", invalid="ignore"):
        logy = np.where(y > 0, np.log(y), np.nan)
    slope, n = _rowwise_slope(np.broadcast_to(np.log(lags), y.shape), logy)
    return np.where(n >= 2, slope, np.nan)
