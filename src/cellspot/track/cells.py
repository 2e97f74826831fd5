"""Tracking cells with divisions (:func:`track_cells`) and lineage-relative positions."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from .divisions import division_states
from .link import link_btrack
from .settings import POSITION, select_features
from .tables import check_objects, empty_tracks, points_to_tracks, standardise

log = logging.getLogger(__name__)

def track_cells(cells: pd.DataFrame, config, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                features: Sequence[str] = ("volume_um3",),
                shape: Sequence[int] | None = None, divisions: bool = True,
                division_options: dict | None = None) -> pd.DataFrame:
    """Track cells, with divisions, from a per-timepoint object table.

    Parameters
    ----------
    cells : DataFrame
        One row per cell per timepoint: ``t, label, z, y, x`` (pixels) and features.
    config : TrackerConfig, dict or path
        btrack configuration for cells (``config/btrack/cell_config.json``).
    voxel_size : (z, y, x) micrometres
    features : sequence of str
        Feature columns (``prefix*`` allowed), standardised and handed to btrack; absent
        columns raise ``KeyError``.
    shape : (Z, Y, X), optional
        Image size in pixels, for btrack's border hypotheses (defaults to the objects' extent).
    divisions : bool
        Mark likely divisions for btrack (:func:`division_states`); without it btrack's
        branching hypotheses only see tracks that its frame-to-frame step already ended.
    division_options : dict, optional
        Keyword arguments of :func:`division_states`.

    Returns
    -------
    DataFrame
        The tracks table (see the module docstring).
    """
    cells = check_objects(cells, "cell")
    if len(cells) == 0:
        log.warning("no cells to track: writing empty tracks")
        return empty_tracks(cells)
    feats = select_features(cells, features)
    vs = np.asarray(voxel_size, dtype=np.float64)
    coords = cells[POSITION].to_numpy(np.float64) * vs
    extent = (np.asarray(shape) * vs) if shape is not None else coords.max(axis=0) + 1.0
    fmat = standardise(cells[feats].to_numpy()) if feats else None
    n_t = cells["t"].nunique()
    if n_t == 1:
        log.warning("cells exist at a single timepoint only: every track has length 1")
    states = (division_states(cells, vs, **(division_options or {})) if divisions else None)
    if states is not None:
        log.info("cells: %d division candidates", int((states == 2).sum()))
    points = link_btrack(coords, cells["t"].to_numpy(), config, fmat, extent, states=states)
    out = points_to_tracks(points, cells, vs)
    log.info("cells: %d objects in %d timepoints -> %d tracks, %d divisions, %d gap points",
             len(cells), n_t, out["track_id"].nunique(),
             int((out.groupby("track_id")["parent"].first() > 0).sum() // 2),
             int(out["dummy"].sum()))
    return out


def lineage_offsets(cell_tracks: pd.DataFrame) -> pd.DataFrame:
    """Displacement of every cell since its lineage began, in pixels, divisions excluded.

    Within a track the offset is the cell's displacement since the track's first point; a
    daughter starts from its mother's last offset, because a dividing cell splits in place:
    the jump from the mother's centroid to a daughter's is not motion of what the cell holds.
    Subtracting the offset from a spot's position puts the spot in a frame that moves with
    its cell (and with the daughter it ends up in).

    Returns
    -------
    DataFrame
        Columns ``t, label, dz, dy, dx`` for every non-interpolated track point.
    """
    cols = ["t", "label", "dz", "dy", "dx"]
    if len(cell_tracks) == 0:
        return pd.DataFrame(columns=cols)
    tr = cell_tracks.sort_values(["track_id", "t"], kind="stable")
    first = tr.groupby("track_id")[POSITION].first()
    last = tr.groupby("track_id")[POSITION].last()
    parent = tr.groupby("track_id")["parent"].first()
    # offset of each track at its start: its mother's offset at the mother's end (recursive)
    start_off: dict[int, np.ndarray] = {}

    def start_of(k, depth=0):
        if k in start_off:
            return start_off[k]
        p = int(parent.get(k, 0))
        if p and p in first.index and depth < 10_000:
            off = start_of(p, depth + 1) + last.loc[p].to_numpy() - first.loc[p].to_numpy()
        else:
            off = np.zeros(3)
        start_off[k] = off
        return off

    base = np.stack([start_of(int(k)) for k in tr["track_id"]]) if len(tr) else np.zeros((0, 3))
    d = base + tr[POSITION].to_numpy() - first.reindex(tr["track_id"]).to_numpy()
    real = ~tr["dummy"].astype(bool).to_numpy()
    return pd.DataFrame({"t": tr["t"].to_numpy()[real], "label": tr["label"].to_numpy()[real],
                         "dz": d[real, 0], "dy": d[real, 1], "dx": d[real, 2]})


