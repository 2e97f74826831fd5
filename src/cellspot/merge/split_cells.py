"""One cell per nucleus: fragments without a nucleus joined, cells with several split.

Right after a division the two daughters touch, and a segmentation model often returns them
as one cell with two nuclei, sometimes with small nucleus-less fragments beside it; the
nuclei, smaller and apart, are found separately. So, when the movie has nuclei:

- a fragment (a cell without a nucleus, smaller than ``max_fragment`` of the median cell with
  one) joins the nucleated cell it shares the most boundary with
  (:func:`absorb_anucleate_fragments`);
- a cell holding several nuclei is split by giving each of its voxels to the nearest of its
  nuclei (Euclidean in µm, anisotropic voxels respected): daughters of equal size are cut
  along the plane halfway between their nuclei (:func:`split_multinucleate`).

Binucleate cell types (hepatocytes, myotubes, osteoclasts) keep their nuclei together with
``merge.split_multinucleate: false``, which turns both off.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi


def split_multinucleate(cells: np.ndarray, nuclei: np.ndarray, parents: pd.DataFrame,
                        voxel_size: Sequence[float]) -> tuple[np.ndarray, int]:
    """Split every cell with two or more nuclei; returns the new labels and the cells split.

    Parameters
    ----------
    cells, nuclei : (Z, Y, X) int arrays
        3D instance labels.
    parents : DataFrame
        :func:`cellspot.merge.assign_nuclei` of ``cells`` and ``nuclei`` (``nucleus_id``,
        ``cell_id``).
    voxel_size : (z, y, x) µm

    Returns
    -------
    labels : array like ``cells``
        The first nucleus keeps the cell's label; the others' parts get new labels above the
        largest one.
    n_split : int
    """
    owned = parents[parents["cell_id"] > 0]
    multi = owned.groupby("cell_id")["nucleus_id"].apply(list)
    multi = multi[multi.map(len) > 1]
    if not len(multi):
        return cells, 0
    out = np.array(cells, copy=True)
    next_id = int(out.max()) + 1
    boxes = ndi.find_objects(out)
    sampling = tuple(float(v) for v in voxel_size)
    for cid, nids in multi.items():
        box = boxes[int(cid) - 1]
        view = out[box]
        inside = view == cid
        seeds = np.zeros(inside.shape, np.int32)
        for k, nid in enumerate(sorted(nids), start=1):
            seeds[(nuclei[box] == nid) & inside] = k
        _, nearest = ndi.distance_transform_edt(seeds == 0, sampling=sampling,
                                                return_indices=True)
        part = seeds[tuple(nearest)]
        for k in range(2, len(nids) + 1):
            view[inside & (part == k)] = next_id
            next_id += 1
    return out, len(multi)


def absorb_anucleate_fragments(cells: np.ndarray, parents: pd.DataFrame,
                               max_fragment: float = 0.5) -> tuple[np.ndarray, int]:
    """Join small nucleus-less cells to the nucleated cell they touch most.

    Parameters
    ----------
    cells : (Z, Y, X) int array
    parents : DataFrame
        :func:`cellspot.merge.assign_nuclei` of ``cells`` and their nuclei.
    max_fragment : float
        Largest fragment, as a fraction of the median volume of cells with one nucleus: a
        whole cell whose nucleus was missed is left alone.

    Returns
    -------
    labels, n_joined
    """
    owned = parents[parents["cell_id"] > 0]
    n_nuc = owned.groupby("cell_id").size()
    ids, volumes = np.unique(cells[cells > 0], return_counts=True)
    single = n_nuc[n_nuc == 1].index
    if len(ids) == 0 or not len(single):
        return cells, 0
    limit = max_fragment * float(np.median(volumes[np.isin(ids, single)]))
    fragments = ids[~np.isin(ids, n_nuc.index) & (volumes < limit)]
    if not len(fragments):
        return cells, 0
    out = np.array(cells, copy=True)
    boxes = ndi.find_objects(cells)
    nucleated = set(int(i) for i in n_nuc.index)
    joined = 0
    for fid in fragments:
        box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n))
                    for s, n in zip(boxes[int(fid) - 1], cells.shape))
        frag = cells[box] == fid
        shell = ndi.binary_dilation(frag) & ~frag
        touching = cells[box][shell]
        touching = touching[np.isin(touching, list(nucleated))]
        if len(touching):
            out[box][frag] = np.bincount(touching).argmax()
            joined += 1
    return out, joined
