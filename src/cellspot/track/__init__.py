"""Tracking cells (with divisions) and RNA spots over time with btrack.

Positions in the object tables are pixels ``(z, y, x)``; btrack works in micrometres (the
voxel size scales each axis), so that search radii and motion-model noise in the JSON
configurations under ``config/btrack/`` are physical and isotropic.

A *tracks table* has one row per object per timepoint on a track:

``track_id, t, z, y, x, label, parent, root, generation, dummy`` + the objects' features,

where ``label`` is the object's label at ``t`` in the input label image (0 for a point that
btrack interpolated across a missed detection, ``dummy=True``), ``parent`` is the track id of
the mother cell (0 for none), ``root`` the first ancestor and ``generation`` the number of
divisions since the root. A cell keeps its ``track_id`` across gaps; each daughter of a
division gets a new one. The object features on interpolated points are missing (NaN; 0 for
integer columns such as ``cell_id``).

Modules:

* :mod:`.settings` - the ``track:`` settings, btrack configurations, the tracks columns;
* :mod:`.link` - btrack (everything btrack-specific) and the tiled linking of large spot sets
  (btrack's belief matrix is dense, so its time grows with the square of objects per frame);
* :mod:`.divisions` - METAPHASE/ANAPHASE states from geometry (a cell replaced by two smaller
  cells on opposite sides of it), which btrack's branching hypotheses favour;
* :mod:`.cells`, :mod:`.spots` - tracking cells and spots from object tables;
* :mod:`.tables` - object tables in, tracks tables out;
* :mod:`.export` - relabelled label images, CTC, napari, Parquet;
* :mod:`.run` - the file-level driver of the rule ``track``.

Features: btrack compares feature vectors by cosine similarity (the ``VISUAL`` update, off in
the default configuration); standardised features need at least two columns to mean anything.
"""

from .cells import lineage_offsets, track_cells
from .divisions import division_states
from .export import (
    relabel_by_track,
    tracks_to_napari,
    write_ctc,
    write_napari_tracks,
)
from .link import link_btrack, link_tiled
from .run import describe_timepoints, track_batch
from .settings import (
    POSITION,
    TRACK_COLUMNS,
    TrackSettings,
    load_tracker_config,
    select_features,
)
from .spots import track_spots
from .tables import empty_tracks, objects_from_labels

__all__ = [
    "POSITION",
    "TRACK_COLUMNS",
    "TrackSettings",
    "describe_timepoints",
    "division_states",
    "empty_tracks",
    "lineage_offsets",
    "link_btrack",
    "link_tiled",
    "load_tracker_config",
    "objects_from_labels",
    "relabel_by_track",
    "select_features",
    "track_batch",
    "track_cells",
    "track_spots",
    "tracks_to_napari",
    "write_ctc",
    "write_napari_tracks",
]
