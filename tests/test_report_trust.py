"""The report's trust notes and the flag of cells cut by the image border."""

import numpy as np
import pandas as pd
import pytest

from cellspot.report import build, tables, trust
from cellspot_bench import truth_tables as truth

VS = (0.5, 0.25, 0.25)


def _cells(counts):
    """A cells table with ``counts[t]`` cells at timepoint t, well inside a 100 x 100 field."""
    rows = [(t, i + 1, 5.0, 20.0 + 5 * i, 50.0, 100.0) for t, n in enumerate(counts)
            for i in range(n)]
    return pd.DataFrame(rows, columns=["t", "label", "z", "y", "x", "volume_um3"])


def test_quiet_on_a_sound_batch(small_movie):
    tb = truth.tables_from_truth(small_movie)
    vs, dt = small_movie.meta.voxel_size, small_movie.meta.time_interval
    ctp = tables.cell_timepoint_table(tb["cells"], tb["nuclei"], tb["spots"], tb["cell_tracks"],
                                      vs, dt)
    ctr = tables.cell_track_table(tb["cell_tracks"], vs, dt, ctp)
    n_t = small_movie.cells.shape[0]
    assert trust.notes(tb["cells"], tb["nuclei"], tb["spots"], tb["cell_tracks"], None, ctp,
                       ctr, n_t, vs) == []


def test_crowded_spots_are_named():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 60, (40, 3))
    # every spot has a twin 1 px away: unresolvable pairs
    pts = np.concatenate([centres, centres + [0, 1.0, 0]])
    spots = pd.DataFrame({"t": 0, "z": pts[:, 0], "y": pts[:, 1], "x": pts[:, 2]})
    note = trust.crowded_spots(spots, VS)
    assert note and "100 %" in note and "score_threshold" in note
    assert trust.crowded_spots(spots.iloc[:40], VS) is None


def test_cell_count_jump_names_the_timepoint():
    note = trust.cell_count_jumps(_cells([8, 8, 3, 8]), 4)
    assert "t = [2, 3]" in note and "models.cells.infer.score_threshold" in note
    assert trust.cell_count_jumps(_cells([8, 8, 9, 8]), 4) is None


def test_one_frame_tracks_and_unpaired_divisions():
    ctr = pd.DataFrame({"track_id": range(1, 11), "n_timepoints": [1] * 4 + [5] * 6,
                        "n_daughters": [0] * 8 + [1, 2]})
    assert "40 % of cell tracks" in trust.one_frame_tracks(ctr, 6)
    assert trust.one_frame_tracks(ctr.assign(n_timepoints=5), 6) is None
    note = trust.unpaired_divisions(ctr)
    assert "1 of 2 divisions" in note and "[9]" in note
    assert trust.unpaired_divisions(ctr.assign(n_daughters=0)) is None


def test_flagged_drift_names_timepoints_and_setting():
    drift = pd.DataFrame({"t": [0, 1, 2], "flagged": [False, True, False]})
    assert "[1]" in trust.flagged_drift(drift) and "min_quality" in trust.flagged_drift(drift)
    assert trust.flagged_drift(drift.assign(flagged=False)) is None


def test_border_cells_flagged_and_left_out_of_per_cell_means():
    cells = pd.DataFrame({"t": [0, 0], "label": [1, 2], "z": 2.0, "y": [2.0, 50.0],
                          "x": [50.0, 50.0], "volume_um3": [10.0, 100.0],
                          "bbox_z0": 0, "bbox_y0": [0, 40], "bbox_x0": [40, 40],
                          "bbox_z1": 4, "bbox_y1": [5, 60], "bbox_x1": [60, 60]})
    none = pd.DataFrame(columns=["t", "label", "volume_um3", "cell_id"])
    spots = pd.DataFrame({"t": [0] * 3, "label": [1, 2, 3], "z": 2.0, "y": 50.0, "x": 50.0,
                          "cell_id": [1, 2, 2], "compartment": "cytoplasm"})
    ct = pd.DataFrame(columns=["track_id", "t", "z", "y", "x", "label", "parent"])
    ctp = tables.cell_timepoint_table(cells, none, spots, ct, VS, 60.0, image_shape=(4, 100, 100))
    assert ctp.set_index("label")["at_border"].to_dict() == {1: True, 2: False}
    s = tables.batch_summary("b", ctp, tables.cell_track_table(ct, VS, 60.0),
                             tables.rna_track_table(ct, spots, VS, 60.0), spots, 1)
    assert s.loc[0, "mean_rna_per_cell"] == 2 and s.loc[0, "mean_cell_volume_um3"] == 100
    assert s.loc[0, "n_cell_timepoints_at_border"] == 1
    assert s.loc[0, "mean_cells_per_timepoint"] == 2  # still counted
    s = tables.batch_summary("b", ctp, tables.cell_track_table(ct, VS, 60.0),
                             tables.rna_track_table(ct, spots, VS, 60.0), spots, 1,
                             border_cells="include")
    assert s.loc[0, "mean_rna_per_cell"] == pytest.approx(1.5)
    assert "50 % of cell-timepoints" in trust.border_cells(ctp, True)


def test_border_cells_setting_is_validated():
    assert build.ReportConfig().border_cells == "exclude"
    with pytest.raises(ValueError):
        build.ReportConfig(border_cells="sometimes")


def _tracks(n_cells, n_t, common_step_px, seed=0):
    """Cells on independent random walks (2 px steps) plus a common step per frame (px)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(1, n_cells + 1):
        p = rng.uniform(20, 80, 3)
        for t in range(n_t):
            rows.append((c, t, *p))
            p = p + rng.normal(0, 2.0, 3) + [0, common_step_px, 0]
    return pd.DataFrame(rows, columns=["track_id", "t", "z", "y", "x"])


def test_common_motion_of_tracked_cells():
    moving = tables.common_motion(_tracks(40, 8, 1.0), VS)
    # 7 common steps of 1 px = 1.75 µm in y, recovered within 3 standard errors
    last = moving.iloc[-1]
    assert abs(last["dy_um"] - 1.75) < 3 * last["se_y_um"] and last["n_cells"] == 40
    assert "moved together by" in trust.common_motion(moving, VS)
    still = tables.common_motion(_tracks(40, 8, 0.0), VS)
    assert trust.common_motion(still, VS) is None
    assert len(tables.common_motion(_tracks(0, 8, 0.0), VS)) == 0


def test_drift_figure_with_common_motion():
    from cellspot.report import plots

    drift = pd.DataFrame({"t": range(8), "dz": 0.0, "dy": np.arange(8.0), "dx": 0.0})
    fig = plots.drift_figure(drift, VS, tables.common_motion(_tracks(10, 8, 0.5), VS))
    assert len(fig.axes) == 2
    assert len(plots.drift_figure(drift, VS).axes) == 1


def test_absent_stains_are_said_not_warned_about():
    """A movie without an RNA stain gets a note saying so, not 'No RNA spots were found'."""
    cells = _cells([3, 3])
    nuclei = cells.assign(cell_id=cells["label"])
    empty = pd.DataFrame(columns=["t", "label", "cell_id"])
    tracks = cells.assign(track_id=cells["label"])
    said = trust.missing_objects(cells, nuclei, empty, tracks)
    assert any("No RNA spots were found" in n for n in said)
    said = trust.missing_objects(cells, nuclei, empty, tracks, absent=["cytoplasm", "rna"])
    assert not any("No RNA spots were found" in n for n in said)
    assert any("channels.rna: null" in n for n in said)
    assert any("merge.cell_expansion_um" in n for n in said)
