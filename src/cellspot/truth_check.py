"""A workflow run compared with the truth of a simulated movie (``cellspot simulate``'s ``truth/``).

For a batch whose samples-sheet row names its ``truth`` folder (the demo's does), rule
``truth_check`` measures what the run got right, in the frame of the first timepoint (the truth's
sample frame, which a perfect drift correction recovers):

- drift residual per axis (px): estimated minus simulated drift;
- cells and nuclei: AP@0.5 (TP / (TP + FP + FN), one-to-one on IoU) per frame, in 3D;
- RNA spots: F1 in 3D, one-to-one within ``3`` xy pixels (distances in µm), all frames;
- divisions found / missed / false, and CTC TRA/DET of the tracking result (py-ctcmetrics);
- RNA per cell: for every truth cell matched at IoU >= 0.5, the counted minus the true number.

The report shows these as a section, so that a user sees what accuracy looks like.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cellspot.errors import InputError
from cellspot.metrics import average_precision, matched_pairs, spot_f1
from cellspot.omezarr import atomic_output, open_array, read_meta, write_text_atomic
from cellspot.register import read_drift_csv

SPOT_MATCH_PX = 3.0  # xy pixels; spots further apart than this are not a match
RNA_COLUMNS = ["t", "true_cell", "label", "iou", "rna_true", "rna_found", "error"]


def read_truth(truth_dir: str | os.PathLike) -> dict:
    """A ``truth/`` folder (:func:`cellspot.simulate.read_truth_folder`), checked first."""
    from cellspot.simulate import read_truth_folder

    d = Path(truth_dir)
    need = ["cells.tif", "nuclei.tif", "spots.csv", "lineage.csv", "drift.csv", "cells.csv",
            "simulation.json"]
    missing = [n for n in need if not (d / n).is_file()]
    if missing:
        raise InputError(f"{d}: not a cellspot simulation truth folder ({missing[0]} missing)")
    return read_truth_folder(d)


def ap_per_frame(truth: np.ndarray, pred: np.ndarray) -> list[float]:
    """AP@0.5 of every frame of ``(T, Z, Y, X)`` label movies."""
    return [average_precision(truth[t], np.asarray(pred[t])) for t in range(truth.shape[0])]


def spot_match(truth: pd.DataFrame, pred: pd.DataFrame, voxel_size) -> dict:
    """3D spot detection counts over all frames, one-to-one within ``SPOT_MATCH_PX`` xy px."""
    scale = np.asarray(voxel_size, float)
    tp = fp = fn = 0
    for t in sorted(set(truth["t"]) | set(pred["t"])):
        a = truth.loc[truth["t"] == t, ["z", "y", "x"]].to_numpy(float)
        b = pred.loc[pred["t"] == t, ["z", "y", "x"]].to_numpy(float)
        m = spot_f1(a, b, SPOT_MATCH_PX * scale[2], scale=tuple(scale))
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    return {"tp": tp, "fp": fp, "fn": fn, "f1": f1,
            "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1)}


def rna_per_cell(truth: dict, cells: np.ndarray, spots: pd.DataFrame) -> pd.DataFrame:
    """Counted vs true RNA of every truth cell matched to a found cell (IoU >= 0.5).

    The count is the merge stage's: spots of ``spots.parquet`` whose ``cell_id`` is the cell.
    """
    rows = []
    ref = truth["cells_table"].set_index(["t", "cell_id"])["n_spots"]
    found = spots[spots["cell_id"] > 0].groupby(["t", "cell_id"]).size()
    for t in range(truth["cells"].shape[0]):
        t_ids, p_ids, ious, _, _ = matched_pairs(truth["cells"][t], np.asarray(cells[t]))
        for a, b, iou in zip(t_ids, p_ids, ious):
            true_n = int(ref.get((t, int(a)), 0))
            got = int(found.get((t, int(b)), 0))
            rows.append((t, int(a), int(b), float(iou), true_n, got,
                         (got - true_n) / true_n if true_n else np.nan))
    return pd.DataFrame(rows, columns=RNA_COLUMNS)


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
    from cellspot import ctc

    with tempfile.TemporaryDirectory() as tmp:
        gt = ctc.write_ctc_ground_truth(Path(tmp) / "gt", truth["cells"], truth["lineage"])
        res = ctc.evaluate_ctc(ctc_dir, gt)
    return {"TRA": res.get("TRA"), "DET": res.get("DET")}


def check_run(truth_dir: str | os.PathLike, *, cells: str, nuclei: str, cells_tracked: str,
              spots: str, cell_tracks: str, drift: str, image: str, ctc_dir: str
              ) -> tuple[dict, pd.DataFrame]:
    """All figures of a run's outputs (the paths of the merge, track and preprocess outputs)
    against the truth; returns (summary, RNA table)."""
    truth = read_truth(truth_dir)
    found = open_array(cells)
    if found.shape != truth["cells"].shape:
        raise InputError(f"{cells}: shape {found.shape}, the truth {truth['cells'].shape}: not "
                         f"the simulated movie of {truth_dir}")
    found = np.asarray(found[...])
    nuc = np.asarray(open_array(nuclei)[...])
    vs = read_meta(image).voxel_size
    est = read_drift_csv(drift, ("t", "dz", "dy", "dx")).set_index("t")[["dz", "dy", "dx"]]
    resid = (est - truth["drift"].set_index("t")[["dz", "dy", "dx"]]).abs()
    spot_table = pd.read_parquet(spots)
    rna = rna_per_cell(truth, found, spot_table)
    err = rna["error"].abs().dropna()
    cell_ap, nuc_ap = ap_per_frame(truth["cells"], found), ap_per_frame(truth["nuclei"], nuc)

    def n_objects(movie):
        return float(np.mean([len(np.unique(f)) - 1 for f in movie]))

    summary = {
        "drift_residual_px": {ax: float(resid[f"d{ax}"].max()) for ax in "zyx"},
        "cell_ap50": float(np.mean(cell_ap)), "cell_ap50_per_frame": cell_ap,
        "nucleus_ap50": float(np.mean(nuc_ap)),
        "cells_per_frame": {"true": n_objects(truth["cells"]), "found": n_objects(found)},
        "spots": spot_match(truth["spots"], spot_table, vs),
        "spot_match_um": SPOT_MATCH_PX * float(vs[2]),
        "divisions": divisions(truth["lineage"], np.asarray(open_array(cells_tracked)[...]),
                               truth["cells"], pd.read_parquet(cell_tracks)),
        "tracking": tracking_scores(truth, ctc_dir),
        "rna_per_cell": {
            "matched_cell_timepoints": int(len(rna)),
            "mean_abs_error": float(err.mean()) if len(err) else None,
            "median_abs_error": float(err.median()) if len(err) else None,
            "worst_abs_error": float(err.max()) if len(err) else None,
            "within_10pct": float((err <= 0.10).mean()) if len(err) else None,
            "total_error": (float(rna["rna_found"].sum() / rna["rna_true"].sum() - 1)
                            if rna["rna_true"].sum() else None)},
    }
    return summary, rna


def readable(summary: dict) -> dict:
    """The headline figures of a check, labelled for people (the report's accuracy section)."""
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
        "tracking: CTC TRA / DET": (f"{trk['TRA']:.3f} / {trk['DET']:.3f}"
                                    if trk.get("TRA") is not None else "not available"),
        "RNA per cell: mean / median / worst error": " / ".join(
            str(pct(rna[k])) for k in ("mean_abs_error", "median_abs_error", "worst_abs_error")),
        "RNA per cell: cell-timepoints within 10 %": (
            f"{pct(rna['within_10pct'])} of {rna['matched_cell_timepoints']}"),
        "RNA in matched cells: total error": pct(rna["total_error"]),
        "drift residual, largest (z, y, x px)": ", ".join(f"{d[a]:.2f}" for a in "zyx"),
    }


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
    write_text_atomic(json_path, json.dumps(summary, indent=2) + "\n")
    write_text_atomic(csv_path, rna.to_csv(index=False))
    plot_rna(rna, png_path)
    return summary
