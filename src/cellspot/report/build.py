"""The report of one batch: read the stage tables, compute statistics, draw, write.

``make_report`` is what the Snakemake rule calls; :func:`summarise_batches` joins the
per-batch summaries of a nightly run into one table.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from cellspot import omezarr
from cellspot.layout import in_batch
from cellspot.register import read_drift_csv
from cellspot.report import coloc as coloc_mod
from cellspot.report import html, plots, tables, trust
from cellspot.report.settings import ReportConfig
from cellspot.stains import ROLES, absent_stains

log = logging.getLogger(__name__)

TABLES = ("cell_stats", "cell_track_stats", "rna_track_stats", "batch_summary")
# name -> (title, caption, Snakemake report category)
FIGURES = {
    "qc": ("QC: max projections", "Maximum projections of the preprocessed image at chosen "
           "timepoints with cell and nucleus outlines and cell tracks up to that time.", "QC"),
    "drift": ("Drift", "Left: estimated sample drift per axis; flagged timepoints in red. "
              "Right: the mean displacement of the tracked cells left after the correction "
              "(band: two standard errors); near zero when the correction followed the sample, "
              "a trend when it followed the cells or the cells migrate together.", "QC"),
    "lineage": ("Lineage tree", "Each bar is a cell track over its lifetime; brackets join a "
                "dividing cell to its daughters.", "Cells"),
    "trajectories": ("Trajectories", "Left: cell centroid trajectories in the xy plane. Right: "
                     "RNA trajectories translated to a common start.", "Motion"),
    "speeds": ("Cell speed and persistence", "Speed of each cell between consecutive "
               "timepoints and the persistence of each track.", "Motion"),
    "rna_counts": ("RNA per cell", "RNA molecules per cell and timepoint, by compartment, and "
                   "against cell volume.", "RNA"),
    "colocalisation": ("RNA localisation vs random placement", "Observed mean distance of RNA "
                       "to the nucleus surface and nuclear fraction, against the distribution "
                       "under uniform random placement inside the same cells.", "RNA"),
    "rna_motion": ("RNA motion", "Diffusion coefficients of RNA tracks from the slope of the "
                   "mean squared displacement (MSD = 6 D t), in the lab frame and relative to "
                   "the RNA's cell.", "RNA"),
}


# Snakemake's --report shows each figure with a caption file (workflow/report/<figure>.rst):
# generated from FIGURES (python -m cellspot.report captions; a test checks they are current).
CAPTIONS_DIR = Path(__file__).resolve().parents[3] / "workflow" / "report"


def figure_captions() -> dict[str, str]:
    """The ``--report`` caption (reStructuredText, Jinja for the batch) of every figure."""
    return {name: f"{title} of batch {{{{ snakemake.wildcards.batch }}}}. {caption}\n"
            for name, (title, caption, _) in FIGURES.items()}


def write_captions(folder: str | os.PathLike = CAPTIONS_DIR) -> list[Path]:
    """Write :func:`figure_captions` as ``<figure>.rst`` files."""
    out = []
    for name, text in figure_captions().items():
        path = Path(folder) / f"{name}.rst"
        path.write_text(text)
        out.append(path)
    return out


# Headline numbers of the page: summary column -> (label, factor to the unit shown).
SUMMARY_LABELS = {
    "n_timepoints": ("timepoints", 1),
    "mean_cells_per_timepoint": ("cells per timepoint (mean)", 1),
    "n_cell_tracks": ("cell tracks", 1),
    "n_divisions": ("divisions", 1),
    "median_cycle_time_s": ("cell cycle, birth to division (median, min)", 1 / 60),
    "n_cell_timepoints_at_border": ("cell-timepoints cut by the image border (left out of "
                                    "the per-cell means)", 1),
    "mean_cell_volume_um3": ("cell volume (mean, µm³)", 1),
    "mean_cell_speed_um_s": ("cell speed (mean, µm/min)", 60),
    "mean_persistence": ("track persistence (mean)", 1),
    "n_rna_spots": ("RNA spots", 1),
    "n_rna_in_cells": ("RNA spots inside cells", 1),
    "n_rna_molecules": ("RNA molecules (spots holding unresolved neighbours or a "
                        "transcription site count several)", 1),
    "mean_rna_per_cell": ("RNA per cell (mean)", 1),
    "median_rna_per_cell": ("RNA per cell (median)", 1),
    "fraction_rna_nuclear": ("fraction of RNA in nuclei", 1),
    "fraction_rna_cytoplasmic": ("fraction of RNA in cytoplasm", 1),
    "coloc_null_fraction_nuclear": ("… expected under random placement", 1),
    "coloc_p_nuclear_two_sided": ("… p-value (permutation test, two-sided)", 1),
    "coloc_mean_distance_um": ("RNA distance to nucleus surface (mean, µm)", 1),
    "coloc_null_mean_distance_um": ("… expected under random placement (µm)", 1),
    "coloc_p_distance_two_sided": ("… p-value (permutation test, two-sided)", 1),
    "n_rna_tracks": ("RNA tracks", 1),
    "median_rna_diffusion_um2_s": ("RNA diffusion coefficient, lab frame (median, µm²/s)", 1),
    "median_rna_diffusion_in_cell_um2_s": ("RNA diffusion relative to its cell "
                                           "(median, µm²/s)", 1),
    "max_drift_px": ("largest drift (px)", 1),
    "n_drift_flagged": ("timepoints flagged by drift estimation", 1),
}


def readable_summary(row: Mapping) -> dict:
    """The summary row with labels and units for people (values absent from ``row`` skipped)."""
    out = {}
    for key, (label, factor) in SUMMARY_LABELS.items():
        if key in row:
            v = row[key]
            out[label if label not in out else f"{label} ({key})"] = (
                v * factor if factor != 1 and v is not None else v)
    return out


# key of the headline figures in a truth check's JSON (cellspot_bench.truth_check writes them)
TRUTH_HEADLINE = "headline"


@dataclass
class ReportInputs:
    """Paths of everything the report reads."""

    cells: Path
    nuclei: Path
    spots: Path
    cell_tracks: Path
    spot_tracks: Path
    cell_labels: Path
    nucleus_labels: Path
    image: Path
    drift: Path | None = None
    # a simulated movie: rule truth_check's summary (JSON) and plot (PNG)
    truth_check: Path | None = None
    truth_check_png: Path | None = None

    @classmethod
    def from_batch_dir(cls, d: str | os.PathLike) -> "ReportInputs":
        def table(name):
            return in_batch(d, "table", name=name)

        return cls(table("cells"), table("nuclei"), table("spots"), table("cell_tracks"),
                   table("spot_tracks"), in_batch(d, "labels", name="cells"),
                   in_batch(d, "labels", name="nuclei"), in_batch(d, "preprocessed"),
                   in_batch(d, "drift_csv"))


@dataclass
class ReportOutputs:
    """Where the report writes: the page, tables (parquet + CSV) and figures (PNG)."""

    html: Path
    tables_dir: Path
    figures_dir: Path

    @classmethod
    def from_batch_dir(cls, d: str | os.PathLike) -> "ReportOutputs":
        return cls(in_batch(d, "report_html"), in_batch(d, "table", name="_").parent,
                   in_batch(d, "figure", name="_").parent)

    def table(self, name: str, ext: str) -> Path:
        return self.tables_dir / f"{name}.{ext}"

    def figure(self, name: str) -> Path:
        return self.figures_dir / f"{name}.png"

    def all_paths(self) -> list[Path]:
        return ([self.html] + [self.table(n, e) for n in TABLES for e in ("parquet", "csv")]
                + [self.figure(n) for n in FIGURES])


@dataclass
class ReportResult:
    tables: dict[str, pd.DataFrame]
    coloc: coloc_mod.Colocalisation | None
    notes: list[str]
    figures: list[html.FigureItem] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def read_table(path: Path, kind: str) -> pd.DataFrame:
    """Read a stage table (parquet or CSV) and check its columns; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise tables.ReportInputError(f"{path}: {kind} table not found")
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise tables.ReportInputError(f"{path}: cannot read the {kind} table ({exc})") from exc
    if len(df) or len(df.columns):  # an empty table written without a schema has no columns
        tables.check_columns(df, kind, str(path))
    else:
        df = pd.DataFrame({c: pd.Series(dtype=float) for c in tables.REQUIRED[kind]})
    return df


def channel_indices(meta: omezarr.ImageMeta,
                    channels: Mapping[str, str | int] | None) -> dict[str, int]:
    """Channel index of each role, from the ``channels:`` config (role -> name or index)."""
    channels = dict(channels or {})
    out = {}
    n_c = len(meta.channel_names)
    for i, role in enumerate(ROLES):
        name = channels.get(role, role)
        if name is None:  # the movie has no such stain
            continue
        if isinstance(name, int) and 0 <= name < n_c:
            out[role] = name
        elif name in meta.channel_names:
            out[role] = meta.channel_names.index(name)
        elif not channels and i < len(meta.channel_names):
            out[role] = i  # unnamed channels: nucleus, cytoplasm, RNA in order
        else:
            log.warning("channel %r for %s not in %s: not shown", name, role, meta.channel_names)
    return out


# --------------------------------------------------------------------------- computing


def _qc_timepoints(cfg: ReportConfig, n_t: int) -> list[int]:
    if cfg.qc_timepoints:
        return sorted({t % n_t for t in cfg.qc_timepoints if -n_t <= t < n_t})
    return coloc_mod.choose_timepoints(n_t, cfg.n_qc_timepoints)


def qc_panels(image, cell_labels, nucleus_labels, roles: dict[str, int],
              cell_tracks: pd.DataFrame, timepoints: Sequence[int], max_size: int) -> list[dict]:
    """Data of the QC figure: composite max projection, outlines, tracks per timepoint."""
    step = max(1, math.ceil(max(image.shape[-2:]) / max_size))
    panels = []
    for t in timepoints:
        planes = {r: plots.max_projection(image, t, c)[::step, ::step] for r, c in roles.items()}
        rgb = (plots.composite(planes) if planes
               else np.zeros((*image.shape[-2:], 3))[::step, ::step])
        cl = plots.max_projection(cell_labels, t)[::step, ::step]
        nl = plots.max_projection(nucleus_labels, t)[::step, ::step]
        tr = cell_tracks[cell_tracks["t"] <= t][["track_id", "t", "y", "x"]].copy()
        tr[["y", "x"]] = tr[["y", "x"]] / step
        panels.append({"t": int(t), "rgb": rgb, "cell_outline": plots.outlines(cl),
                       "nucleus_outline": plots.outlines(nl), "tracks": tr, "step": step})
    return panels


def compute(inputs: ReportInputs, cfg: ReportConfig | None = None,
            channels: Mapping[str, str] | None = None, batch: str = "batch") -> ReportResult:
    """All tables, the colocalisation test and the figures of one batch (nothing written)."""
    cfg = cfg or ReportConfig()
    meta = omezarr.read_meta(inputs.image)
    image = omezarr.open_array(inputs.image)
    cell_labels = omezarr.open_array(inputs.cell_labels)
    nucleus_labels = omezarr.open_array(inputs.nucleus_labels)
    n_t = int(image.shape[0])
    vs, dt = meta.voxel_size, meta.time_interval

    cells = read_table(inputs.cells, "cells")
    nuclei = read_table(inputs.nuclei, "nuclei")
    spots = read_table(inputs.spots, "spots")
    cell_tracks = read_table(inputs.cell_tracks, "cell_tracks")
    spot_tracks = read_table(inputs.spot_tracks, "spot_tracks")
    drift = None
    if inputs.drift is not None and Path(inputs.drift).exists():
        drift = read_drift_csv(inputs.drift)
    if len(spots) and "distance_to_nucleus_um" not in spots:
        log.info("%s has no distance_to_nucleus_um: computing it from %s", inputs.spots,
                 inputs.nucleus_labels)
        spots = spots.assign(distance_to_nucleus_um=coloc_mod.distance_at_spots(
            spots, nucleus_labels, vs))

    ctp = tables.cell_timepoint_table(cells, nuclei, spots, cell_tracks, vs, dt,
                                      image_shape=cell_labels.shape[-3:])
    ctr = tables.cell_track_table(cell_tracks, vs, dt, ctp, cfg.msd_max_lag)
    rtr = tables.rna_track_table(spot_tracks, spots, vs, dt, cfg.msd_max_lag,
                                 cfg.diffusion_fit_lags, cfg.min_rna_track_length, cells)
    common = tables.common_motion(cell_tracks, vs)
    notes = trust.notes(cells, nuclei, spots, cell_tracks, drift, ctp, ctr, n_t, vs,
                        cfg.border_cells == "exclude", common,
                        absent=absent_stains(channels))
    coloc = None
    if len(cells) and len(spots):
        coloc = coloc_mod.colocalisation(
            spots, cell_labels, nucleus_labels, vs,
            coloc_mod.choose_timepoints(n_t, cfg.coloc_timepoints), cfg.n_permutations,
            cfg.seed)
    summary = tables.batch_summary(batch, ctp, ctr, rtr, spots, n_t,
                                   coloc.as_dict() if coloc else None, drift, notes,
                                   cfg.border_cells)
    result = ReportResult({"cell_stats": ctp, "cell_track_stats": ctr,
                           "rna_track_stats": rtr, "batch_summary": summary}, coloc, notes)

    roles = channel_indices(meta, channels)
    panels = qc_panels(image, cell_labels, nucleus_labels, roles, cell_tracks,
                       _qc_timepoints(cfg, n_t), cfg.max_qc_size)
    step = panels[0]["step"] if panels else 1
    figs = {
        "qc": plots.qc_figure(panels, vs[2] * step),
        "drift": plots.drift_figure(drift, vs, common),
        "lineage": plots.lineage_figure(ctr, dt),
        "trajectories": plots.trajectories_figure(cell_tracks, spot_tracks, vs,
                                                  cfg.max_rna_tracks_plotted),
        "speeds": plots.speed_figure(ctp, ctr),
        "rna_counts": plots.rna_count_figure(ctp),
        "colocalisation": plots.colocalisation_figure(coloc),
        "rna_motion": plots.rna_motion_figure(rtr),
    }
    for name, fig in figs.items():
        title, caption, _ = FIGURES[name]
        result.figures.append(html.FigureItem(name, title, caption, plots.to_png(fig, cfg.dpi)))
    return result


def per_timepoint(ctp: pd.DataFrame) -> pd.DataFrame:
    """Cells, mean RNA and mean speed per timepoint (the overview table of the page)."""
    if len(ctp) == 0:
        return ctp
    return ctp.groupby("t").agg(
        cells=("label", "size"), mean_volume_um3=("volume_um3", "mean"),
        mean_rna=("rna_total", "mean"), mean_rna_nuclear=("rna_nuclear", "mean"),
        mean_speed_um_min=("speed_um_s", lambda s: s.mean() * 60)).reset_index()


# --------------------------------------------------------------------------- writing


def write_table(df: pd.DataFrame, parquet: Path, csv: Path) -> None:
    """Write one table as parquet and CSV, each atomically."""
    omezarr.write_table(parquet, df)
    omezarr.write_table(csv, df)


def make_report(inputs: ReportInputs, outputs: ReportOutputs, cfg: ReportConfig | None = None,
                channels: Mapping[str, str] | None = None, batch: str = "batch") -> ReportResult:
    """Compute and write the report of one batch: tables, figures and the HTML page."""
    cfg = cfg or ReportConfig()
    result = compute(inputs, cfg, channels, batch)
    for name, df in result.tables.items():
        write_table(df, outputs.table(name, "parquet"), outputs.table(name, "csv"))
    for fig in result.figures:
        with omezarr.atomic_output(outputs.figure(fig.name)) as tmp:
            Path(tmp).write_bytes(fig.png)
    meta = omezarr.read_meta(inputs.image)
    summary = readable_summary(result.tables["batch_summary"].iloc[0].to_dict())
    info = {"batch": batch, "voxel size (z, y, x) µm": ", ".join(f"{v:g}" for v in meta.voxel_size),
            "time step (s)": meta.time_interval}
    page = html.render(
        f"cellspot report: {batch}", result.notes, summary, result.figures,
        [("Per timepoint", per_timepoint(result.tables["cell_stats"])),
         ("Cell tracks", result.tables["cell_track_stats"]),
         ("RNA tracks (longest first)", result.tables["rna_track_stats"]
          .sort_values("n_timepoints", ascending=False, kind="stable"))],
        info, accuracy=_accuracy(inputs))
    html.write(outputs.html, page)
    return result


def truth_headline(path: str | os.PathLike) -> dict:
    """The headline figures (label -> text) of a truth check's JSON (rule ``truth_check``)."""
    import json

    return json.loads(Path(path).read_text())[TRUTH_HEADLINE]


def _accuracy(inputs: ReportInputs):
    """The accuracy section of a simulated movie (``None`` without a truth check)."""
    if inputs.truth_check is None:
        return None
    items = truth_headline(inputs.truth_check)
    fig = None
    if inputs.truth_check_png is not None:
        fig = html.FigureItem("rna_vs_truth", "RNA per cell: found vs true",
                              "Each dot is a true cell at one timepoint, matched to a found "
                              "cell (IoU >= 0.5): its RNA count by the workflow against the "
                              "simulated one.", Path(inputs.truth_check_png).read_bytes())
    return items, fig


def summarise_batches(summaries: Sequence[str | os.PathLike], parquet: str | os.PathLike,
                      csv: str | os.PathLike) -> pd.DataFrame:
    """One table across batches (one row each) from their ``batch_summary.parquet`` files."""
    frames = [read_any(p) for p in summaries]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"batch": []})
    write_table(df, Path(parquet), Path(csv))
    return df


def read_any(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise tables.ReportInputError(f"{path}: batch summary not found")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
