"""Cell Tracking Challenge (CTC) format: writing and reading result folders.

A CTC result folder holds one mask per frame (``mask000.tif`` ...) whose labels are track
labels, and ``res_track.txt`` with one line ``L B E P`` per track (label, first frame, last
frame, parent label or 0). The ground-truth folder is ``<gt>/TRA/`` with ``man_track000.tif``
... and ``man_track.txt``. The format requires a label to be present in *every* frame from B
to E, so a track with a gap becomes two CTC tracks, the second a child of the first (what the
challenge's own tools do).

Ground truth and TRA/DET scores are evaluation: :mod:`cellspot_bench.ctc_eval`.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import tifffile

from .errors import CTCError
from .omezarr import atomic_output

log = logging.getLogger(__name__)

LBEP_COLUMNS = ["label", "begin", "end", "parent"]



def frame_digits(n_frames: int) -> int:
    # The challenge uses three digits, four for movies of 1000 frames or more.
    return max(3, len(str(max(n_frames - 1, 0))))


def tracks_to_lbep(tracks: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """CTC track table of a tracks table, splitting tracks at gaps.

    Parameters
    ----------
    tracks : DataFrame
        One row per track point with columns ``track_id``, ``t``, ``parent`` (track id or 0)
        and ``label`` (the object's label in the label image at ``t``; 0 for points the tracker
        interpolated across a gap, which have no mask).

    Returns
    -------
    lbep : DataFrame
        Columns ``label, begin, end, parent``; labels are 1..N.
    ctc_label : ndarray of int
        The CTC label of each row of ``tracks`` (0 for rows without a mask).
    """
    ctc_label = np.zeros(len(tracks), dtype=np.int64)
    if len(tracks) == 0:
        return pd.DataFrame(columns=LBEP_COLUMNS, dtype=np.int64), ctc_label
    t = tracks["t"].to_numpy(np.int64)
    tid = tracks["track_id"].to_numpy(np.int64)
    has_mask = tracks["label"].to_numpy() > 0
    parent_of = dict(zip(tid, tracks["parent"].to_numpy(np.int64)))

    rows = []  # label, begin, end, parent (as CTC labels)
    first_seg, last_seg = {}, {}  # track id -> CTC label of its first / last segment
    order = np.lexsort((t, tid))
    next_label = 1
    for track_id, idx in _groups(tid[order], order):
        idx = idx[has_mask[idx]]
        if len(idx) == 0:
            continue
        tt = t[idx]
        breaks = np.flatnonzero(np.diff(tt) > 1) + 1
        prev = 0
        for seg in np.split(np.arange(len(idx)), breaks):
            label = next_label
            next_label += 1
            ctc_label[idx[seg]] = label
            rows.append([label, int(tt[seg[0]]), int(tt[seg[-1]]), prev])
            if prev == 0:
                first_seg[track_id] = label
            prev = label
        last_seg[track_id] = prev

    lbep = pd.DataFrame(rows, columns=LBEP_COLUMNS, dtype=np.int64)
    # Link first segments to the last segment of the nearest ancestor that has a mask.
    label_to_track = {v: k for k, v in first_seg.items()}
    end_of = dict(zip(lbep["label"], lbep["end"]))
    parents = lbep["parent"].to_numpy().copy()
    for i, (label, begin) in enumerate(zip(lbep["label"], lbep["begin"])):
        if label not in label_to_track:
            continue
        anc = parent_of.get(label_to_track[label], 0)
        seen = set()
        while anc and anc not in last_seg and anc not in seen:
            seen.add(anc)
            anc = parent_of.get(anc, 0)
        p = last_seg.get(anc, 0)
        parents[i] = p if p and end_of[p] < begin else 0
    lbep["parent"] = parents
    return lbep, ctc_label


def _groups(sorted_keys: np.ndarray, values: np.ndarray):
    """Yield ``(key, values)`` for runs of equal keys in a sorted key array."""
    if len(sorted_keys) == 0:
        return
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(sorted_keys)]
    for s, e in zip(starts, ends):
        yield sorted_keys[s], values[s:e]


def lbep_lines(lbep: pd.DataFrame) -> str:
    arr = np.asarray(lbep[LBEP_COLUMNS], dtype=np.int64).reshape(-1, 4)
    return "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in arr)


def mask_dtype(max_label: int):
    if max_label <= np.iinfo(np.uint16).max:
        return np.uint16
    warnings.warn(f"{max_label} CTC labels exceed 16 bits; writing 32-bit masks", stacklevel=3)
    return np.uint32


def write_ctc_result(outdir: str | os.PathLike, masks: Iterable[np.ndarray], lbep: pd.DataFrame,
                     n_frames: int | None = None) -> Path:
    """Write a CTC result folder (``res_track.txt`` and ``mask###.tif``) atomically.

    Parameters
    ----------
    outdir : path-like
        Folder to create (replaced if it exists).
    masks : iterable of ndarray
        One label image per frame (ZYX or YX) whose labels are the CTC labels of ``lbep``.
    lbep : DataFrame
        Columns ``label, begin, end, parent`` (see :func:`tracks_to_lbep`).
    n_frames : int, optional
        Number of frames, for the file-name width; defaults to ``len(masks)``.
    """
    masks = masks if n_frames is not None else list(masks)
    n_frames = len(masks) if n_frames is None else n_frames
    digits = frame_digits(n_frames)
    dtype = mask_dtype(int(lbep["label"].max()) if len(lbep) else 0)
    with atomic_output(outdir) as tmp:
        tmp.mkdir()
        for t, m in enumerate(masks):
            tifffile.imwrite(tmp / f"mask{t:0{digits}d}.tif", np.asarray(m).astype(dtype),
                             compression="zlib")
        (tmp / "res_track.txt").write_text(lbep_lines(lbep))
    return Path(outdir)


def read_lbep(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``res_track.txt`` / ``man_track.txt`` file."""
    path = Path(path)
    if not path.exists():
        raise CTCError(f"{path}: no such CTC track file")
    text = path.read_text().split()
    if len(text) % 4:
        raise CTCError(f"{path}: expected 4 integers per line (L B E P)")
    arr = np.asarray(text, dtype=np.int64).reshape(-1, 4)
    return pd.DataFrame(arr, columns=LBEP_COLUMNS)


def relabel_frame(labels: np.ndarray, mapping: Mapping[int, int] | tuple[np.ndarray, np.ndarray],
                  dtype=None) -> np.ndarray:
    """Replace label values by ``mapping`` (old -> new); labels not in it become 0.

    ``mapping`` is a dict or a pair of arrays ``(old, new)``. Uses a lookup table, so the cost
    is one pass over the image.
    """
    if isinstance(mapping, tuple):
        old, new = (np.asarray(a, dtype=np.int64) for a in mapping)
    else:
        old = np.fromiter(mapping.keys(), dtype=np.int64, count=len(mapping))
        new = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
    dtype = np.dtype(dtype or labels.dtype)
    keep = (old > 0) & (old <= (labels.max() if labels.size else 0))
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=dtype)
    lut[old[keep]] = new[keep]
    return lut[labels]
