"""Nuclei to cells (:func:`assign_nuclei`, :func:`grow_cells`) and the semantic map
(:func:`semantic_map`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .label_ops import pair_overlaps

# --------------------------------------------------------------------------- compartments


def assign_nuclei(cells: np.ndarray, nuclei: np.ndarray, min_overlap: float = 0.5) -> pd.DataFrame:
    """The cell that contains each nucleus.

    Parameters
    ----------
    cells, nuclei : (Z, Y, X) int arrays
        3D instance labels.
    min_overlap : float
        Fraction of the nucleus that must lie in one cell; a nucleus mostly outside every cell
        gets ``cell_id`` 0. A cell may hold several nuclei (a dividing cell).

    Returns
    -------
    DataFrame with columns ``nucleus_id, cell_id, overlap`` (fraction of the nucleus in the cell).
    """
    cells, nuclei = np.asarray(cells), np.asarray(nuclei)
    if cells.shape != nuclei.shape:
        raise ValueError(f"cells {cells.shape} and nuclei {nuclei.shape} differ in shape")
    m = int(nuclei.max()) if nuclei.size else 0
    size = np.bincount(nuclei.ravel()) if m <= 4 * nuclei.size else None
    ids = np.flatnonzero(size) if size is not None else np.unique(nuclei)
    ids = ids[ids > 0]
    if len(ids) == 0:
        return pd.DataFrame({"nucleus_id": pd.Series([], dtype="int64"),
                             "cell_id": pd.Series([], dtype="int64"),
                             "overlap": pd.Series([], dtype="float64")})
    pn, pc, counts = pair_overlaps(nuclei, cells)
    df = pd.DataFrame({"nucleus_id": pn, "cell_id": pc, "count": counts})
    best = df[df.cell_id > 0].sort_values("count", ascending=False).drop_duplicates("nucleus_id")
    best = best.set_index("nucleus_id").reindex(ids)
    cell = best["cell_id"].fillna(0).astype(np.int64).to_numpy().copy()
    if size is None:
        size = pd.Series(nuclei[nuclei > 0]).value_counts().reindex(ids).to_numpy()
    else:
        size = size[ids]
    frac = best["count"].fillna(0).to_numpy() / size
    cell[frac < min_overlap] = 0
    return pd.DataFrame({"nucleus_id": ids.astype(np.int64), "cell_id": cell, "overlap": frac})


def grow_cells(nuclei: np.ndarray, distance_um: float,
               voxel_size: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Cells of a movie without a cytoplasm stain: each nucleus grown by ``distance_um``.

    Every voxel within ``distance_um`` (physical, anisotropic ``voxel_size``) of a nucleus joins
    the nearest one, so growing stops halfway between neighbours (CellProfiler's
    "Distance-N" secondary objects; scikit-image's ``expand_labels``). A cell has its
    nucleus's id.
    """
    nuclei = np.asarray(nuclei)
    if not nuclei.any():
        return np.zeros(nuclei.shape, np.uint32)
    dist, idx = ndi.distance_transform_edt(nuclei == 0, sampling=tuple(voxel_size),
                                           return_indices=True)
    cells = nuclei[tuple(idx)]
    cells[dist > distance_um] = 0
    return cells.astype(np.uint32)


def semantic_map(cells: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """0 background, 1 cytoplasm (cell minus nucleus), 2 nucleus (uint8).

    Nucleus voxels are 2 even where the cell mask misses them: the nucleus is segmented on its
    own stain, which is the better evidence there.
    """
    cells, nuclei = np.asarray(cells), np.asarray(nuclei)
    if cells.shape != nuclei.shape:
        raise ValueError(f"cells {cells.shape} and nuclei {nuclei.shape} differ in shape")
    out = (cells > 0).astype(np.uint8)
    out[nuclei > 0] = 2
    return out


