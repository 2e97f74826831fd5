"""Small operations on instance label arrays shared by the merge modules."""

from __future__ import annotations

import numpy as np


def relabel_slices(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Give every 2D instance of a (Z, Y, X) stack a unique node id (1..N, slice by slice).

    Returns
    -------
    nodes : (Z, Y, X) int32 array of node ids (0 = background)
    node_z : (N + 1,) slice of each node (index 0 unused)
    offsets : (Z + 1,) slice z holds nodes ``offsets[z] + 1 .. offsets[z + 1]``
    area : (N + 1,) pixels of each node
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) label stack, got shape {stack.shape}")
    if stack.dtype.kind not in "ui":
        raise ValueError(f"labels must be integers, got {stack.dtype}")
    nodes = np.zeros(stack.shape, np.int32)
    offsets = np.zeros(stack.shape[0] + 1, np.int64)
    areas = [np.zeros(1, np.int64)]
    n = 0
    for z, sl in enumerate(stack):
        if sl.size and sl.min() < 0:
            raise ValueError("labels must be >= 0")
        m = int(sl.max()) if sl.size else 0
        if m == 0:
            offsets[z + 1] = n
            continue
        if m <= 4 * sl.size:  # small ids: a lookup table (O(pixels), no sorting)
            counts = np.bincount(sl.ravel(), minlength=m + 1)
            present = np.flatnonzero(counts)
            present = present[present > 0]
            lut = np.zeros(m + 1, np.int32)
            lut[present] = np.arange(n + 1, n + 1 + len(present))
            nodes[z] = lut[sl]
            areas.append(counts[present])
        else:
            present, inv, counts = np.unique(sl, return_inverse=True, return_counts=True)
            keep = present > 0
            ranks = np.cumsum(keep) * keep
            nodes[z] = np.where(keep[inv], ranks[inv] + n, 0).reshape(sl.shape)
            present, counts = present[keep], counts[keep]
            areas.append(counts)
        n += len(present)
        offsets[z + 1] = n
    node_z = np.zeros(n + 1, np.int64)
    for z in range(stack.shape[0]):
        node_z[offsets[z] + 1:offsets[z + 1] + 1] = z
    return nodes, node_z, offsets, np.concatenate(areas).astype(np.int64)


def pair_overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel overlaps of the node ids of two slices: (ids in a, ids in b, counts), both > 0."""
    a, b = a.ravel(), b.ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        e = np.zeros(0, np.int64)
        return e, e, e
    a, b = a[both].astype(np.int64), b[both].astype(np.int64)
    a0, b0 = a.min(), b.min()
    na, nb = a.max() - a0 + 1, b.max() - b0 + 1
    if na * nb <= 8_000_000:  # dense counting is O(pixels); fall back to sorting when huge
        counts = np.bincount((a - a0) * nb + (b - b0), minlength=na * nb)
        key = np.flatnonzero(counts)
        return key // nb + a0, key % nb + b0, counts[key]
    key, counts = np.unique((a - a0) * nb + (b - b0), return_counts=True)
    return key // nb + a0, key % nb + b0, counts


def sequential_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 1..K keeping their order (no gaps)."""
    m = int(labels.max()) if labels.size else 0
    if m == 0:
        return labels.astype(np.uint32)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=m + 1))
    lut = np.zeros(m + 1, np.uint32)
    lut[present[present > 0]] = np.arange(1, (present > 0).sum() + 1, dtype=np.uint32)
    return lut[labels]
