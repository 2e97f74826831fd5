"""Per-object measurements of 3D labels (:func:`object_table`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ..table_specs import OBJECTS

# --------------------------------------------------------------------------- measurements


def empty_objects(channel_names) -> pd.DataFrame:
    """The object table with no rows: :data:`~cellspot.table_specs.OBJECTS` and the mean
    intensity of each channel."""
    return OBJECTS.empty({f"mean_{c}": "float64" for c in channel_names})


def object_table(labels: np.ndarray, intensity: np.ndarray | None = None,
                 voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                 channel_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Centroid, volume, bounding box and mean intensities of every object of a 3D label image.

    Parameters
    ----------
    labels : (Z, Y, X) int array
    intensity : (C, Z, Y, X) or (Z, Y, X) array, optional
    voxel_size : (z, y, x) µm
    channel_names : names of the C channels (``mean_<name>`` columns); default ``c0, c1, ...``

    Returns
    -------
    DataFrame with ``label, z, y, x`` (centroid, px), ``volume_vox, volume_um3``,
    ``bbox_z0, bbox_y0, bbox_x0, bbox_z1, bbox_y1, bbox_x1`` (half-open) and ``mean_<channel>``.
    """
    labels = np.asarray(labels)
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.ndim == 3:
            intensity = intensity[None]
        if intensity.shape[1:] != labels.shape:
            raise ValueError(f"intensity {intensity.shape} does not match labels {labels.shape}")
        names = list(channel_names) if channel_names is not None else [
            f"c{i}" for i in range(intensity.shape[0])]
    else:
        names = []
    rows = []
    voxel_um3 = float(np.prod(voxel_size))
    for i, slc in enumerate(ndi.find_objects(labels)):
        if slc is None:
            continue
        lab = i + 1
        mask = labels[slc] == lab
        idx = np.nonzero(mask)
        nvox = len(idx[0])
        row = {"label": lab}
        for a, ix, s in zip("zyx", idx, slc):
            row[a] = ix.mean() + s.start
        row["volume_vox"] = nvox
        row["volume_um3"] = nvox * voxel_um3
        for a, s in zip("zyx", slc):
            row[f"bbox_{a}0"] = s.start
        for a, s in zip("zyx", slc):
            row[f"bbox_{a}1"] = s.stop
        for c, name in enumerate(names):
            row[f"mean_{name}"] = float(intensity[c][slc][mask].mean())
        rows.append(row)
    if not rows:
        return empty_objects(names)
    return pd.DataFrame(rows)


def spot_object_columns(spots: pd.DataFrame, blobs: np.ndarray, intensity, voxel_size,
                         names) -> pd.DataFrame:
    """Volume, bbox and mean intensities of the spot blobs, joined onto the spot table."""
    idx = np.flatnonzero(blobs)
    lab = blobs.ravel()[idx]
    zz, yy, xx = np.unravel_index(idx, blobs.shape)
    d = pd.DataFrame({"label": lab, "z_": zz, "y_": yy, "x_": xx})
    for c, name in enumerate(names):
        d[f"mean_{name}"] = intensity[c].ravel()[idx]
    agg = {"volume_vox": ("z_", "size")}
    for a in "zyx":
        agg[f"bbox_{a}0"] = (f"{a}_", "min")
    for a in "zyx":
        agg[f"bbox_{a}1"] = (f"{a}_", "max")
    for name in names:
        agg[f"mean_{name}"] = (f"mean_{name}", "mean")
    stats = d.groupby("label").agg(**agg)
    for a in "zyx":
        stats[f"bbox_{a}1"] += 1
    stats["volume_um3"] = stats["volume_vox"] * float(np.prod(voxel_size))
    out = spots.join(stats, on="label")
    out["volume_vox"] = out["volume_vox"].fillna(0).astype(np.int64)
    for a in "zyx":
        for e in "01":
            out[f"bbox_{a}{e}"] = out[f"bbox_{a}{e}"].fillna(-1).astype(np.int64)
    return out


