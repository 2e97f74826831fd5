"""Tracking RNA spots (:func:`track_spots`), optionally in the frame of their cell."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from .cells import lineage_offsets
from .link import link_tiled
from .settings import POSITION, select_features
from .tables import check_objects, empty_tracks, points_to_tracks, standardise

log = logging.getLogger(__name__)

def track_spots(spots: pd.DataFrame, config, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                cell_tracks: pd.DataFrame | None = None, features: Sequence[str] = (),
                shape: Sequence[int] | None = None, tile_size: int = 1500) -> pd.DataFrame:
    """Track RNA spots (diffusive motion, births and deaths).

    Parameters
    ----------
    spots : DataFrame
        ``t, label, z, y, x`` (pixels), optionally ``cell_id`` (label of the cell holding the
        spot at ``t``, 0 for none) and features.
    config : TrackerConfig, dict or path
        btrack configuration for spots (``config/btrack/spot_config.json``).
    cell_tracks : DataFrame, optional
        Tracks table of the cells. When given, spots are linked in the frame of their cell's
        motion (see :func:`lineage_offsets`); spots outside any tracked cell are linked as
        they are.
    tile_size : int
        Most spots per frame btrack links at once. btrack's belief matrix is dense (objects x
        tracks, even in its APPROXIMATE mode), so its time grows with the square of the spots
        per frame; larger sets are cut into tiles in ``(y, x)`` that are tracked separately
        and stitched where tracks cross tile borders (:func:`link_tiled`).

    Returns
    -------
    DataFrame
        Tracks table of the spots (``parent`` is 0: spots do not divide), with a column
        ``cell_track_id`` (the track of the cell holding the spot, 0 for none) when
        ``cell_tracks`` is given.
    """
    spots = check_objects(spots, "spot")
    if len(spots) == 0:
        log.warning("no spots to track: writing empty tracks")
        return empty_tracks(spots)
    vs = np.asarray(voxel_size, dtype=np.float64)
    pos = spots[POSITION].to_numpy(np.float64)
    offset = np.zeros_like(pos)
    extra = []
    cell_track = np.zeros(len(spots), dtype=np.int64)
    if cell_tracks is not None and "cell_id" in spots.columns and len(cell_tracks):
        offs = lineage_offsets(cell_tracks)
        key = pd.MultiIndex.from_arrays([spots["t"].to_numpy(), spots["cell_id"].to_numpy()])
        table = offs.set_index(["t", "label"])
        found = table.reindex(key)
        offset = np.nan_to_num(found[["dz", "dy", "dx"]].to_numpy(np.float64))
        real = cell_tracks[~cell_tracks["dummy"].astype(bool)]
        ct = real.set_index(["t", "label"])["track_id"].reindex(key)
        cell_track = ct.fillna(0).to_numpy(np.int64)
        log.info("spots: %.0f%% linked in their cell's moving frame",
                 100 * np.mean(~found["dz"].isna().to_numpy()))
    elif cell_tracks is not None and "cell_id" not in spots.columns:
        log.warning("spots: no cell_id column; linking positions as they are")
    coords = (pos - offset) * vs
    extent = (np.asarray(shape) * vs) if shape is not None else None
    feats = select_features(spots, features)
    fmat = standardise(spots[feats].to_numpy()) if feats else None
    points = link_tiled(coords, spots["t"].to_numpy(), config, fmat, extent,
                        tile_size=tile_size)
    # Back to the sample frame: real points take their own offset, interpolated ones the
    # offset of the track's previous real point.
    obj = points["obj"].to_numpy()
    off = np.full((len(points), 3), np.nan)
    off[obj >= 0] = offset[obj[obj >= 0]] * vs
    off = pd.DataFrame(off).groupby(points["track_id"].to_numpy()).ffill().to_numpy()
    points[POSITION] = points[POSITION].to_numpy() + np.nan_to_num(off)
    if cell_tracks is not None:
        points["cell_track_id"] = np.where(obj >= 0, cell_track[np.maximum(obj, 0)], 0)
        extra = ["cell_track_id"]
    out = points_to_tracks(points, spots, vs, extra)
    log.info("spots: %d objects in %d timepoints -> %d tracks", len(spots),
             spots["t"].nunique(), out["track_id"].nunique())
    return out


