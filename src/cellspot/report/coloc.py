"""Where RNA sits in its cell: nucleus vs cytoplasm and distance to the nucleus, against a null.

The null hypothesis is "RNA placed uniformly at random inside the same cell": for every cell
at every analysed timepoint, as many voxels as the cell has RNA are drawn from the cell's
mask, and the same statistic is computed on them. Observed and null values come from the
same signed distance map, so a bias of the map (e.g. half a voxel at the surface) cancels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from cellspot.distance import signed_distance
from cellspot.report.stats import PermutationResult, permutation_test_groups


def label_pools(labels: np.ndarray, values: np.ndarray,
                ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Values of ``values`` at every voxel of each label in ``ids`` (one sort, no per-label
    scan)."""
    flat = np.asarray(labels).ravel()
    inside = np.flatnonzero(flat)  # background is never a pool: do not sort it
    order = inside[np.argsort(flat[inside], kind="stable")]
    sorted_labels = flat[order]
    vals = np.asarray(values).ravel()[order]
    out = {}
    for i in ids:
        lo, hi = np.searchsorted(sorted_labels, [i, i + 1])
        out[int(i)] = vals[lo:hi]
    return out


def distance_at_spots(spots: pd.DataFrame, nuclei, voxel_size: Sequence[float]) -> np.ndarray:
    """Signed distance (µm) of each spot (``t, z, y, x`` px) to the nucleus surface.

    For spot tables without a ``distance_to_nucleus_um`` column: one distance transform per
    timepoint with spots, looked up at the rounded positions.
    """
    out = np.full(len(spots), np.nan)
    t_all = spots["t"].to_numpy(int)
    for t in np.unique(t_all):
        sel = t_all == t
        dmap = signed_distance(np.asarray(nuclei[int(t)]), voxel_size)
        idx = np.rint(spots.loc[sel, ["z", "y", "x"]].to_numpy(float)).astype(int)
        idx = np.clip(idx, 0, np.array(dmap.shape) - 1)
        out[sel] = dmap[tuple(idx.T)]
    return out


@dataclass
class Colocalisation:
    """Observed vs random-placement statistics of RNA in cells."""

    distance: PermutationResult
    nuclear_fraction: PermutationResult
    n_spots: int
    n_cell_timepoints: int
    timepoints: list[int]

    def as_dict(self) -> dict:
        d, f = self.distance, self.nuclear_fraction
        return {
            "n_spots": self.n_spots,
            "n_cell_timepoints": self.n_cell_timepoints,
            "mean_distance_um": d.observed,
            "null_mean_distance_um": d.null_mean,
            "p_distance_closer": d.p_less,
            "p_distance_two_sided": d.p_two_sided,
            "fraction_nuclear": f.observed,
            "null_fraction_nuclear": f.null_mean,
            "p_nuclear_two_sided": f.p_two_sided,
        }


def choose_timepoints(n_timepoints: int, max_timepoints: int) -> list[int]:
    """Up to ``max_timepoints`` evenly spaced frames, first and last included."""
    if n_timepoints <= 0:
        return []
    k = max(1, min(int(max_timepoints), n_timepoints))
    return sorted({int(round(v)) for v in np.linspace(0, n_timepoints - 1, k)})


def colocalisation(spots: pd.DataFrame, cells, nuclei, voxel_size: Sequence[float],
                   timepoints: Sequence[int], n_permutations: int = 1000,
                   seed: int | None = 0) -> Colocalisation:
    """Permutation tests of RNA position inside cells.

    Parameters
    ----------
    spots : DataFrame
        ``t, z, y, x`` (pixels) of RNA spots.
    cells, nuclei : array-like, (T, Z, Y, X)
        Label images (Zarr arrays are read one frame at a time). A cell's mask includes its
        nucleus.
    voxel_size : (z, y, x) µm
    timepoints : frames to analyse.
    n_permutations : int
    seed : int, optional

    A spot belongs to the cell whose label is at its (rounded) position; spots outside every
    cell are left out, as are cells without a nucleus in that frame.
    """
    obs_d, pool_d = [], []
    used = []
    for t in timepoints:
        sp = spots[spots["t"] == t]
        if len(sp) == 0:
            continue
        cell_t = np.asarray(cells[t])
        dmap = signed_distance(np.asarray(nuclei[t]), voxel_size)
        if np.isnan(dmap).all():
            continue
        idx = np.rint(sp[["z", "y", "x"]].to_numpy(float)).astype(int)
        idx = np.clip(idx, 0, np.array(cell_t.shape) - 1)
        idx = tuple(idx.T)
        owner = cell_t[idx]
        dist = dmap[idx]
        ids = np.unique(owner[owner > 0])
        pools = label_pools(cell_t, dmap, ids)
        for c in ids:
            obs_d.append(dist[owner == c])
            pool_d.append(pools[int(c)])
        used.append(int(t))
    distance = permutation_test_groups(obs_d, pool_d, "mean", n_permutations, seed)
    nuclear = permutation_test_groups(obs_d, pool_d, "fraction_negative", n_permutations, seed)
    return Colocalisation(distance, nuclear, int(sum(len(o) for o in obs_d)), len(obs_d), used)
