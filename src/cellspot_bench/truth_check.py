"""A workflow run compared with the truth of a simulated movie (``cellspot simulate``'s ``truth/``).

For a batch whose samples-sheet row names its ``truth`` folder (the demo's does), rule
``truth_check`` measures what the run got right, in the frame of the first timepoint (the truth's
sample frame, which a perfect drift correction recovers):

- drift residual per axis (px): estimated minus simulated drift, largest and mean over frames;
- cells and nuclei: AP@0.5 (TP / (TP + FP + FN), one-to-one on IoU) per frame, in 3D;
- RNA spots: F1 in 3D, one-to-one within ``3`` xy pixels (distances in µm), all frames; of the
  matched spots, the share given the right cell and the right compartment, and the error of
  their distance to the nucleus (µm);
- divisions found / missed / false, and CTC TRA/DET/LNK of the tracking result (py-ctcmetrics);
- RNA per cell: for every truth cell matched at IoU >= 0.5, the counted minus the true number;
  the headline figures are over complete cells (not cut by the xy image border). The same
  count with the truth in place of one stage attributes the error: truth spots in the found
  cells (segmentation alone), found spots in the truth cells (spot detection alone);
- cell speed: per truth cell followed by one track, the track's mean speed against the true
  one (from the simulated centres);
- RNA motion: the median diffusion coefficient relative to the cell (the report's MSD fit)
  of the found RNA tracks against the same fit on the simulated RNA tracks.

The report shows these as a section, so that a user sees what accuracy looks like.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cellspot.distance import signed_distance
from cellspot.errors import InputError
from cellspot.omezarr import atomic_output, open_array, read_meta, write_text_atomic
from cellspot.register import read_drift_csv
from cellspot.report.build import TRUTH_HEADLINE, ReportConfig
from cellspot.report.tables import molecules, rna_track_table, track_step_speeds
from cellspot.simulate import read_truth_folder, value_at
from cellspot_bench.metrics import average_precision, match_points, matched_pairs

SPOT_MATCH_PX = 3.0  # xy pixels; spots further apart than this are not a match
RNA_COLUMNS = ["t", "true_cell", "label", "iou", "complete", "rna_true", "rna_found", "error",
               "error_cells_only", "error_spots_only"]


def read_truth(truth_dir: str | os.PathLike) -> dict:
    """A ``truth/`` folder (:func:`cellspot.simulate.read_truth_folder`), checked first."""
    d = Path(truth_dir)
    need = ["cells.tif", "nuclei.tif", "spots.csv", "lineage.csv", "drift.csv", "cells.csv",
            "cell_centres.csv", "simulation.json"]
    missing = [n for n in need if not (d / n).is_file()]
    if missing:
        raise InputError(f"{d}: not a cellspot simulation truth folder ({missing[0]} missing)")
    return read_truth_folder(d)


def ap_per_frame(truth: np.ndarray, pred: np.ndarray) -> list[float]:
    """AP@0.5 of every frame of ``(T, Z, Y, X)`` label movies."""
    return [average_precision(truth[t], np.asarray(pred[t])) for t in range(truth.shape[0])]


def cell_pairs(truth_cells: np.ndarray, found: np.ndarray) -> list[dict[int, tuple[int, float]]]:
    """Per frame, truth cell -> (found label, IoU), matched one-to-one at IoU >= 0.5."""
    out = []
    for t in range(truth_cells.shape[0]):
        a, b, iou, _, _ = matched_pairs(truth_cells[t], np.asarray(found[t]))
        out.append({int(i): (int(j), float(v)) for i, j, v in zip(a, b, iou)})
    return out


def spot_match(truth: pd.DataFrame, pred: pd.DataFrame, voxel_size,
               truth_nuclei: np.ndarray | None = None,
               pairs: list[dict[int, tuple[int, float]]] | None = None) -> dict:
    """3D spot detection counts over all frames, one-to-one within ``SPOT_MATCH_PX`` xy px.

    With ``pairs`` (:func:`cell_pairs`) and ``truth_nuclei``, also how the matched spots were
    localised: the share in the right cell (the found cell matched to the spot's truth cell,
    or no cell for both) and in the right compartment, and the absolute error of the signed
    distance to the nucleus surface (µm) against the same distance on the truth nuclei.
    """
    from scipy import ndimage as ndi

    scale = np.asarray(voxel_size, float)
    tp = fp = fn = 0
    right_cell, right_comp, dist_err = [], [], []
    for t in sorted(set(truth["t"]) | set(pred["t"])):
        ta, pb = truth[truth["t"] == t], pred[pred["t"] == t]
        a, b = ta[["z", "y", "x"]].to_numpy(float), pb[["z", "y", "x"]].to_numpy(float)
        ia, ib = match_points(a, b, SPOT_MATCH_PX * scale[2], scale=tuple(scale))
        tp, fp, fn = tp + len(ia), fp + len(b) - len(ib), fn + len(a) - len(ia)
        if pairs is None or not len(ia):
            continue
        want = np.array([pairs[t].get(int(c), (-1, 0.0))[0] if c > 0 else 0
                         for c in ta["cell_id"].to_numpy()[ia]])
        right_cell += list(want == pb["cell_id"].to_numpy()[ib])
        right_comp += list(ta["compartment"].to_numpy()[ia] == pb["compartment"].to_numpy()[ib])
        if truth_nuclei is not None and "distance_to_nucleus_um" in pb:
            field = signed_distance(truth_nuclei[t], scale)
            true_d = ndi.map_coordinates(field, a[ia].T, order=1, mode="nearest")
            dist_err += list(np.abs(pb["distance_to_nucleus_um"].to_numpy(float)[ib] - true_d))
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    out = {"tp": tp, "fp": fp, "fn": fn, "f1": f1,
           "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1)}
    if pairs is not None:
        d = np.asarray(dist_err)
        d = d[np.isfinite(d)]
        out |= {"right_cell": float(np.mean(right_cell)) if right_cell else None,
                "right_compartment": float(np.mean(right_comp)) if right_comp else None,
                "nucleus_distance_error_um": {
                    "median": float(np.median(d)) if len(d) else None,
                    "p90": float(np.percentile(d, 90)) if len(d) else None}}
    return out


def _counts_in(labels: np.ndarray, spots: pd.DataFrame, t: int) -> pd.Series:
    """RNA of the ``spots`` of frame ``t`` per label of ``labels[t]`` (looked up at their
    position; each spot counts its molecules, :func:`cellspot.report.tables.molecules`)."""
    sel = spots[spots["t"] == t]
    pos = sel[["z", "y", "x"]].to_numpy(float)
    ids = value_at(np.asarray(labels[t]), pos) if len(pos) else np.zeros(0, int)
    return pd.Series(molecules(sel)[ids > 0]).groupby(ids[ids > 0]).sum()


def _touches_xy_border(labels: np.ndarray) -> set[int]:
    edge = np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(),
                           labels[:, :, 0].ravel(), labels[:, :, -1].ravel()])
    return set(np.unique(edge[edge > 0]).astype(int).tolist())


def rna_per_cell(truth: dict, cells: np.ndarray, spots: pd.DataFrame,
                 pairs: list[dict[int, tuple[int, float]]] | None = None) -> pd.DataFrame:
    """Counted vs true RNA of every truth cell matched to a found cell (IoU >= 0.5).

    The count is the merge stage's: the molecules (``n_rna``) of the spots of
    ``spots.parquet`` whose ``cell_id`` is the cell.
    ``complete`` is False for a truth cell cut by the xy image border. ``error_cells_only``
    counts the truth spots in the found cell (the segmentation's share of the error),
    ``error_spots_only`` the found spots in the truth cell (the spot detection's share).
    """
    pairs = pairs if pairs is not None else cell_pairs(truth["cells"], cells)
    rows = []
    ref = truth["cells_table"].set_index(["t", "cell_id"])["n_spots"]
    inside = spots[spots["cell_id"] > 0]
    found = pd.Series(molecules(inside), index=pd.MultiIndex.from_frame(
        inside[["t", "cell_id"]])).groupby(level=[0, 1]).sum()

    def rel(n, true_n):
        return (n - true_n) / true_n if true_n else np.nan

    for t in range(truth["cells"].shape[0]):
        cut = _touches_xy_border(truth["cells"][t])
        truth_in_found = _counts_in(cells, truth["spots"], t)
        found_in_truth = _counts_in(truth["cells"], spots, t)
        for a, (b, iou) in pairs[t].items():
            true_n = int(ref.get((t, a), 0))
            got = int(found.get((t, b), 0))
            rows.append((t, a, b, iou, a not in cut, true_n, got, rel(got, true_n),
                         rel(int(truth_in_found.get(b, 0)), true_n),
                         rel(int(found_in_truth.get(a, 0)), true_n)))
    return pd.DataFrame(rows, columns=RNA_COLUMNS)


def error_summary(err: pd.Series) -> dict:
    """Mean, median and worst absolute relative error and the shares within 5 % and 10 %."""
    e = err.abs().dropna()
    if not len(e):
        return dict.fromkeys(("mean_abs_error", "median_abs_error", "worst_abs_error",
                              "within_5pct", "within_10pct"))
    return {"mean_abs_error": float(e.mean()), "median_abs_error": float(e.median()),
            "worst_abs_error": float(e.max()), "within_5pct": float((e <= 0.05).mean()),
            "within_10pct": float((e <= 0.10).mean())}


def speed_errors(truth: dict, tracked: np.ndarray, cell_tracks: pd.DataFrame, voxel_size,
                 dt: float) -> pd.DataFrame:
    """Per truth cell followed by one track: the track's and the true mean speed (µm/s).

    A step from ``t - 1`` to ``t`` counts when the same track is matched (IoU >= 0.5) to the
    truth cell at both timepoints and the cell is complete (not cut by the xy border, whose
    clipping moves a centroid) at both; speeds are the report's (:func:`track_step_speeds`),
    the true ones from the simulated cell centres.
    """
    centres = truth["centres"].rename(columns={"cell_id": "track_id"}).sort_values(
        ["track_id", "t"], kind="stable")
    true_v = pd.Series(track_step_speeds(centres, voxel_size, dt),
                       index=pd.MultiIndex.from_frame(centres[["t", "track_id"]]))
    ct = cell_tracks.sort_values(["track_id", "t"], kind="stable")
    found_v = pd.Series(track_step_speeds(ct, voxel_size, dt),
                        index=pd.MultiIndex.from_frame(ct[["t", "track_id"]]))
    pairs = cell_pairs(truth["cells"], tracked)
    cut = [_touches_xy_border(frame) for frame in truth["cells"]]
    steps = []
    for t in range(1, len(pairs)):
        for cell, (trk, _) in pairs[t].items():
            if (pairs[t - 1].get(cell, (None,))[0] == trk and (t, trk) in found_v.index
                    and cell not in cut[t] | cut[t - 1]):
                steps.append((cell, float(true_v.get((t, cell), np.nan)),
                              float(found_v[(t, trk)])))
    df = pd.DataFrame(steps, columns=["true_cell", "true_speed", "found_speed"]).dropna()
    per = df.groupby("true_cell")[["true_speed", "found_speed"]].mean()
    per["error"] = per["found_speed"] / per["true_speed"] - 1
    return per.reset_index()


def rna_diffusion(truth: dict, spot_tracks: pd.DataFrame, spots: pd.DataFrame,
                  cell_tracks: pd.DataFrame, voxel_size, dt: float) -> dict:
    """Median RNA diffusion coefficient relative to the cell (µm²/s): found vs simulated tracks.

    Both with the report's defaults (:class:`cellspot.report.build.ReportConfig`) and its
    MSD fit (:func:`cellspot.report.tables.rna_track_table`); the simulated tracks are the
    truth RNA identities relative to the true cell centres.
    """
    cfg = ReportConfig()
    kw = dict(voxel_size=voxel_size, dt=dt, msd_max_lag=cfg.msd_max_lag,
              fit_lags=cfg.diffusion_fit_lags, min_length=cfg.min_rna_track_length)
    ts = truth["spots"].assign(track_id=truth["spots"]["spot_id"], label=truth["spots"]["spot_id"])
    true_tr = rna_track_table(ts, ts, cells=truth["centres"].rename(columns={"cell_id": "label"}),
                              **kw)
    found_tr = rna_track_table(spot_tracks, spots, cells=cell_tracks, **kw)

    def med(df):
        v = df["diffusion_in_cell_um2_s"].dropna() if len(df) else pd.Series(dtype=float)
        return float(v.median()) if len(v) else None

    d_true, d_found = med(true_tr), med(found_tr)
    return {"true_um2_s": d_true, "found_um2_s": d_found,
            "tracks": {"true": int(len(true_tr)), "found": int(len(found_tr))},
            "error": (d_found / d_true - 1) if d_true and d_found is not None else None}


def divisions(truth_lineage: pd.DataFrame, tracked: np.ndarray, truth_cells: np.ndarray,
              cell_tracks: pd.DataFrame) -> dict:
    """Divisions found (the right parent, within one frame), missed and false.

    A found division is a track that is the ``parent`` of others, at its last frame; a found
    track stands for the truth cell it overlaps most over its lifetime.
    """
    overlap: dict[int, dict[int, int]] = {}
    for t in range(truth_cells.shape[0]):
        a, b = truth_cells[t].ravel(), np.asarray(tracked[t]).ravel()
        sel = (a > 0) & (b > 0)
        if not sel.any():
            continue
        pairs, counts = np.unique(np.stack([b[sel], a[sel]]), axis=1, return_counts=True)
        for (trk, cell), n in zip(pairs.T, counts):
            overlap.setdefault(int(trk), {}).setdefault(int(cell), 0)
            overlap[int(trk)][int(cell)] += int(n)
    best = {k: max(v, key=v.get) for k, v in overlap.items()}
    lin = truth_lineage
    true_div = {int(p): int(lin.loc[lin["cell_id"] == p, "t_end"].iloc[0])
                for p in lin.loc[lin["parent_id"] > 0, "parent_id"].unique()}
    last_t = cell_tracks.groupby("track_id")["t"].max()
    parents = sorted({int(p) for p in cell_tracks["parent"] if p > 0 and p in last_t.index})
    hit, false = set(), 0
    for trk in parents:
        cell = best.get(trk)
        if cell in true_div and cell not in hit and abs(last_t[trk] - true_div[cell]) <= 1:
            hit.add(cell)
        else:
            false += 1
    return {"true": len(true_div), "found": len(hit), "missed": len(true_div) - len(hit),
            "false": false}


def tracking_scores(truth: dict, ctc_dir: str | os.PathLike) -> dict:
    """CTC TRA and DET of the run's tracking result against the truth lineage."""
    from cellspot_bench.ctc_eval import evaluate_ctc, write_ctc_ground_truth

    with tempfile.TemporaryDirectory() as tmp:
        gt = write_ctc_ground_truth(Path(tmp) / "gt", truth["cells"], truth["lineage"])
        res = evaluate_ctc(ctc_dir, gt, metrics=("DET", "TRA", "LNK"))
    return {m: res.get(m) for m in ("TRA", "DET", "LNK")}


def check_run(truth_dir: str | os.PathLike, *, cells: str, nuclei: str, cells_tracked: str,
              spots: str, cell_tracks: str, spot_tracks: str, drift: str, image: str,
              ctc_dir: str) -> tuple[dict, pd.DataFrame]:
    """All figures of a run's outputs (the paths of the merge, track and preprocess outputs)
    against the truth; returns (summary, RNA table)."""
    truth = read_truth(truth_dir)
    found = open_array(cells)
    if found.shape != truth["cells"].shape:
        raise InputError(f"{cells}: shape {found.shape}, the truth {truth['cells'].shape}: not "
                         f"the simulated movie of {truth_dir}")
    found = np.asarray(found[...])
    nuc = np.asarray(open_array(nuclei)[...])
    tracked = np.asarray(open_array(cells_tracked)[...])
    meta = read_meta(image)
    vs, dt = meta.voxel_size, meta.time_interval
    est = read_drift_csv(drift, ("t", "dz", "dy", "dx")).set_index("t")[["dz", "dy", "dx"]]
    resid = (est - truth["drift"].set_index("t")[["dz", "dy", "dx"]]).abs()
    spot_table = pd.read_parquet(spots)
    tracks = pd.read_parquet(cell_tracks)
    pairs = cell_pairs(truth["cells"], found)
    rna = rna_per_cell(truth, found, spot_table, pairs)
    complete = rna[rna["complete"].astype(bool)]  # (an empty object mask would select columns)
    cell_ap, nuc_ap = ap_per_frame(truth["cells"], found), ap_per_frame(truth["nuclei"], nuc)
    speed = speed_errors(truth, tracked, tracks, vs, dt)
    speed_err = speed["error"].abs()

    def n_objects(movie):
        return float(np.mean([len(np.unique(f)) - 1 for f in movie]))

    summary = {
        "drift_residual_px": {ax: float(resid[f"d{ax}"].max()) for ax in "zyx"},
        "drift_residual_mean_px": {ax: float(resid[f"d{ax}"].mean()) for ax in "zyx"},
        "cell_ap50": float(np.mean(cell_ap)), "cell_ap50_per_frame": cell_ap,
        "nucleus_ap50": float(np.mean(nuc_ap)),
        "cells_per_frame": {"true": n_objects(truth["cells"]), "found": n_objects(found)},
        "spots": spot_match(truth["spots"], spot_table, vs, truth["nuclei"], pairs),
        "spot_match_um": SPOT_MATCH_PX * float(vs[2]),
        "divisions": divisions(truth["lineage"], tracked, truth["cells"], tracks),
        "tracking": tracking_scores(truth, ctc_dir),
        "rna_per_cell": {
            "matched_cell_timepoints": int(len(rna)),
            "complete_cell_timepoints": int(len(complete)),
            **error_summary(complete["error"]),
            "total_error": (float(complete["rna_found"].sum() / complete["rna_true"].sum() - 1)
                            if complete["rna_true"].sum() else None),
            "all_cells": error_summary(rna["error"]),
            "cells_only": error_summary(complete["error_cells_only"]),
            "spots_only": error_summary(complete["error_spots_only"])},
        "cell_speed": {"tracks": int(len(speed)),
                       "median_abs_error": float(speed_err.median()) if len(speed) else None,
                       "worst_abs_error": float(speed_err.max()) if len(speed) else None},
        "rna_diffusion_in_cell": rna_diffusion(truth, pd.read_parquet(spot_tracks), spot_table,
                                               tracks, vs, dt),
    }
    return summary, rna


def headline(summary: dict) -> dict:
    """The headline figures of a check, labelled for people.

    Written into the check's JSON under ``TRUTH_HEADLINE``; the report's accuracy section and
    ``cellspot demo`` show them as they are.
    """
    sp, rna, div, trk = (summary["spots"], summary["rna_per_cell"], summary["divisions"],
                         summary["tracking"])

    def pct(v):
        return None if v is None else f"{100 * v:.1f} %"

    d = summary["drift_residual_px"]
    return {
        f"RNA spots: F1 (3D, one-to-one within {summary['spot_match_um']:.2f} µm)":
            f"{sp['f1']:.3f} (precision {sp['precision']:.3f}, recall {sp['recall']:.3f}; "
            f"{sp['tp']} found, {sp['fp']} false, {sp['fn']} missed)",
        "cells: AP@0.5 in 3D (mean over frames)": f"{summary['cell_ap50']:.3f}",
        "nuclei: AP@0.5 in 3D (mean over frames)": f"{summary['nucleus_ap50']:.3f}",
        "cells per frame: found / true": f"{summary['cells_per_frame']['found']:.1f} / "
                                         f"{summary['cells_per_frame']['true']:.1f}",
        "divisions: found / true (false)": f"{div['found']} / {div['true']} ({div['false']})",
        "tracking: CTC TRA / DET / LNK": (f"{trk['TRA']:.3f} / {trk['DET']:.3f} / "
                                          f"{trk['LNK']:.3f}"
                                    if trk.get("TRA") is not None else "not available"),
        "RNA per complete cell: mean / median / worst error": " / ".join(
            str(pct(rna[k])) for k in ("mean_abs_error", "median_abs_error", "worst_abs_error")),
        "RNA per complete cell: cell-timepoints within 5 % / 10 %": (
            f"{pct(rna['within_5pct'])} / {pct(rna['within_10pct'])} of "
            f"{rna['complete_cell_timepoints']}"),
        "RNA per cell, mean error with truth spots / with truth cells": (
            f"{pct(rna['cells_only']['mean_abs_error'])} / "
            f"{pct(rna['spots_only']['mean_abs_error'])}"),
        "RNA in matched complete cells: total error": pct(rna["total_error"]),
        "RNA spots in the right cell / compartment": (
            f"{pct(sp.get('right_cell'))} / {pct(sp.get('right_compartment'))}"),
        "RNA distance to the nucleus: median error": _um(
            sp.get("nucleus_distance_error_um", {}).get("median")),
        "cell speed: median / worst error per track": (
            f"{pct(summary['cell_speed']['median_abs_error'])} / "
            f"{pct(summary['cell_speed']['worst_abs_error'])}"),
        "RNA diffusion in the cell: found / true (µm²/s)": (
            f"{_g(summary['rna_diffusion_in_cell']['found_um2_s'])} / "
            f"{_g(summary['rna_diffusion_in_cell']['true_um2_s'])}"),
        "drift residual, largest (z, y, x px)": ", ".join(f"{d[a]:.2f}" for a in "zyx"),
    }


def _um(v):
    return None if v is None else f"{v:.2f} µm"


def _g(v):
    return "none" if v is None else f"{v:.3g}"


def plot_rna(rna: pd.DataFrame, path: str | os.PathLike) -> None:
    """Counted vs true RNA per matched cell and timepoint (the identity line is a right answer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    hi = max([1, *rna["rna_true"], *rna["rna_found"]]) * 1.05
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="right answer")
    ax.fill_between([0, hi], [0, 0.9 * hi], [0, 1.1 * hi], color="0.85", label="within 10 %")
    ax.scatter(rna["rna_true"], rna["rna_found"], s=14, c=rna["t"], cmap="viridis")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("true RNA per cell (simulation)")
    ax.set_ylabel("RNA per cell found by the workflow")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_check(truth_dir: str | os.PathLike, json_path: str | os.PathLike,
                csv_path: str | os.PathLike, png_path: str | os.PathLike, **outputs) -> dict:
    """Run :func:`check_run` on the run's ``outputs`` and write its summary (JSON), RNA table
    (CSV) and plot (PNG)."""
    summary, rna = check_run(truth_dir, **outputs)
    summary[TRUTH_HEADLINE] = headline(summary)
    write_text_atomic(json_path, json.dumps(summary, indent=2) + "\n")
    write_text_atomic(csv_path, rna.to_csv(index=False))
    plot_rna(rna, png_path)
    return summary
