"""When a batch's numbers should not be trusted: the notes shown at the top of its report.

Each check is a small function of the stage tables that returns a note (or nothing) naming
what was seen, the likely cause and the setting to look at. :func:`notes` runs them all; the
notes are also written in the batch summary's ``notes`` column.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

# A spot whose nearest other spot (same timepoint, 3D in µm) is closer than this many xy
# pixels sits in a region the detector cannot resolve into molecules.
CROWDED_PX = 2.0
CROWDED_SHARE = 0.25      # ... and this share of such spots makes a note
JUMP_SHARE = 0.25         # cell count change between frames, relative to the median count
ONE_FRAME_SHARE = 0.2     # share of one-timepoint cell tracks that makes a note
BORDER_SHARE = 0.5        # share of cell-timepoints cut by the border that makes a note
COMMON_MOTION_PX = 1.0    # common motion of tracked cells left after drift correction


def missing_objects(cells, nuclei, spots, cell_tracks, absent: Sequence[str] = ()) -> list[str]:
    """Empty stages: no cells, nuclei, tracks or spots, or no spot inside a cell; and what a
    movie without some stains (``absent`` roles) cannot give."""
    out = []
    if "cytoplasm" in absent:
        out.append("This movie has no cytoplasm stain (channels.cytoplasm: null): each cell "
                   "is its nucleus grown by merge.cell_expansion_um, so cell volumes, shapes "
                   "and the cytoplasmic RNA share follow that rule, not the cells' outlines.")
    if "rna" in absent:
        out.append("This movie has no RNA stain (channels.rna: null): the report covers "
                   "cells, nuclei, tracks and lineage only.")
    if len(cells) == 0:
        out.append("No cells were found in this batch: there are no per-cell statistics, "
                   "tracks or lineage.")
    else:
        if len(nuclei) == 0:
            out.append("No nuclei were found in this batch: nucleus volumes and the "
                       "localisation of RNA relative to the nucleus are not available.")
        if len(cell_tracks) == 0:
            out.append("Cells were found but not tracked: no speeds, trajectories or lineage.")
    if len(spots) == 0 and "rna" not in absent:
        out.append("No RNA spots were found in this batch: RNA counts are zero and there "
                   "is no RNA localisation or motion analysis. Check channels.rna and "
                   "models.spots.infer.score_threshold.")
    elif len(cells) and (spots["cell_id"] > 0).sum() == 0:
        out.append(f"None of the {len(spots)} RNA spots lies inside a cell: check that "
                   "channels.rna names the RNA stain and that the cells are segmented.")
    return out


def crowded_spots(spots: pd.DataFrame, voxel_size: Sequence[float]) -> str | None:
    """Many spots closer to another than the optics resolve (``CROWDED_PX`` xy pixels)."""
    if len(spots) < 10:
        return None
    scale = np.asarray(voxel_size, float)
    close = 0
    for _, g in spots.groupby("t"):
        if len(g) < 2:
            continue
        d, _ = cKDTree(g[["z", "y", "x"]].to_numpy(float) * scale).query(
            g[["z", "y", "x"]].to_numpy(float) * scale, k=2)
        close += int((d[:, 1] < CROWDED_PX * scale[2]).sum())
    share = close / len(spots)
    if share < CROWDED_SHARE:
        return None
    return (f"{100 * share:.0f} % of RNA spots lie within {CROWDED_PX * scale[2]:.2f} µm of "
            "another: closer than single molecules can be told apart. Counts in dense "
            "regions (transcription sites, clusters) are lower bounds, or the spot model "
            "fires on noise: look at the QC figure and models.spots.infer.score_threshold.")


def cell_count_jumps(cells: pd.DataFrame, n_timepoints: int) -> str | None:
    """Cell counts that change between consecutive frames by more than ``JUMP_SHARE``."""
    if n_timepoints < 2 or len(cells) == 0:
        return None
    n = cells.groupby("t").size().reindex(range(n_timepoints), fill_value=0).to_numpy()
    jump = np.abs(np.diff(n))
    bad = [int(t) + 1 for t in np.flatnonzero(jump >= max(2.0, JUMP_SHARE * np.median(n)))]
    if not bad:
        return None
    return (f"The number of cells jumps between consecutive timepoints at t = {bad} "
            f"(counts {n.min()}-{n.max()}): cells are lost, split or merged by the "
            "segmentation (models.cells.infer.score_threshold, merge.iou_threshold), or the "
            "focus or illumination changes there.")


def one_frame_tracks(cell_track_stats: pd.DataFrame, n_timepoints: int) -> str | None:
    """Many cell tracks that last one timepoint."""
    if n_timepoints < 3 or len(cell_track_stats) < 5:
        return None
    share = float((cell_track_stats["n_timepoints"] == 1).mean())
    if share < ONE_FRAME_SHARE:
        return None
    return (f"{100 * share:.0f} % of cell tracks last a single timepoint: cells move farther "
            "between frames than the tracker searches (max_search_radius in "
            "track.cell_config), or the segmentation flickers; speeds and lineages are "
            "fragmented.")


def unpaired_divisions(cell_track_stats: pd.DataFrame) -> str | None:
    """Divisions that do not give exactly two daughters."""
    if len(cell_track_stats) == 0:
        return None
    div = cell_track_stats[cell_track_stats["n_daughters"] > 0]
    bad = div[div["n_daughters"] != 2]
    if not len(bad):
        return None
    return (f"{len(bad)} of {len(div)} divisions do not have two daughters (tracks "
            f"{bad['track_id'].astype(int).tolist()[:10]}): a daughter was not segmented or "
            "tracks were swapped; the division count and cycle times are uncertain "
            "(track.cell_config).")


def border_cells(cell_stats: pd.DataFrame, excluded: bool) -> str | None:
    """Most cells are cut by the image border."""
    if len(cell_stats) == 0 or "at_border" not in cell_stats:
        return None
    share = float(cell_stats["at_border"].astype(bool).mean())
    if share < BORDER_SHARE:
        return None
    what = "left out of" if excluded else "included in (report.border_cells: include)"
    return (f"{100 * share:.0f} % of cell-timepoints are cut by the image border and are "
            f"{what} the per-cell means: the field is small for these cells.")


def common_motion(common: pd.DataFrame, voxel_size: Sequence[float]) -> str | None:
    """Tracked cells that moved together after drift correction (:func:`cellspot.report.
    tables.common_motion`): more than ``COMMON_MOTION_PX`` xy pixels and three standard
    errors, in y or x, at some timepoint."""
    if common is None or len(common) < 3:
        return None
    px = float(voxel_size[2])
    worst = None
    for a in "yx":
        m, e = common[f"d{a}_um"].abs(), common[f"se_{a}_um"]
        hit = (m > COMMON_MOTION_PX * px) & (m > 3 * e)
        if hit.any() and (worst is None or m.max() > worst[1]):
            worst = (a, float(m.max()))
    if worst is None:
        return None
    return (f"After drift correction the tracked cells still moved together by "
            f"{worst[1]:.2f} µm in {worst[0]} (right panel of the drift figure): either the "
            "correction followed the cells rather than the sample (check "
            "preprocess.registration.channel; speeds and tracks carry this motion) or the "
            "cells migrate together.")


def flagged_drift(drift: pd.DataFrame | None) -> str | None:
    """Timepoints the drift estimation flagged as unreliable."""
    if drift is None or "flagged" not in drift or not drift["flagged"].astype(bool).any():
        return None
    bad = drift.loc[drift["flagged"].astype(bool), "t"].astype(int).tolist()
    return (f"Drift estimation flagged {len(bad)} timepoint(s) as unreliable: {bad}. Speeds and "
            "tracks across them may be wrong: check preprocess.registration.channel and "
            "min_quality, and the drift figure.")


def notes(cells, nuclei, spots, cell_tracks, drift, cell_stats, cell_track_stats,
          n_timepoints: int, voxel_size, border_excluded: bool = True,
          common: pd.DataFrame | None = None, absent: Sequence[str] = ()) -> list[str]:
    """Every note of a batch, most basic first (``common``: the cells' common motion;
    ``absent``: the stains the movie does not have)."""
    found = [
        crowded_spots(spots, voxel_size) if len(spots) else None,
        cell_count_jumps(cells, n_timepoints),
        one_frame_tracks(cell_track_stats, n_timepoints),
        unpaired_divisions(cell_track_stats),
        border_cells(cell_stats, border_excluded),
        flagged_drift(drift),
        common_motion(common, voxel_size),
    ]
    return missing_objects(cells, nuclei, spots, cell_tracks, absent) + [n for n in found if n]
