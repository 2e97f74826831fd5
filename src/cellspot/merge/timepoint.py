"""One timepoint merged: 2D instances and detections -> 3D labels and tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..omezarr import ImageMeta
from ..table_specs import SPOTS
from .compartments import assign_nuclei, grow_cells, semantic_map
from .label_ops import sequential_labels
from .measure import empty_objects, object_table, spot_object_columns
from .settings import MergeSettings
from .split_cells import absorb_anucleate_fragments, split_multinucleate
from .spots import (
    count_molecules,
    link_spot_detections,
    merge_spots,
    spot_labels,
)
from .stitch import stitch_slices

# --------------------------------------------------------------------------- one timepoint


@dataclass
class MergedTimepoint:
    """3D results of one timepoint."""

    cells: np.ndarray       # (Z, Y, X) uint32
    nuclei: np.ndarray      # (Z, Y, X) uint32
    semantic: np.ndarray    # (Z, Y, X) uint8
    spots: np.ndarray       # (Z, Y, X) uint32
    cell_table: pd.DataFrame
    nucleus_table: pd.DataFrame
    spot_table: pd.DataFrame


def merge_timepoint(cells_2d: np.ndarray | None, nuclei_2d: np.ndarray | None,
                    detections: pd.DataFrame | None, image: np.ndarray | None,
                    meta: ImageMeta, settings: MergeSettings | None = None,
                    shape: Sequence[int] | None = None) -> MergedTimepoint:
    """Stitch, relate and measure everything of one timepoint.

    ``image`` is the (C, Z, Y, X) preprocessed image (for mean intensities and spot
    localisation). Missing classes (None) give empty labels; ``shape`` is needed when all are
    missing and there is no image.
    """
    s = settings or MergeSettings()
    if shape is None:
        for a in (cells_2d, nuclei_2d):
            if a is not None:
                shape = a.shape
                break
        else:
            if image is None:
                raise ValueError("merge_timepoint needs labels, an image or a shape")
            shape = image.shape[1:]
    shape = tuple(int(v) for v in shape)
    vs = meta.voxel_size
    kw = dict(iou_threshold=s.iou_threshold, max_gap=s.max_gap, anisotropy=vs,
              max_gap_um=s.max_gap_um, fill_gaps=s.fill_gaps,
              fragment_containment=s.fragment_containment, merge_coverage=s.merge_coverage,
              waist_ratio=s.waist_ratio, min_volume_vox=s.min_volume_vox)
    nuclei = (stitch_slices(nuclei_2d, **kw) if nuclei_2d is not None
              else np.zeros(shape, np.uint32))
    if s.cells_from_nuclei:  # the cells model's cells are not used
        cells = grow_cells(nuclei, s.cell_expansion_um, vs)
    elif cells_2d is not None:
        cells = stitch_slices(cells_2d, **kw)
    else:
        cells = np.zeros(shape, np.uint32)
    for name, a in (("cells", cells), ("nuclei", nuclei)):
        if a.shape != shape:
            raise ValueError(f"{name} labels {a.shape} do not match the image {shape}")
    names = list(meta.channel_names) if image is not None else []
    parents = assign_nuclei(cells, nuclei, s.nucleus_min_overlap)
    if s.split_multinucleate and len(parents) and not s.cells_from_nuclei:
        cells, n_joined = absorb_anucleate_fragments(cells, parents)
        cells, n_split = split_multinucleate(cells, nuclei, parents, vs)
        if n_joined or n_split:
            cells = sequential_labels(cells)
            parents = assign_nuclei(cells, nuclei, s.nucleus_min_overlap)
    sem = semantic_map(cells, nuclei)
    ntab = object_table(nuclei, image, vs, names)
    ntab["cell_id"] = parents.set_index("nucleus_id")["cell_id"].reindex(ntab["label"]) \
        .fillna(0).to_numpy(np.int64) if len(ntab) else pd.Series([], dtype="int64")
    ctab = object_table(cells, image, vs, names)
    per_cell = parents[parents.cell_id > 0].groupby("cell_id").size()
    ctab["n_nuclei"] = per_cell.reindex(ctab["label"]).fillna(0).to_numpy(np.int64) \
        if len(ctab) else pd.Series([], dtype="int64")
    spot_img = None
    if image is not None and detections is not None and len(detections):
        spot_img = image[meta.channel_index(s.spots.channel)]
    members = link_spot_detections(detections, spot_img, vs, s.spots)
    spots = merge_spots(detections, spot_img, vs, cells=cells, nuclei=nuclei,
                        settings=s.spots, members=members, parents=parents)
    spots = count_molecules(spots, spot_img, s.spots)
    blobs = spot_labels(members, detections, shape)
    if len(spots):
        stab = spot_object_columns(spots, blobs, image if image is not None else np.zeros(
            (0,) + shape), vs, names)
    else:
        stab = pd.concat([SPOTS.empty(), empty_objects(names).drop(
            columns=["label", "z", "y", "x"])], axis=1)
    return MergedTimepoint(cells, nuclei, sem, blobs, ctab, ntab, _object_columns_first(stab))


def _object_columns_first(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in the order of :func:`object_table`, then the rest."""
    first = ["label", "z", "y", "x", "volume_vox", "volume_um3"] + [
        f"bbox_{a}{e}" for e in "01" for a in "zyx"] + [c for c in df if c.startswith("mean_")]
    return df[[c for c in first if c in df] + [c for c in df if c not in first]]


