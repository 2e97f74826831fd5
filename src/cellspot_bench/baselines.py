"""Baselines the benchmarks compare cellspot with: Cellpose's 3D stitching, laptrack linking."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cellspot.merge.label_ops import pair_overlaps, relabel_slices, sequential_labels
from cellspot.track.settings import POSITION
from cellspot.track.tables import check_objects, empty_tracks, points_to_tracks


def stitch_slices_cellpose(labels_2d: np.ndarray, stitch_threshold: float = 0.25) -> np.ndarray:
    """Cellpose's ``stitch3D``: the baseline of the benchmarks.

    Slice by slice from the top, each instance takes the label of the previous (already
    stitched) slice's instance it overlaps best, if that IoU is at least ``stitch_threshold``
    and it is also that instance's best match; otherwise it starts a new object. No gaps are
    bridged and splits or merges are not resolved. Re-implemented after
    ``cellpose.utils.stitch3D`` (Stringer et al. 2021, BSD-3-Clause) to avoid the dependency.
    """
    masks, _, offsets, _ = relabel_slices(np.asarray(labels_2d))
    masks = masks.astype(np.int64)
    # Cellpose numbers each slice 1..n; start from that.
    for z in range(masks.shape[0]):
        masks[z] = np.where(masks[z] > 0, masks[z] - offsets[z], 0)
    mmax = int(masks[0].max()) if masks.size else 0
    for i in range(masks.shape[0] - 1):
        n_new, n_old = int(masks[i + 1].max()), int(masks[i].max())
        if n_new == 0:
            continue
        if n_old == 0:
            masks[i + 1] = np.where(masks[i + 1] > 0, masks[i + 1] + mmax, 0)
            mmax += n_new
            continue
        ia, ib, cnt = pair_overlaps(masks[i + 1], masks[i])
        area_new = np.bincount(masks[i + 1].ravel(), minlength=n_new + 1)
        area_old = np.bincount(masks[i].ravel(), minlength=mmax + 1)
        iou = np.zeros((n_new + 1, mmax + 1))
        iou[ia, ib] = cnt / (area_new[ia] + area_old[ib] - cnt)
        iou = iou[1:, 1:]
        iou[iou < stitch_threshold] = 0.0
        iou[iou < iou.max(axis=0)] = 0.0
        istitch = iou.argmax(axis=1) + 1
        ino = np.flatnonzero(iou.max(axis=1) == 0.0)
        istitch[ino] = np.arange(mmax + 1, mmax + len(ino) + 1)
        mmax += len(ino)
        masks[i + 1] = np.append(0, istitch)[masks[i + 1]]
    return sequential_labels(masks)


def track_laptrack(objects: pd.DataFrame, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                   max_distance: float = 5.0, gap_frames: int = 2,
                   divisions: bool = True) -> pd.DataFrame:
    """Baseline: frame-to-frame linear-assignment linking (laptrack), same output as btrack.

    ``max_distance`` (micrometres) bounds links, gap closing and division links.
    """
    from laptrack import LapTrack

    objects = check_objects(objects, "object")
    if len(objects) == 0:
        return empty_tracks(objects)
    vs = np.asarray(voxel_size, dtype=np.float64)
    df = pd.DataFrame(objects[POSITION].to_numpy(np.float64) * vs, columns=POSITION)
    df["frame"] = objects["t"].to_numpy()
    lt = LapTrack(cutoff=max_distance ** 2, gap_closing_cutoff=max_distance ** 2,
                  gap_closing_max_frame_count=gap_frames,
                  splitting_cutoff=max_distance ** 2 if divisions else False)
    track_df, split_df, _ = lt.predict_dataframe(df, coordinate_cols=POSITION, frame_col="frame",
                                                 only_coordinate_cols=False)
    idx = track_df["index"].to_numpy() if "index" in track_df else track_df.index.to_numpy()
    tid = track_df["track_id"].to_numpy(np.int64) + 1
    parent = dict(zip(split_df.get("child_track_id", pd.Series(dtype=int)) + 1,
                      split_df.get("parent_track_id", pd.Series(dtype=int)) + 1))
    points = pd.DataFrame({"track_id": tid, "t": df["frame"].to_numpy()[idx], "obj": idx})
    points[POSITION] = df[POSITION].to_numpy()[idx]
    points["parent"] = [parent.get(int(k), 0) for k in tid]
    root, gen = {}, {}
    for k in np.unique(tid):
        r, g, seen = int(k), 0, set()
        while parent.get(r, 0) and r not in seen:
            seen.add(r)
            r, g = parent[r], g + 1
        root[int(k)], gen[int(k)] = r, g
    points["root"] = [root[int(k)] for k in tid]
    points["generation"] = [gen[int(k)] for k in tid]
    points = points.sort_values(["track_id", "t"]).reset_index(drop=True)
    return points_to_tracks(points, objects, vs)
