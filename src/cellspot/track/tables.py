"""Object tables in, tracks tables out: checks, conversion, the empty table."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import TrackError
from ..table_specs import TRACKS
from .settings import POSITION, TRACK_COLUMNS

# --------------------------------------------------------------------------- tables


def standardise(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    sd = a.std(axis=0)
    return np.nan_to_num((a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0))


def check_objects(objects: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [c for c in ("t", "label", *POSITION) if c not in objects.columns]
    if missing:
        raise TrackError(f"{what} table lacks columns {missing} (has {list(objects.columns)})")
    if objects.duplicated(["t", "label"]).any():
        raise TrackError(f"{what} table has repeated (t, label) pairs")
    return objects.reset_index(drop=True)


def points_to_tracks(points: pd.DataFrame, objects: pd.DataFrame,
                      voxel_size: Sequence[float], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Tracks table (pixels) from linked points (micrometres) and the object table."""
    vs = np.asarray(voxel_size, dtype=np.float64)
    out = points[["track_id", "t", "parent", "root", "generation"]].copy()
    out[POSITION] = points[POSITION].to_numpy() / vs
    obj = points["obj"].to_numpy()
    real = obj >= 0
    out["label"] = 0
    out.loc[real, "label"] = objects["label"].to_numpy()[obj[real]]
    out["dummy"] = ~real
    take = np.where(real, obj, 0)
    for c in objects.columns:
        if c in ("t", "label", *POSITION) or c in TRACK_COLUMNS:
            continue
        vals = objects[c].to_numpy()
        if not len(out):
            out[c] = vals[:0]
        elif vals.dtype.kind in "iub":  # keep integer ids (cell_id...) integer: 0 on gaps
            out[c] = np.where(real, vals[take], np.zeros((), dtype=vals.dtype))
        else:
            out[c] = pd.Series(vals[take]).where(real).to_numpy()
    for c in extra:
        out[c] = points[c].to_numpy()
    out["label"] = out["label"].astype(np.int64)
    return out.reset_index(drop=True)


def empty_tracks(objects: pd.DataFrame | None = None) -> pd.DataFrame:
    """An empty tracks table with the standard columns (and the objects' extra columns)."""
    extra = {} if objects is None else {c: "float64" for c in objects.columns
                                        if c not in TRACKS.dtypes}
    return TRACKS.empty(extra)


def objects_from_labels(labels, voxel_size: Sequence[float] = (1.0, 1.0, 1.0)) -> pd.DataFrame:
    """Object table ``t, label, z, y, x, volume_vox, volume_um3`` of a ``(T, Z, Y, X)`` label
    movie (centroids in pixels); used for ground-truth detections and as a fallback."""
    from skimage.measure import regionprops_table

    frames = []
    for t in range(labels.shape[0]):
        frame = np.asarray(labels[t])
        p = regionprops_table(frame, properties=("label", "centroid", "area"))
        df = pd.DataFrame({"t": np.full(len(p["label"]), t, dtype=np.int64),
                           "label": p["label"].astype(np.int64),
                           "z": p["centroid-0"], "y": p["centroid-1"], "x": p["centroid-2"],
                           "volume_vox": p["area"].astype(np.int64)})
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["t", "label", "z", "y", "x", "volume_vox"])
    out["volume_um3"] = out["volume_vox"] * float(np.prod(voxel_size))
    return out


