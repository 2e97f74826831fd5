"""Figures of the report (matplotlib, no pyplot: a plain ``Figure`` renders with Agg).

Every function returns a :class:`matplotlib.figure.Figure` and copes with empty input by
drawing a panel that says what is missing, so a report of an empty batch still has all its
figures (and Snakemake gets every declared output).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from cellspot.register import draw_drift

# Display colours of the channel roles (RGB), as in the OME metadata: nucleus blue,
# cytoplasm green, RNA magenta.
ROLE_RGB = {"nucleus": (0.2, 0.4, 1.0), "cytoplasm": (0.0, 0.8, 0.0), "rna": (1.0, 0.0, 1.0)}
TRACK_RGB = (1.0, 0.2, 0.1)


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12,
            color="0.3", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def blank(text: str, size=(6, 3)) -> Figure:
    """A figure that only says ``text`` (e.g. 'No cells in this batch')."""
    fig = Figure(figsize=size)
    _message(fig.add_subplot(), text)
    return fig


# --------------------------------------------------------------------------- QC images


def max_projection(arr, t: int, c: int | None = None, z_block: int = 8) -> np.ndarray:
    """Maximum over z of frame ``t`` (and channel ``c`` of a TCZYX array), read in z blocks."""
    nz = arr.shape[-3]
    out = None
    for z0 in range(0, nz, z_block):
        block = np.asarray(arr[t, c, z0:z0 + z_block] if c is not None else arr[t, z0:z0 + z_block])
        m = block.max(axis=0)
        out = m if out is None else np.maximum(out, m)
    return out


def composite(planes: dict[str, np.ndarray], percentiles=(1.0, 99.8)) -> np.ndarray:
    """RGB image (float in [0, 1]) of per-role 2D planes, each contrast-stretched."""
    shape = next(iter(planes.values())).shape
    rgb = np.zeros((*shape, 3))
    for role, plane in planes.items():
        plane = np.asarray(plane, float)
        lo, hi = np.percentile(plane, percentiles)
        norm = np.clip((plane - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros(shape)
        rgb += norm[..., None] * np.asarray(ROLE_RGB.get(role, (1, 1, 1)))
    return np.clip(rgb, 0, 1)


def qc_figure(panels: Sequence[dict], pixel_size_um: float = 1.0) -> Figure:
    """Max projections with outlines and tracks, one panel per timepoint.

    Each panel dict has ``t``, ``rgb`` (Y, X, 3), ``cell_outline`` and ``nucleus_outline``
    (boolean Y, X) and ``tracks``: a DataFrame of cell-track points up to ``t``
    (``track_id, t, y, x`` in pixels).
    """
    if not panels:
        return blank("No timepoints to show")
    n = len(panels)
    fig = Figure(figsize=(4.2 * n, 4.6))
    for i, p in enumerate(panels):
        ax = fig.add_subplot(1, n, i + 1)
        rgb = p["rgb"].copy()
        rgb[p["nucleus_outline"]] = (0.0, 1.0, 1.0)
        rgb[p["cell_outline"]] = (1.0, 1.0, 0.0)
        ax.imshow(rgb, interpolation="nearest")
        tr = p.get("tracks")
        if tr is not None and len(tr):
            for tid, g in tr.groupby("track_id"):
                g = g.sort_values("t")
                ax.plot(g["x"], g["y"], "-", color=TRACK_RGB, lw=1.5)
                last = g.iloc[-1]
                if last["t"] == p["t"]:
                    ax.plot(last["x"], last["y"], "o", color=TRACK_RGB, ms=3)
                    ax.text(last["x"] + 2, last["y"] - 2, str(int(tid)), color="w", fontsize=7,
                            fontweight="bold")
        ax.set_title(f"t = {p['t']}")
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:  # scale bar of ~1/5 of the width, rounded
            width_um = rgb.shape[1] * pixel_size_um
            bar = float(f"{width_um / 5:.1g}")
            ax.plot([rgb.shape[1] * 0.05, rgb.shape[1] * 0.05 + bar / pixel_size_um],
                    [rgb.shape[0] * 0.95] * 2, "w-", lw=3)
            ax.text(rgb.shape[1] * 0.05, rgb.shape[0] * 0.92, f"{bar:g} µm", color="w",
                    fontsize=8)
    fig.suptitle("Max projections: nucleus blue, cytoplasm green, RNA magenta; "
                 "cell outlines yellow, nuclei cyan, tracks red", fontsize=9)
    return fig


def outlines(label_projection: np.ndarray) -> np.ndarray:
    """Boolean outlines of a 2D label image."""
    return find_boundaries(np.asarray(label_projection), mode="inner")


# --------------------------------------------------------------------------- motion


def drift_figure(drift: pd.DataFrame | None, voxel_size: Sequence[float],
                 common: pd.DataFrame | None = None) -> Figure:
    """Estimated drift (µm) per axis over time, flagged frames marked; beside it, with
    ``common`` (:func:`cellspot.report.tables.common_motion`), the tracked cells' common motion
    left after the correction, with a band of two standard errors."""
    if drift is None or len(drift) == 0:
        return blank("No drift estimate")
    with_common = common is not None and len(common) > 1
    fig = Figure(figsize=(11, 3.2) if with_common else (6.5, 3.2))
    ax = fig.add_subplot(1, 2 if with_common else 1, 1)
    if with_common:
        ax2 = fig.add_subplot(1, 2, 2)
        for i, a in enumerate("zyx"):
            m, e = common[f"d{a}_um"], common[f"se_{a}_um"]
            ax2.plot(common["t"], m, "o-", ms=3, color=f"C{i}", label=a)
            ax2.fill_between(common["t"], m - 2 * e, m + 2 * e, color=f"C{i}", alpha=0.15)
        ax2.axhline(0, color="k", lw=0.8)
        ax2.set_xlabel("timepoint")
        ax2.set_ylabel("mean cell displacement (µm)")
        ax2.legend(fontsize=8, ncol=3)
        ax2.set_title("Tracked cells' common motion after correction", fontsize=10)
    draw_drift(ax, drift, voxel_size)
    ax.set_xlabel("timepoint")
    ax.set_title("Drift of the sample (corrected in the preprocessed image)")
    return fig


def lineage_figure(cell_tracks: pd.DataFrame, dt: float) -> Figure:
    """Lineage tree: one horizontal bar per track over its lifetime, divisions as brackets."""
    if len(cell_tracks) == 0:
        return blank("No cell tracks")
    tracks = cell_tracks.set_index("track_id")
    children = {int(k): [] for k in tracks.index}
    for tid, row in tracks.iterrows():
        if row["parent"] in children:
            children[int(row["parent"])].append(int(tid))
    roots = sorted(int(t) for t, r in tracks.iterrows() if r["parent"] not in children)
    # Leaves get consecutive rows; a parent sits midway between its daughters.
    ypos: dict[int, float] = {}
    counter = [0]

    def place(tid: int) -> float:
        kids = sorted(children[tid])
        if not kids:
            ypos[tid] = counter[0]
            counter[0] += 1
        else:
            ypos[tid] = float(np.mean([place(k) for k in kids]))
        return ypos[tid]

    for r in roots:
        place(r)
    n = len(ypos)
    fig = Figure(figsize=(6.5, min(25.0, max(2.5, 0.22 * n + 1))))  # capped for huge lineages
    ax = fig.add_subplot()
    minutes = dt / 60.0
    for tid, y in ypos.items():
        row = tracks.loc[tid]
        ax.plot([row["t_start"] * minutes, (row["t_end"] + 1) * minutes], [y, y], "-",
                lw=3, color=f"C{int(row['root']) % 10}" if "root" in row else "C0")
        for k in children[tid]:
            xk = tracks.loc[k, "t_start"] * minutes
            ax.plot([(row["t_end"] + 1) * minutes, xk, xk], [y, y, ypos[k]], "k-", lw=0.8)
        if n <= 60:
            ax.text(row["t_start"] * minutes, y + 0.15, str(tid), fontsize=7)
    ax.set_xlabel("time (min)")
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_title(f"Lineage: {n} tracks, divisions: {int(tracks['divides'].sum())}")
    return fig


def trajectories_figure(cell_points: pd.DataFrame, rna_points: pd.DataFrame | None,
                        voxel_size: Sequence[float], max_rna_tracks: int = 200) -> Figure:
    """Cell trajectories (xy, µm) and RNA trajectories relative to their start.

    ``cell_points`` and ``rna_points`` have ``track_id, t, y, x`` in pixels.
    """
    fig = Figure(figsize=(10, 4.5))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if len(cell_points) == 0:
        _message(ax1, "No cell tracks")
    else:
        for tid, g in cell_points.groupby("track_id"):
            g = g.sort_values("t")
            ax1.plot(g["x"] * voxel_size[2], g["y"] * voxel_size[1], "-", lw=1)
            ax1.plot(g["x"].iloc[-1] * voxel_size[2], g["y"].iloc[-1] * voxel_size[1], "k.",
                     ms=3)
        ax1.set_aspect("equal")
        ax1.invert_yaxis()
        ax1.set_xlabel("x (µm)")
        ax1.set_ylabel("y (µm)")
        ax1.set_title("Cell trajectories (dot: last position)")
    if rna_points is None or len(rna_points) == 0:
        _message(ax2, "No RNA tracks")
    else:
        longest = rna_points.groupby("track_id").size().sort_values(ascending=False)
        keep = longest.index[:max_rna_tracks]
        for tid in keep:
            g = rna_points[rna_points["track_id"] == tid].sort_values("t")
            ax2.plot((g["x"] - g["x"].iloc[0]) * voxel_size[2],
                     (g["y"] - g["y"].iloc[0]) * voxel_size[1], "-", lw=0.6, alpha=0.6)
        ax2.set_aspect("equal")
        ax2.set_xlabel("Δx (µm)")
        ax2.set_ylabel("Δy (µm)")
        ax2.set_title(f"RNA trajectories from their start ({len(keep)} longest)")
    return fig


def _hist(ax, values, bins, xlabel, title, log: bool = False, **kw):
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    if log:  # heavy-tailed positive quantities (diffusion coefficients)
        values = values[values > 0]
    if len(values) == 0:
        _message(ax, f"No data: {title.lower()}")
        return
    if log:
        lo, hi = np.log10(values.min()), np.log10(values.max())
        bins = np.logspace(lo, hi if hi > lo else lo + 1, bins + 1)
        ax.set_xscale("log")
    ax.hist(values, bins=bins, **kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=10)


def speed_figure(cell_timepoints: pd.DataFrame, cell_tracks: pd.DataFrame) -> Figure:
    """Histograms of instantaneous cell speed and of per-track persistence (µm/min)."""
    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _hist(ax1, cell_timepoints.get("speed_um_s", []) * 60, 30, "speed (µm/min)",
          "Cell speed per timepoint", color="C0")
    _hist(ax2, cell_tracks.get("persistence", []), np.linspace(0, 1, 21),
          "persistence (net displacement / path length)", "Cell track persistence", color="C1")
    return fig


def rna_count_figure(cell_timepoints: pd.DataFrame) -> Figure:
    """Histograms of RNA per cell (total, nuclear, cytoplasmic) and counts vs cell volume."""
    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    if len(cell_timepoints) == 0:
        _message(ax1, "No cells")
        _message(ax2, "No cells")
        return fig
    top = int(cell_timepoints["rna_total"].max()) if len(cell_timepoints) else 0
    bins = np.arange(0, top + 2) - 0.5 if top < 60 else 30
    for col, label in (("rna_total", "total"), ("rna_nuclear", "nuclear"),
                       ("rna_cytoplasmic", "cytoplasmic")):
        ax1.hist(cell_timepoints[col], bins=bins, histtype="step", lw=1.5, label=label)
    ax1.set_xlabel("RNA molecules per cell")
    ax1.set_ylabel("cells × timepoints")
    ax1.legend(fontsize=8)
    ax1.set_title("RNA per cell", fontsize=10)
    ax2.scatter(cell_timepoints["volume_um3"], cell_timepoints["rna_total"], s=6, alpha=0.6)
    ax2.set_xlabel("cell volume (µm³)")
    ax2.set_ylabel("RNA per cell")
    ax2.set_title("RNA count vs cell volume", fontsize=10)
    return fig


def colocalisation_figure(coloc) -> Figure:
    """Observed statistic against its random-placement null (distance and nuclear fraction)."""
    if coloc is None or coloc.n_spots == 0:
        return blank("No RNA inside cells with a nucleus: no colocalisation test", (10, 3))
    fig = Figure(figsize=(10, 3.6))
    for i, (res, xlabel, title) in enumerate((
            (coloc.distance, "mean distance of RNA to nucleus surface (µm)", "Distance"),
            (coloc.nuclear_fraction, "fraction of RNA in the nucleus", "Nuclear fraction"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.hist(res.null, bins=40, color="0.7", label="random placement in the cell")
        ax.axvline(res.observed, color="C3", lw=2, label="observed")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("permutations")
        ax.set_title(f"{title}: p = {res.p_two_sided:.3g} (two-sided)", fontsize=10)
        ax.legend(fontsize=8)
    return fig


def rna_motion_figure(rna_tracks: pd.DataFrame) -> Figure:
    """Histograms of RNA diffusion coefficients (lab frame and relative to the cell)."""
    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _hist(ax1, rna_tracks.get("diffusion_um2_s", []), 30, "D (µm²/s)",
          "RNA diffusion coefficient (lab frame)", log=True, color="C4")
    _hist(ax2, rna_tracks.get("diffusion_in_cell_um2_s", []), 30, "D (µm²/s)",
          "RNA diffusion relative to its cell", log=True, color="C5")
    return fig
