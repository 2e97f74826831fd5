"""The per-block segmentation store: its layout and its reader (no torch, no MMDetection).

The segment stage writes one store per block of timepoints
(``results/{batch}/segment/{model}/t{start:04d}-{stop:04d}.zarr``, a Zarr v2 group, written by
:func:`cellspot.segment.infer.segment_block`); the merge stage reads them. Layout::

    nucleus, cell   (T_block, Z, Y, X) int32   model "cells": per-slice instance ids
    spots           (T_block, Z, Y, X) int32   model "spots": per-slice instance ids
    instances.parquet                          one row per instance (see below)
    .zattrs: model, classes, arrays, t_start, t_stop, channels, checkpoint, score_threshold,
             tta

The semantic map (background / cytoplasm / nucleus) is not stored per slice: merge builds it
from the 3D labels. A per-slice map from a semantic head was measured worse than the one the
instances give (cytoplasm IoU 0.689 vs 0.887, nucleus 0.619 vs 0.856; docs/segment.md) and was
never read, so that variant was removed.

Instance ids are unique within a slice (1 = highest score; 0 background); where masks overlap
the higher score wins. ``instances.parquet`` columns: ``t`` (timepoint of the movie, not of the
block), ``z``, ``class``, ``instance`` (its id in that slice and class array), ``score``,
``y0, x0, y1, x1`` (bbox, end exclusive), ``area`` (pixels), ``y, x`` (intensity-weighted
centroid on the input image, sub-pixel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cellspot.omezarr import OmeZarrError
from cellspot.table_specs import INSTANCES

# Zarr array of each class.
ARRAY_NAMES = {"nucleus": "nucleus", "cell": "cell", "spot": "spots"}
TABLE_COLUMNS = INSTANCES.columns
TABLE_NAME = "instances.parquet"


@dataclass
class Segmentation:
    """A block store opened by :func:`read_segmentation`.

    ``arrays`` maps names (``nucleus``, ``cell`` or ``spots``) to lazy zarr arrays
    ``(T_block, Z, Y, X)``; index them with ``t - t_start``. ``table`` has absolute ``t``.
    """

    arrays: dict
    table: pd.DataFrame
    t_start: int
    t_stop: int
    attrs: dict


def read_segmentation(path: str | os.PathLike) -> Segmentation:
    """Open a block store, checking its attributes, table columns and listed arrays."""
    import zarr

    path = Path(path)
    if not (path / ".zgroup").is_file():
        raise OmeZarrError(f"{path}: not a segmentation store (no Zarr group)")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = group.attrs.asdict()
    except Exception as exc:  # zarr raises several types for a broken store
        raise OmeZarrError(f"{path}: unreadable segmentation store ({exc})") from exc
    for key in ("arrays", "t_start", "t_stop"):
        if key not in attrs:
            raise OmeZarrError(f"{path}: not a cellspot segmentation store (no {key!r} "
                               "attribute)")
    table_path = path / TABLE_NAME
    if not table_path.is_file():
        raise OmeZarrError(f"{path}: {TABLE_NAME} is missing")
    table = pd.read_parquet(table_path)
    missing = {"t", "z", "class", "y", "x"} - set(table.columns)
    if missing:
        raise OmeZarrError(f"{table_path}: columns {sorted(missing)} missing")
    try:
        arrays = {n: group[n] for n in attrs["arrays"]}
    except KeyError as exc:
        raise OmeZarrError(f"{path}: array {exc} listed in 'arrays' is missing") from exc
    return Segmentation(arrays, table, int(attrs["t_start"]), int(attrs["t_stop"]), attrs)
