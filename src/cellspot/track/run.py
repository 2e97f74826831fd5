"""The file-level driver of rule ``track`` (:func:`track_batch`)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from ..errors import TrackError
from ..omezarr import atomic_output, write_table
from .cells import track_cells
from .export import relabel_by_track, write_ctc, write_napari_tracks
from .settings import TrackSettings
from .spots import track_spots
from .tables import empty_tracks

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- one batch


def describe_timepoints(objects: pd.DataFrame, n_frames: int, what: str) -> list[str]:
    """Notes on degenerate input (single timepoint, empty timepoints, everything vanishing)."""
    notes = []
    counts = np.bincount(objects["t"].to_numpy(np.int64), minlength=n_frames)[:n_frames] \
        if len(objects) else np.zeros(n_frames, dtype=np.int64)
    if n_frames == 1:
        notes.append(f"{what}: the movie has a single timepoint; tracks have length 1")
    empty = np.flatnonzero(counts == 0)
    if len(empty) == n_frames:
        notes.append(f"{what}: no objects at any timepoint; outputs are empty")
    elif len(empty):
        notes.append(f"{what}: no objects at timepoints {empty.tolist()}")
        last = np.flatnonzero(counts > 0).max()
        if last < n_frames - 1:
            notes.append(f"{what}: all objects vanish after timepoint {int(last)}")
    return notes


def track_batch(cells_table: str | os.PathLike, cell_labels: str | os.PathLike,
                outputs: dict[str, str | os.PathLike], settings: TrackSettings | None = None,
                spots_table: str | os.PathLike | None = None) -> dict:
    """Track one batch and write every output atomically.

    Parameters
    ----------
    cells_table, spots_table : path
        ``tables/cells.parquet`` and ``tables/spots.parquet`` of the merge stage.
    cell_labels : path
        ``labels/cells.zarr`` (TZYX NGFF label image) the cell table's labels refer to.
    outputs : dict
        Paths for ``cell_tracks`` (Parquet), ``spot_tracks`` (Parquet), ``tracked_labels``
        (NGFF labels), ``ctc`` (folder), ``napari`` (CSV) and ``napari_graph`` (JSON; by
        default next to the CSV).

    Returns
    -------
    dict
        Counts and the notes logged about degenerate input.
    """
    from ..omezarr import create_labels, open_array, read_meta

    settings = settings or TrackSettings()
    labels = open_array(cell_labels)
    meta = read_meta(cell_labels)
    if labels.ndim != 4:
        raise TrackError(f"{cell_labels}: expected TZYX labels, got shape {labels.shape}")
    n_t = labels.shape[0]
    cells = pd.read_parquet(cells_table)
    if len(cells) and (cells["t"].max() >= n_t or cells["t"].min() < 0):
        raise TrackError(f"{cells_table}: timepoints {cells['t'].min()}..{cells['t'].max()} "
                         f"outside the {n_t} timepoints of {cell_labels}")
    notes = describe_timepoints(cells, n_t, "cells")
    for n in notes:
        log.warning(n)
    vs = meta.voxel_size
    feats = [f for f in settings.cell_features if f.endswith("*") or f in cells.columns]
    if len(feats) < len(settings.cell_features):
        log.warning("cell features missing from %s: %s", cells_table,
                    sorted(set(settings.cell_features) - set(feats)))
    cell_tracks = track_cells(
        cells, settings.cell_config, vs, feats, shape=labels.shape[1:],
        divisions=settings.detect_divisions,
        division_options={"max_volume_ratio": settings.division_max_volume_ratio})

    spot_tracks = None
    if settings.track_spots and spots_table is not None:
        spots = pd.read_parquet(spots_table)
        snotes = describe_timepoints(spots, n_t, "spots")
        for n in snotes:
            log.warning(n)
        notes += snotes
        sfeats = [f for f in settings.spot_features if f.endswith("*") or f in spots.columns]
        spot_tracks = track_spots(
            spots, settings.spot_config, vs,
            cell_tracks if settings.spot_frame == "cell" else None, sfeats,
            shape=labels.shape[1:], tile_size=settings.spot_tile_size)

    write_table(outputs["cell_tracks"], cell_tracks)
    if "spot_tracks" in outputs:
        write_table(outputs["spot_tracks"],
                    spot_tracks if spot_tracks is not None else empty_tracks())
    if "tracked_labels" in outputs:
        with atomic_output(outputs["tracked_labels"]) as tmp:
            arr = create_labels(tmp, labels.shape, meta, "cells_tracked", dtype="uint32",
                                chunks=labels.chunks)
            relabel_by_track(labels, cell_tracks, out=arr)
    lbep = write_ctc(outputs["ctc"], labels, cell_tracks) if "ctc" in outputs else None
    if "napari" in outputs:
        write_napari_tracks(outputs["napari"], cell_tracks, outputs.get("napari_graph"))
    summary = {
        "timepoints": n_t,
        "cells": len(cells),
        "cell_tracks": int(cell_tracks["track_id"].nunique()),
        "divisions": int((cell_tracks.groupby("track_id")["parent"].first() > 0).sum() // 2)
        if len(cell_tracks) else 0,
        "ctc_tracks": None if lbep is None else len(lbep),
        "spot_tracks": None if spot_tracks is None else int(spot_tracks["track_id"].nunique()),
        "notes": notes,
    }
    log.info("tracking summary: %s", summary)
    return summary
