"""Division states from geometry, for btrack's branching hypotheses."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .settings import POSITION


def division_states(objects: pd.DataFrame, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                    max_distance: float | None = None, volume: str | None = "volume_um3",
                    max_volume_ratio: float = 0.9, max_cosine: float = 0.3,
                    midpoint_tolerance: float = 0.5) -> np.ndarray:
    """Mitotic states of cells guessed from geometry, for btrack's division model.

    btrack forbids linking a METAPHASE track to an ANAPHASE object and strongly favours a
    division hypothesis from METAPHASE to two ANAPHASE children; it expects these states
    from a classifier. Without one, a division shows as a cell ``o`` at ``t-1`` replaced at
    ``t`` by two cells ``a, b`` on opposite sides of it: the midpoint of ``a`` and ``b`` lies
    near ``o`` (within ``midpoint_tolerance`` times ``max_distance``), both lie within
    ``max_distance`` of ``o``, the cosine of the angle ``a - o, b - o`` is below
    ``max_cosine``, ``a`` and ``b`` do not both have their own close predecessor at ``t-1``
    and, if ``volume`` is a column, each daughter is smaller than ``max_volume_ratio`` times
    ``o`` while together they hold 0.5 to 2 times its volume.
    Candidate triplets are taken best midpoint first, each object at most once; then ``o`` is
    METAPHASE and ``a``, ``b`` ANAPHASE.

    Parameters
    ----------
    max_distance : float, optional
        Micrometres; by default 1.5 times the equivalent-sphere radius of ``o`` (or 5 µm
        without a volume column).

    Returns
    -------
    ndarray of int
        btrack ``States`` values (0 interphase, 2 metaphase, 3 anaphase), one per row.
    """
    from scipy.spatial import cKDTree

    states = np.zeros(len(objects), dtype=np.int64)
    if len(objects) == 0:
        return states
    vs = np.asarray(voxel_size, dtype=np.float64)
    pos = objects[POSITION].to_numpy(np.float64) * vs
    t = objects["t"].to_numpy()
    vol = (objects[volume].to_numpy(np.float64) if volume and volume in objects.columns
           else None)
    if max_distance is not None:
        reach = np.full(len(objects), float(max_distance))
    elif vol is not None:
        reach = 1.5 * np.cbrt(3.0 * np.maximum(vol, 0) / (4.0 * np.pi))
    else:
        reach = np.full(len(objects), 5.0)
    frames = {k: np.flatnonzero(t == k) for k in np.unique(t)}
    for k in sorted(frames):
        if k - 1 not in frames or len(frames[k]) < 2:
            continue
        prev, cur = frames[k - 1], frames[k]
        prev_tree = cKDTree(pos[prev])
        pairs = cKDTree(pos[cur]).query_pairs(r=2.0 * float(reach[prev].max()),
                                              output_type="ndarray")
        cand = []
        for ia, ib in pairs:
            a, b = cur[ia], cur[ib]
            mid = 0.5 * (pos[a] + pos[b])
            d_mid, io = prev_tree.query(mid)
            o = prev[io]
            if d_mid > midpoint_tolerance * reach[o]:
                continue
            va, vb = pos[a] - pos[o], pos[b] - pos[o]
            na, nb = np.linalg.norm(va), np.linalg.norm(vb)
            if max(na, nb) > reach[o] or na == 0 or nb == 0:
                continue
            if float(va @ vb) / (na * nb) > max_cosine:
                continue
            # two cells that were already there (each with its own close predecessor)
            (da, pa), (db, pb) = prev_tree.query(pos[a]), prev_tree.query(pos[b])
            if pa != pb and max(da, db) < midpoint_tolerance * reach[o]:
                continue
            if vol is not None and (max(vol[a], vol[b]) > max_volume_ratio * vol[o]
                                    or not 0.5 <= (vol[a] + vol[b]) / vol[o] <= 2.0):
                continue
            cand.append((d_mid, o, a, b))
        used: set[int] = set()
        for _, o, a, b in sorted(cand):
            if {o, a, b} & used:
                continue
            used |= {o, a, b}
            states[o], states[a], states[b] = 2, 3, 3
    return states


