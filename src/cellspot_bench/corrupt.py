"""Test input from truth: 3D labels -> the per-slice 2D instances a 2D segmenter produces."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def slice_labels(labels3d: np.ndarray, seed: int | None = None, p_drop: float = 0.0,
                 p_split: float = 0.0, p_merge: float = 0.0,
                 min_split_area: int = 20) -> np.ndarray:
    """Turn 3D instance labels into the per-slice 2D labels a 2D segmenter produces.

    Each slice's objects become 2D instances (connected components of each object's section)
    with ids shuffled per slice. Optional noise, per 2D instance: dropped (``p_drop``), cut in
    two along a random line through its centroid (``p_split``, instances of at least
    ``min_split_area`` pixels), merged with a touching instance (``p_merge``).
    """
    from skimage.measure import label as cc_label

    rng = np.random.default_rng(seed)
    labels3d = np.asarray(labels3d)
    out = np.zeros(labels3d.shape, np.int32)
    for z, sl in enumerate(labels3d):
        lab = cc_label(sl, background=0, connectivity=1).astype(np.int32)
        n = int(lab.max())
        if n == 0:
            continue
        if p_merge > 0:
            pairs = set()
            for a, b in ((lab[1:], lab[:-1]), (lab[:, 1:], lab[:, :-1])):
                touch = (a != b) & (a > 0) & (b > 0)
                pairs |= {tuple(sorted(p)) for p in zip(a[touch].tolist(), b[touch].tolist())}
            taken = set()
            lut = np.arange(n + 1)
            for a, b in sorted(pairs):
                if a in taken or b in taken or rng.random() >= p_merge:
                    continue
                lut[b] = a
                taken |= {a, b}
            lab = lut[lab]
        if p_split > 0:
            nxt = int(lab.max()) + 1
            for i, slc in enumerate(ndi.find_objects(lab)):
                if slc is None or rng.random() >= p_split:
                    continue
                m = lab[slc] == i + 1
                if m.sum() < min_split_area:
                    continue
                yy, xx = np.nonzero(m)
                theta = rng.uniform(0, np.pi)
                side = (yy - yy.mean()) * np.cos(theta) + (xx - xx.mean()) * np.sin(theta) > 0
                sub = lab[slc]
                sub[yy[side], xx[side]] = nxt
                nxt += 1
        if p_drop > 0:
            ids = np.unique(lab)
            ids = ids[ids > 0]
            drop = ids[rng.random(len(ids)) < p_drop]
            lab[np.isin(lab, drop)] = 0
        ids = np.unique(lab)
        ids = ids[ids > 0]
        lut = np.zeros(int(lab.max()) + 1, np.int32)
        lut[ids] = rng.permutation(len(ids)) + 1
        out[z] = lut[lab]
    return out
