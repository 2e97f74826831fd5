"""Signed distance to the surface of a mask (a nucleus): one definition, as a map or at points.

Negative inside, positive outside: inside, minus the distance to the nearest voxel outside;
outside, the distance to the nearest voxel inside; in the units of ``sampling`` (the voxel size,
µm), so anisotropic voxels are handled. Used for RNA distance to the nucleus (merge, report)
and for shape interpolation across a missing slice (merge).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree


def signed_distance(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Signed distance of every voxel to the surface of ``mask`` (labels > 0); NaN if empty."""
    inside = np.asarray(mask) > 0
    if not inside.any():
        return np.full(inside.shape, np.nan)
    sampling = tuple(float(v) for v in sampling)
    return (ndi.distance_transform_edt(~inside, sampling=sampling)
            - ndi.distance_transform_edt(inside, sampling=sampling))


def signed_distance_at(points_px: np.ndarray, nuclei: np.ndarray, voxel_size) -> np.ndarray:
    """Signed distance (µm) of points to the nearest nucleus surface: < 0 inside a nucleus.

    The definition of :func:`signed_distance` (outside, the distance to the nearest nucleus
    voxel; inside, minus the distance to the nearest background voxel), measured from the
    sub-pixel position to voxel centres with a k-d tree of the surface voxels, so no map of the
    frame is built. NaN without nuclei.
    """
    out = np.full(len(points_px), np.nan)
    if len(points_px) == 0 or not nuclei.any():
        return out
    vs = np.asarray(voxel_size, float)
    fg = nuclei > 0
    edge = np.zeros_like(fg)  # voxels with a 6-neighbour on the other side of the surface
    for lo, hi in (((slice(1, None),), (slice(None, -1),)),
                   ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                   ((Ellipsis, slice(1, None)), (Ellipsis, slice(None, -1)))):
        diff = fg[lo] != fg[hi]  # plain slicing keeps memory access contiguous
        edge[lo] |= diff
        edge[hi] |= diff
    pts = np.asarray(points_px, float)
    inside = fg[tuple(np.clip(np.round(pts).astype(int), 0, np.array(fg.shape) - 1).T)]
    for sel, surface, sign in ((~inside, edge & fg, 1.0), (inside, edge & ~fg, -1.0)):
        if sel.any():
            vox = np.argwhere(surface)
            if len(vox):
                out[sel] = sign * cKDTree(vox * vs).query(pts[sel] * vs)[0]
    return out
