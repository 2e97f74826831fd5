"""Per-cell, per-track and per-batch tables, built from the merge and track stages' tables.

Inputs follow docs/architecture.md: positions in pixels ``(z, y, x)``; physical units come
from ``voxel_size`` (µm, z/y/x) and ``dt`` (s between frames). Every function takes and
returns pandas DataFrames and works on empty inputs (returning empty tables with the right
columns), so that an empty batch still gets a report.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cellspot.errors import ReportInputError
from cellspot.report import stats

AXES = ["z", "y", "x"]
UM = ["z_um", "y_um", "x_um"]

REQUIRED = {
    "cells": ["t", "label", "z", "y", "x", "volume_um3"],
    "nuclei": ["t", "label", "volume_um3", "cell_id"],
    "spots": ["t", "label", "z", "y", "x", "cell_id", "compartment"],
    "cell_tracks": ["track_id", "t", "z", "y", "x", "label", "parent"],
    "spot_tracks": ["track_id", "t", "z", "y", "x", "label"],
}

CELL_TIMEPOINT_COLUMNS = [
    "t", "time_s", "label", "track_id", "z", "y", "x", "z_um", "y_um", "x_um", "volume_um3",
    "speed_um_s", "nucleus_volume_um3", "n_nuclei", "n_spots", "rna_total", "rna_nuclear",
    "rna_cytoplasmic", "rna_mean_distance_to_nucleus_um", "at_border",
]
CELL_TRACK_COLUMNS = [
    "track_id", "root", "parent", "generation", "t_start", "t_end", "n_timepoints",
    "lifetime_s", "mean_speed_um_s", "path_length_um", "net_displacement_um", "persistence",
    "msd_lag1_um2", "msd_exponent", "motility_um2_s", "divides", "division_t",
    "cycle_time_s", "n_daughters", "daughters", "mean_rna_total",
]
RNA_TRACK_COLUMNS = [
    "track_id", "cell_id", "compartment", "t_start", "t_end", "n_timepoints", "msd_lag1_um2",
    "diffusion_um2_s", "msd_exponent", "diffusion_in_cell_um2_s", "mean_speed_um_s",
    "mean_distance_to_nucleus_um",
]



def check_columns(df: pd.DataFrame, kind: str, source: str = "") -> None:
    """Raise a :class:`ReportInputError` naming the table and its missing columns."""
    missing = [c for c in REQUIRED[kind] if c not in df.columns]
    if missing:
        where = f"{source}: " if source else ""
        raise ReportInputError(
            f"{where}{kind} table lacks column(s) {missing}; it has {list(df.columns)}")


def to_um(df: pd.DataFrame, voxel_size: Sequence[float]) -> np.ndarray:
    """``(n, 3)`` physical positions (µm) from the pixel columns ``z, y, x``."""
    if len(df) == 0:
        return np.zeros((0, 3))
    return df[AXES].to_numpy(float) * np.asarray(voxel_size, float)


def molecules(spots: pd.DataFrame) -> np.ndarray:
    """RNA molecules of each spot: ``n_rna`` (merge's count of unresolved neighbours and
    transcription sites), one each for a table without it."""
    if "n_rna" in spots:
        return spots["n_rna"].fillna(1).to_numpy(np.int64)
    return np.ones(len(spots), np.int64)


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})


def _has_parent(parent, track_id, known: set) -> bool:
    # btrack marks roots with parent == own id; other trackers use 0 or -1.
    return bool(pd.notna(parent) and parent != track_id and parent > 0 and parent in known)


def at_xy_border(cells: pd.DataFrame, image_shape: Sequence[int] | None) -> np.ndarray:
    """Whether each cell's bounding box (``bbox_*`` columns, half-open) touches the xy border
    of an image of ``image_shape`` (Z, Y, X): the cell is cut, so its volume, RNA count and
    centroid (hence speed) are partial. All False without a shape or bounding boxes."""
    cols = ["bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]
    if image_shape is None or not all(c in cells for c in cols):
        return np.zeros(len(cells), bool)
    _, ny, nx = (int(v) for v in image_shape[-3:])
    return ((cells["bbox_y0"] <= 0) | (cells["bbox_x0"] <= 0) | (cells["bbox_y1"] >= ny)
            | (cells["bbox_x1"] >= nx)).to_numpy(bool)


def cell_timepoint_table(cells: pd.DataFrame, nuclei: pd.DataFrame, spots: pd.DataFrame,
                         cell_tracks: pd.DataFrame, voxel_size: Sequence[float],
                         dt: float, image_shape: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per cell per timepoint: size, position, speed, nucleus and RNA counts.

    Speed is the displacement of the cell's centroid since its track's previous timepoint,
    in µm/s (NaN at a track's first point or for a cell without a track). RNA counts are
    spots with that ``cell_id`` at that ``t``, split by ``compartment``: ``n_spots`` counts
    spots, ``rna_*`` molecules (:func:`molecules`). The mean distance of its RNA to the
    nucleus uses the spots' ``distance_to_nucleus_um`` (negative inside).
    ``at_border`` flags a cell cut by the xy image border (:func:`at_xy_border`).
    """
    if len(cells) == 0:
        return _empty(CELL_TIMEPOINT_COLUMNS)
    out = cells[["t", "label", "z", "y", "x", "volume_um3"]].copy()
    out["at_border"] = at_xy_border(cells, image_shape)
    out["t"] = out["t"].astype(int)
    out["label"] = out["label"].astype(int)
    out["time_s"] = out["t"] * float(dt)
    out[UM] = to_um(out, voxel_size)

    tracks = cell_tracks[["t", "label", "track_id"]].astype(int).drop_duplicates(["t", "label"])
    out = out.merge(tracks, on=["t", "label"], how="left")
    out = out.sort_values(["track_id", "t"], kind="stable")
    tracked = out["track_id"].notna().to_numpy()
    out["speed_um_s"] = np.nan
    out.loc[tracked, "speed_um_s"] = track_step_speeds(out[tracked], voxel_size, dt)

    if len(nuclei):
        nuc = (nuclei[nuclei["cell_id"] > 0]
               .groupby(["t", "cell_id"])
               .agg(nucleus_volume_um3=("volume_um3", "sum"), n_nuclei=("label", "size"))
               .reset_index().rename(columns={"cell_id": "label"}))
        out = out.merge(nuc, on=["t", "label"], how="left")
    else:
        out["nucleus_volume_um3"] = np.nan
        out["n_nuclei"] = np.nan
    out["n_nuclei"] = out["n_nuclei"].fillna(0).astype(int)

    rna = spots[spots["cell_id"] > 0] if len(spots) else spots
    if len(rna):
        comp = rna["compartment"].astype(str)
        n = molecules(rna)
        agg = pd.DataFrame({
            "t": rna["t"].astype(int).to_numpy(), "label": rna["cell_id"].astype(int).to_numpy(),
            "n_spots": 1, "rna_total": n,
            "rna_nuclear": n * (comp == "nucleus").to_numpy(),
            "rna_cytoplasmic": n * (comp == "cytoplasm").to_numpy(),
            "rna_mean_distance_to_nucleus_um": (
                rna["distance_to_nucleus_um"].to_numpy(float)
                if "distance_to_nucleus_um" in rna else np.nan),
        }).groupby(["t", "label"]).agg(
            n_spots=("n_spots", "sum"),
            rna_total=("rna_total", "sum"), rna_nuclear=("rna_nuclear", "sum"),
            rna_cytoplasmic=("rna_cytoplasmic", "sum"),
            rna_mean_distance_to_nucleus_um=("rna_mean_distance_to_nucleus_um", "mean"),
        ).reset_index()
        out = out.merge(agg, on=["t", "label"], how="left")
    else:
        out["rna_mean_distance_to_nucleus_um"] = np.nan
    for c in ("n_spots", "rna_total", "rna_nuclear", "rna_cytoplasmic"):
        out[c] = out[c].fillna(0).astype(int) if c in out else 0
    return out[CELL_TIMEPOINT_COLUMNS].sort_values(["t", "label"]).reset_index(drop=True)


def cell_track_table(cell_tracks: pd.DataFrame, voxel_size: Sequence[float], dt: float,
                     cell_timepoints: pd.DataFrame | None = None,
                     msd_max_lag: int = 10) -> pd.DataFrame:
    """One row per cell track: motion, lifetime and division.

    ``persistence`` = net displacement / path length; ``msd_exponent`` is α of MSD ∝ τ^α;
    ``motility_um2_s`` is the random-motility coefficient from the MSD slope (as a diffusion
    coefficient in 3D). A track divides when other tracks name it as ``parent``; then
    ``division_t`` is its last frame and ``cycle_time_s`` the time from its birth (first
    frame of a track that has a parent) to the division, NaN when the birth was not seen.
    """
    if len(cell_tracks) == 0:
        return _empty(CELL_TRACK_COLUMNS)
    ct = cell_tracks.copy()
    ct["track_id"] = ct["track_id"].astype(int)
    known = set(ct["track_id"].unique())
    first = ct.sort_values("t").groupby("track_id").first()
    parents = {tid: (int(row["parent"]) if _has_parent(row["parent"], tid, known) else 0)
               for tid, row in first.iterrows()}
    daughters: dict[int, list[int]] = {}
    for tid, par in parents.items():
        if par:
            daughters.setdefault(par, []).append(int(tid))
    rna = {}
    if cell_timepoints is not None and len(cell_timepoints):
        rna = cell_timepoints.dropna(subset=["track_id"]).groupby("track_id")["rna_total"].mean()
    rows = []
    for tid, tr in ct.groupby("track_id"):
        tr = tr.sort_values("t")
        t = tr["t"].to_numpy(int)
        pos = to_um(tr, voxel_size)
        lags, msd_v, _ = stats.msd(t, pos, msd_max_lag)
        kids = sorted(daughters.get(tid, []))
        par = parents[tid]
        divides = len(kids) > 0
        rows.append({
            "track_id": int(tid),
            "root": int(first.loc[tid, "root"]) if "root" in first else int(tid),
            "parent": par,
            "generation": int(first.loc[tid, "generation"]) if "generation" in first else 0,
            "t_start": int(t[0]), "t_end": int(t[-1]), "n_timepoints": len(t),
            "lifetime_s": float((t[-1] - t[0] + 1) * dt),
            "mean_speed_um_s": float(np.nanmean(stats.step_speeds(t, pos, dt)))
            if len(t) > 1 else np.nan,
            "path_length_um": stats.path_length(pos),
            "net_displacement_um": stats.net_displacement(pos),
            "persistence": stats.persistence(pos),
            "msd_lag1_um2": float(msd_v[0]) if len(lags) and lags[0] == 1 else np.nan,
            "msd_exponent": stats.msd_exponent(lags, msd_v),
            "motility_um2_s": stats.diffusion_coefficient(lags, msd_v, dt),
            "divides": divides,
            "division_t": int(t[-1]) if divides else -1,
            "cycle_time_s": float((t[-1] - t[0] + 1) * dt) if divides and par else np.nan,
            "n_daughters": len(kids),
            "daughters": ",".join(str(k) for k in kids),
            "mean_rna_total": float(rna.get(tid, np.nan)) if len(rna) else np.nan,
        })
    return pd.DataFrame(rows, columns=CELL_TRACK_COLUMNS)


def _mode_per_track(track_ids: np.ndarray, values: pd.Series) -> pd.Series:
    """Most frequent value of ``values`` per track (ties: the first in sort order)."""
    counts = (pd.DataFrame({"track_id": track_ids, "v": values.to_numpy()})
              .dropna().groupby(["track_id", "v"]).size().rename("n").reset_index()
              .sort_values(["track_id", "n"], ascending=[True, False], kind="stable"))
    return counts.drop_duplicates("track_id").set_index("track_id")["v"]


def track_step_speeds(df: pd.DataFrame, voxel_size: Sequence[float], dt: float) -> np.ndarray:
    """Speed (µm/s) of each row since the previous point of its track (NaN at a track start).

    ``df`` must be sorted by ``track_id, t``; the vectorised form of :func:`stats.step_speeds`.
    """
    if len(df) == 0:
        return np.zeros(0)
    pos = to_um(df, voxel_size)
    tid, t = df["track_id"].to_numpy(), df["t"].to_numpy(float)
    out = np.full(len(df), np.nan)
    same = tid[1:] == tid[:-1]
    # only steps within a track: across two tracks the times may be equal
    step = np.linalg.norm(np.diff(pos, axis=0)[same], axis=1) / (np.diff(t)[same] * float(dt))
    out[1:][same] = step
    return out


def common_motion(cell_tracks: pd.DataFrame, voxel_size: Sequence[float]) -> pd.DataFrame:
    """The cells' common motion left after drift correction: per timepoint, the cumulative
    mean displacement (µm, z/y/x) of the cells tracked from one timepoint to the next, and its
    standard error.

    Cells that move on their own average out, so the curve stays near 0 (within its error)
    when the drift correction followed the sample; a steady trend means the correction
    followed the cells, or the cells migrate together.
    """
    cols = ["t", "n_cells", "dz_um", "dy_um", "dx_um", "se_z_um", "se_y_um", "se_x_um"]
    if len(cell_tracks) == 0:
        return _empty(cols)
    ct = cell_tracks.sort_values(["track_id", "t"], kind="stable")
    pos = to_um(ct, voxel_size)
    same = (ct["track_id"].to_numpy()[1:] == ct["track_id"].to_numpy()[:-1]) & (
        np.diff(ct["t"].to_numpy()) == 1)
    steps = pd.DataFrame(np.diff(pos, axis=0)[same], columns=["z", "y", "x"])
    steps["t"] = ct["t"].to_numpy()[1:][same]
    g = steps.groupby("t")
    n = g.size()
    mean = g[["z", "y", "x"]].mean()
    se = (g[["z", "y", "x"]].std(ddof=1).fillna(0).div(np.sqrt(n), axis=0))
    t0 = int(ct["t"].min())
    ts = range(t0, int(ct["t"].max()) + 1)
    mean = mean.reindex(ts, fill_value=0.0)   # t0 has no step: 0
    var = (se ** 2).reindex(ts, fill_value=0.0)
    out = pd.DataFrame({"t": list(ts), "n_cells": n.reindex(ts, fill_value=0).to_numpy()})
    for a in "zyx":
        out[f"d{a}_um"] = mean[a].cumsum().to_numpy()
        out[f"se_{a}_um"] = np.sqrt(var[a].cumsum().to_numpy())
    return out[cols]


def rna_track_table(spot_tracks: pd.DataFrame, spots: pd.DataFrame,
                    voxel_size: Sequence[float], dt: float, msd_max_lag: int = 10,
                    fit_lags: int = 4, min_length: int = 3,
                    cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per RNA track of at least ``min_length`` points: MSD, D and nucleus distance.

    The diffusion coefficient comes from the slope of the MSD over the first ``fit_lags``
    lags with a free intercept (localisation error). RNA is carried along by its moving cell,
    which dominates the MSD in the lab frame; given the ``cells`` table (``t, label, z, y, x``),
    ``diffusion_in_cell_um2_s`` is the same fit on positions relative to the centroid of the
    RNA's cell, i.e. the RNA's own motion. The distance to the nucleus is looked up in the
    spots table by ``(t, label)``. Vectorised over tracks (no per-track Python loop), since a
    batch can hold 10^5 RNA tracks.
    """
    if len(spot_tracks) == 0:
        return _empty(RNA_TRACK_COLUMNS)
    st = spot_tracks.copy()
    st["track_id"] = st["track_id"].astype(int)
    extra = [c for c in ("cell_id", "compartment", "distance_to_nucleus_um")
             if c not in st and len(spots) and c in spots]
    if extra:
        st = st.merge(spots[["t", "label", *extra]].drop_duplicates(["t", "label"]),
                      on=["t", "label"], how="left")
    for c, fill in (("cell_id", 0), ("compartment", ""), ("distance_to_nucleus_um", np.nan)):
        if c not in st:
            st[c] = fill
    length = st.groupby("track_id")["t"].transform("size")
    st = st[length >= min_length].sort_values(["track_id", "t"], kind="stable")
    if len(st) == 0:
        return _empty(RNA_TRACK_COLUMNS)
    if cells is not None and len(cells):
        centroids = cells[["t", "label", "z", "y", "x"]].rename(
            columns={"label": "cell_id", "z": "cz", "y": "cy", "x": "cx"})
        st = st.merge(centroids.drop_duplicates(["t", "cell_id"]), on=["t", "cell_id"],
                      how="left").sort_values(["track_id", "t"], kind="stable")
    else:
        st = st.assign(cz=np.nan, cy=np.nan, cx=np.nan)
    tid, t = st["track_id"].to_numpy(), st["t"].to_numpy()
    pos = to_um(st, voxel_size)
    tracks, lags, msd_v, _ = stats.msd_many(tid, t, pos, msd_max_lag)
    rel = pos - st[["cz", "cy", "cx"]].to_numpy(float) * np.asarray(voxel_size, float)
    ok = np.isfinite(rel).all(axis=1)
    tr_c, lags_c, msd_c, _ = stats.msd_many(tid[ok], t[ok], rel[ok], msd_max_lag)
    d_cell = pd.Series(stats.diffusion_many(lags_c, msd_c, dt, fit_lags=fit_lags), index=tr_c)

    g = st.assign(speed=track_step_speeds(st, voxel_size, dt)).groupby("track_id")
    out = pd.DataFrame({
        "track_id": tracks.astype(int),
        "cell_id": _mode_per_track(tid, st["cell_id"]).reindex(tracks).fillna(0).astype(int)
        .to_numpy(),
        "compartment": _mode_per_track(tid, st["compartment"].astype(str)).reindex(tracks)
        .fillna("").to_numpy(),
        "t_start": g["t"].min().reindex(tracks).to_numpy(int),
        "t_end": g["t"].max().reindex(tracks).to_numpy(int),
        "n_timepoints": g.size().reindex(tracks).to_numpy(int),
        "msd_lag1_um2": msd_v[:, 0],
        "diffusion_um2_s": stats.diffusion_many(lags, msd_v, dt, fit_lags=fit_lags),
        "msd_exponent": stats.exponent_many(lags, msd_v),
        "diffusion_in_cell_um2_s": d_cell.reindex(tracks).to_numpy(float),
        "mean_speed_um_s": g["speed"].mean().reindex(tracks).to_numpy(float),
        "mean_distance_to_nucleus_um": g["distance_to_nucleus_um"].mean().reindex(tracks)
        .to_numpy(float),
    })
    return out[RNA_TRACK_COLUMNS]


def batch_summary(batch: str, cell_timepoints: pd.DataFrame, cell_tracks: pd.DataFrame,
                  rna_tracks: pd.DataFrame, spots: pd.DataFrame, n_timepoints: int,
                  colocalisation: dict | None = None, drift: pd.DataFrame | None = None,
                  notes: Sequence[str] = (), border_cells: str = "exclude") -> pd.DataFrame:
    """A one-row table of the batch's headline numbers (the row of the all-batches table).

    With ``border_cells="exclude"`` the per-cell means and medians (volume, speed, RNA per
    cell) leave out cells cut by the image border (``at_border``); cell counts keep them.
    """
    spots_in = spots[spots["cell_id"] > 0] if len(spots) else spots
    n_in = molecules(spots_in)
    ctp = cell_timepoints
    at_border = (ctp["at_border"].astype(bool) if "at_border" in ctp
                 else pd.Series(False, index=ctp.index))
    whole = ctp[~at_border] if border_cells == "exclude" else ctp
    comp = spots_in["compartment"].astype(str) if len(spots_in) else pd.Series(dtype=str)

    def mean(s):
        s = pd.to_numeric(s, errors="coerce").dropna()
        return float(s.mean()) if len(s) else np.nan

    def share_of(selected: pd.Series) -> float:
        """Share of the RNA molecules in cells that ``selected`` picks out."""
        return float((n_in * selected.to_numpy()).sum() / n_in.sum()) if len(n_in) else np.nan

    def median(s):
        s = pd.to_numeric(s, errors="coerce").dropna()
        return float(s.median()) if len(s) else np.nan

    row = {
        "batch": batch,
        "n_timepoints": int(n_timepoints),
        "mean_cells_per_timepoint": (float(ctp.groupby("t").size().reindex(
            range(n_timepoints), fill_value=0).mean()) if n_timepoints else np.nan),
        "n_cell_tracks": int(len(cell_tracks)),
        "n_divisions": int(cell_tracks["divides"].sum()) if len(cell_tracks) else 0,
        "median_cycle_time_s": median(cell_tracks.get("cycle_time_s", pd.Series(dtype=float))),
        "n_cell_timepoints_at_border": int(at_border.sum()),
        "mean_cell_volume_um3": mean(whole.get("volume_um3", pd.Series(dtype=float))),
        "mean_cell_speed_um_s": mean(whole.get("speed_um_s", pd.Series(dtype=float))),
        "mean_persistence": mean(cell_tracks.get("persistence", pd.Series(dtype=float))),
        "n_rna_spots": int(len(spots)),
        "n_rna_in_cells": int(len(spots_in)),
        "mean_rna_per_cell": mean(whole.get("rna_total", pd.Series(dtype=float))),
        "median_rna_per_cell": median(whole.get("rna_total", pd.Series(dtype=float))),
        "n_rna_molecules": int(molecules(spots).sum()),
        "fraction_rna_nuclear": share_of(comp == "nucleus"),
        "fraction_rna_cytoplasmic": share_of(comp == "cytoplasm"),
        "n_rna_tracks": int(len(rna_tracks)),
        "median_rna_diffusion_um2_s": median(rna_tracks.get("diffusion_um2_s",
                                                            pd.Series(dtype=float))),
        "median_rna_diffusion_in_cell_um2_s": median(rna_tracks.get(
            "diffusion_in_cell_um2_s", pd.Series(dtype=float))),
        "max_drift_px": (float(np.sqrt((drift[["dz", "dy", "dx"]] ** 2).sum(axis=1)).max())
                         if drift is not None and len(drift) else np.nan),
        "n_drift_flagged": (int(drift["flagged"].astype(bool).sum())
                            if drift is not None and "flagged" in drift else 0),
    }
    for k, v in (colocalisation or {}).items():
        row[f"coloc_{k}"] = v
    row["notes"] = "; ".join(notes)
    return pd.DataFrame([row])
