"""Tests of cell and spot tracking (btrack), CTC export and CTC metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellspot import ctc, track
from cellspot.errors import CellspotError
from cellspot_bench.baselines import track_laptrack
from cellspot_bench.ctc_eval import evaluate_ctc, write_ctc_ground_truth
from conftest import btrack_loads

REPO = Path(__file__).resolve().parents[1]
CELL_CONFIG = REPO / "config" / "btrack" / "cell_config.json"
SPOT_CONFIG = REPO / "config" / "btrack" / "spot_config.json"
VS = (1.0, 1.0, 1.0)


pytestmark = pytest.mark.skipif(not btrack_loads(),
                                reason="btrack's libtracker.so does not load on this machine")


# --------------------------------------------------------------------------- toy movies


def blob_movie(n_t=6, shape=(8, 48, 64), divide_at=3, drop=(), radius=3.0):
    """Labels of balls moving along x; ball 1 divides at ``divide_at`` into 3 and 4.

    Returns the (T, Z, Y, X) labels and the CTC lineage. ``drop`` lists (t, id) pairs left
    out (missed detections).
    """
    zz, yy, xx = np.indices(shape)
    labels = np.zeros((n_t, *shape), dtype=np.uint16)
    cells = {1: (4.0, 14.0, 8.0), 2: (4.0, 36.0, 10.0)}
    v = np.array([0.0, 0.0, 2.0])
    lin = {1: [0, n_t - 1, 0], 2: [0, n_t - 1, 0]}
    for t in range(n_t):
        if t == divide_at and 1 in cells:
            c = np.array(cells.pop(1))
            cells[3] = tuple(c + [0, -4.0, 0])
            cells[4] = tuple(c + [0, 4.0, 0])
            lin[1][1] = t - 1
            lin[3] = [t, n_t - 1, 1]
            lin[4] = [t, n_t - 1, 1]
        for cid, c in list(cells.items()):
            c = np.array(c) + (v if t else 0)
            cells[cid] = tuple(c)
            if (t, cid) in drop:
                continue
            r = radius * (0.8 if cid > 2 else 1.0)
            ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r ** 2
            labels[t][ball] = cid
    lineage = pd.DataFrame([(k, *v_) for k, v_ in lin.items()],
                           columns=["cell_id", "t_start", "t_end", "parent_id"])
    return labels, lineage


def score(tmp_path, labels, lineage, tracks, name="res", gt_labels=None):
    write_ctc_ground_truth(tmp_path / "gt", labels if gt_labels is None else gt_labels,
                               lineage)
    track.write_ctc(tmp_path / name, labels, tracks)
    return evaluate_ctc(tmp_path / name, tmp_path / "gt")


# --------------------------------------------------------------------------- configuration


def test_configs_validate_and_bad_config_names_file(tmp_path):
    cell = track.load_tracker_config(CELL_CONFIG)
    spot = track.load_tracker_config(SPOT_CONFIG)
    assert "P_branch" in cell.hypothesis_model.hypotheses
    assert "P_branch" not in spot.hypothesis_model.hypotheses
    assert spot.update_method.name == "APPROXIMATE"
    bad = json.loads(CELL_CONFIG.read_text())
    bad["motion_model"]["R"]["matrix"] = [1, 2, 0, 0, 1, 0, 0, 0, 1]  # not symmetric
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(CellspotError, match="bad.json"):
        track.load_tracker_config(p)
    with pytest.raises(CellspotError, match="nope.json"):
        track.load_tracker_config(tmp_path / "nope.json")


# --------------------------------------------------------------------------- cells


def test_division_is_found_and_scores_perfectly(tmp_path):
    labels, lineage = blob_movie()
    objs = track.objects_from_labels(labels, VS)
    tr = track.track_cells(objs, CELL_CONFIG, VS, shape=labels.shape[1:])
    per_track = tr.groupby("track_id").agg(parent=("parent", "first"), t0=("t", "min"),
                                           gen=("generation", "first"))
    daughters = per_track[per_track.parent > 0]
    assert len(daughters) == 2 and daughters.parent.nunique() == 1
    assert (daughters.t0 == 3).all() and (daughters.gen == 1).all()
    mother = daughters.parent.iloc[0]
    assert set(tr.loc[tr.track_id == mother, "label"]) == {1}
    r = score(tmp_path, labels, lineage, tr)
    assert r["Valid"] == 1 and r["TRA"] == pytest.approx(1.0) and r["DET"] == pytest.approx(1.0)


def test_division_states_mark_mother_and_daughters_only():
    labels, _ = blob_movie(n_t=6)
    objs = track.objects_from_labels(labels, VS)
    st = track.division_states(objs, VS)
    marked = objs.assign(state=st)[st > 0]
    assert sorted(zip(marked.t, marked.label, marked.state)) == [(2, 1, 2), (3, 3, 3), (3, 4, 3)]
    # daughters as large as their mother are not a division
    assert not track.division_states(objs.assign(volume_um3=100.0), VS).any()


def test_gap_is_closed_and_ctc_splits_it(tmp_path):
    labels, lineage = blob_movie(divide_at=99, drop=[(2, 2)])
    objs = track.objects_from_labels(labels, VS)
    tr = track.track_cells(objs, CELL_CONFIG, VS, shape=labels.shape[1:])
    cell2 = tr[tr.label.isin([2]) | tr.dummy]
    assert cell2.track_id.nunique() == 1, "missed detection must not break the track"
    assert tr.dummy.sum() == 1 and tr.loc[tr.dummy, "t"].tolist() == [2]
    lbep, _ = ctc.tracks_to_lbep(tr)
    assert len(lbep) == 3 and (lbep.parent > 0).sum() == 1  # the gap became parent -> child
    # Ground truth with the same gap, as the CTC format writes it.
    gt_lineage = pd.DataFrame([(1, 0, 5, 0), (2, 0, 1, 0), (3, 3, 5, 2)],
                              columns=["cell_id", "t_start", "t_end", "parent_id"])
    gt = labels.copy()
    gt[3:][gt[3:] == 2] = 3
    r = score(tmp_path, labels, gt_lineage, tr, gt_labels=gt)
    assert r["Valid"] == 1 and r["TRA"] == pytest.approx(1.0)


@pytest.mark.slow
def test_tra_on_simulated_movie_with_divisions(tmp_path):
    from cellspot.simulate import SimulationConfig, simulate_movie

    m = simulate_movie(SimulationConfig(n_timepoints=8, n_cells=8, n_divisions=2,
                                        shape=(12, 128, 128), spots_per_cell=(2, 4)), seed=3)
    objs = track.objects_from_labels(m.cells, m.meta.voxel_size)
    tr = track.track_cells(objs, CELL_CONFIG, m.meta.voxel_size, shape=m.cells.shape[1:])
    n_div = int((m.lineage.parent_id > 0).sum() // 2)
    assert n_div == 2
    r = score(tmp_path, m.cells, m.lineage, tr)
    assert r["Valid"] == 1
    assert r["TRA"] >= 0.95, r
    assert r["DET"] == pytest.approx(1.0)


def test_tra_on_standard_demo_movie(tmp_path, demo_movie):
    m = demo_movie
    assert (m.lineage.parent_id > 0).any(), "the standard movie has a division"
    objs = track.objects_from_labels(m.cells, m.meta.voxel_size)
    tr = track.track_cells(objs, CELL_CONFIG, m.meta.voxel_size, shape=m.cells.shape[1:])
    r = score(tmp_path, m.cells, m.lineage, tr)
    assert r["Valid"] == 1 and r["TRA"] >= 0.95, r


# --------------------------------------------------------------------------- bad input


def _outputs(tmp_path):
    return {"cell_tracks": tmp_path / "out/cell_tracks.parquet",
            "spot_tracks": tmp_path / "out/spot_tracks.parquet",
            "tracked_labels": tmp_path / "out/cells_tracked.zarr",
            "ctc": tmp_path / "out/ctc", "napari": tmp_path / "out/cells.tracks.csv"}


def _batch(tmp_path, labels, spots=None, **settings):
    from cellspot.omezarr import ImageMeta, open_array, write_labels

    meta = ImageMeta(channel_names=(), voxel_size=VS, time_interval=60.0, name="cells")
    write_labels(tmp_path / "cells.zarr", labels, meta, "cells")
    cells = track.objects_from_labels(labels, VS)
    cells.to_parquet(tmp_path / "cells.parquet")
    if spots is None:
        spots = pd.DataFrame({"t": pd.Series(dtype=int), "label": pd.Series(dtype=int),
                              "z": [], "y": [], "x": [], "cell_id": pd.Series(dtype=int)})
    spots.to_parquet(tmp_path / "spots.parquet")
    out = _outputs(tmp_path)
    summary = track.track_batch(tmp_path / "cells.parquet", tmp_path / "cells.zarr", out,
                                track.TrackSettings(cell_config=str(CELL_CONFIG),
                                                    spot_config=str(SPOT_CONFIG), **settings),
                                spots_table=tmp_path / "spots.parquet")
    for p in out.values():
        assert Path(p).exists(), p
    tracked = np.asarray(open_array(out["tracked_labels"]))
    return summary, out, tracked


def _ctc_valid(ctc_dir, n_frames):
    from ctc_metrics.metrics import valid
    from ctc_metrics.utils.filesystem import parse_masks, read_tracking_file
    from ctc_metrics.utils.representations import match

    tracks = read_tracking_file(str(Path(ctc_dir) / "res_track.txt"))
    masks = parse_masks(str(ctc_dir))
    assert len(masks) == n_frames
    labels_comp = [match(m, m)[1] for m in masks]
    return tracks, valid(masks, tracks, labels_comp) if len(tracks) else None


def test_single_timepoint(tmp_path, caplog):
    labels, _ = blob_movie(n_t=1)
    with caplog.at_level("WARNING"):
        summary, out, tracked = _batch(tmp_path, labels)
    assert "single timepoint" in caplog.text
    assert summary["cell_tracks"] == 2 and tracked.shape == labels.shape
    tr = pd.read_parquet(out["cell_tracks"])
    assert len(tr) == 2 and (tr.parent == 0).all()
    tracks, ok = _ctc_valid(out["ctc"], 1)
    assert ok == 1 and len(tracks) == 2


def test_empty_timepoint(tmp_path, caplog):
    labels, _ = blob_movie(n_t=6, divide_at=99)
    labels[2] = 0
    with caplog.at_level("WARNING"):
        summary, out, tracked = _batch(tmp_path, labels)
    assert "no objects at timepoints [2]" in caplog.text
    assert (tracked[2] == 0).all()
    # btrack bridges the empty frame: each ball keeps one id on both sides of it.
    for t in (1, 3):
        assert set(np.unique(tracked[t])) == set(np.unique(tracked[0]))
    tracks, ok = _ctc_valid(out["ctc"], 6)
    assert ok == 1


def test_all_vanish_and_no_objects(tmp_path, caplog):
    labels, _ = blob_movie(n_t=5, divide_at=99)
    labels[2:] = 0
    with caplog.at_level("WARNING"):
        summary, out, tracked = _batch(tmp_path / "a", labels)
    assert "all objects vanish after timepoint 1" in caplog.text
    assert (tracked[2:] == 0).all() and summary["cell_tracks"] == 2
    assert _ctc_valid(out["ctc"], 5)[1] == 1

    caplog.clear()
    with caplog.at_level("WARNING"):
        summary, out, tracked = _batch(tmp_path / "b", np.zeros_like(labels))
    assert "no objects at any timepoint" in caplog.text
    assert summary["cell_tracks"] == 0 and not tracked.any()
    assert pd.read_parquet(out["cell_tracks"]).empty
    assert (Path(out["ctc"]) / "res_track.txt").read_text() == ""
    assert evaluate_ctc(out["ctc"], _gt(tmp_path / "b", labels))["TRA"] == 0.0


def _gt(tmp_path, labels):
    lineage = pd.DataFrame([(1, 0, 1, 0), (2, 0, 1, 0)],
                           columns=["cell_id", "t_start", "t_end", "parent_id"])
    return write_ctc_ground_truth(tmp_path / "gt", labels, lineage)


def test_relabel_consistency(tmp_path):
    labels, _ = blob_movie(n_t=6)
    summary, out, tracked = _batch(tmp_path, labels)
    tr = pd.read_parquet(out["cell_tracks"])
    for row in tr[tr.label > 0].itertuples():
        # the relabelled mask of the track is exactly the merge label's mask
        assert np.array_equal(tracked[row.t] == row.track_id, labels[row.t] == row.label)
    # a cell keeps its id over time: ball 2 never divides
    ids2 = {int(np.unique(tracked[t][labels[t] == 2])[0]) for t in range(6)}
    assert len(ids2) == 1
    # napari files: CSV with track points, graph JSON mapping daughters to their mother
    df = pd.read_csv(out["napari"])
    assert list(df.columns[:5]) == ["track_id", "t", "z", "y", "x"]
    graph = json.loads(Path(str(out["napari"]).replace(".csv", ".graph.json")).read_text())
    assert len(graph) == 2 and len({v[0] for v in graph.values()}) == 1
    assert summary["divisions"] == 1


# --------------------------------------------------------------------------- spots


def moving_cell_spots(n_t=6, speed=2.0, n_spots=40, seed=0):
    """Spots diffusing slowly inside one cell that moves fast along x."""
    rng = np.random.default_rng(seed)
    rel = rng.uniform(-4, 4, (n_spots, 3)) * [0.5, 1, 1]
    rows, cells = [], []
    for t in range(n_t):
        c = np.array([10.0, 30.0, 10.0 + speed * t])
        if t:
            rel = rel + rng.normal(0, 0.05, rel.shape)
        p = c + rel
        cells.append((t, 1, *c))
        rows.append(pd.DataFrame({"t": t, "spot_id": np.arange(n_spots), "z": p[:, 0],
                                  "y": p[:, 1], "x": p[:, 2], "cell_id": 1}))
    spots = pd.concat(rows, ignore_index=True)
    spots["label"] = np.arange(1, len(spots) + 1)
    cell_tracks = pd.DataFrame(cells, columns=["t", "label", "z", "y", "x"]).assign(
        track_id=1, parent=0, root=1, generation=0, dummy=False)
    return spots, cell_tracks


def link_accuracy(tr, truth):
    """Fraction of true frame-to-frame links of spots that the tracks reproduce."""
    m = tr[tr.label > 0].merge(truth[["label", "spot_id"]], on="label").sort_values(
        ["spot_id", "t"])
    same = (m.spot_id.to_numpy()[1:] == m.spot_id.to_numpy()[:-1]) & (np.diff(m.t) == 1)
    ok = same & (m.track_id.to_numpy()[1:] == m.track_id.to_numpy()[:-1])
    return ok.sum() / max(same.sum(), 1)


def test_spots_tracked_in_their_cells_frame():
    spots, cell_tracks = moving_cell_spots()
    in_cell = track.track_spots(spots.drop(columns="spot_id"), SPOT_CONFIG, VS, cell_tracks)
    as_is = track.track_spots(spots.drop(columns="spot_id"), SPOT_CONFIG, VS, None)
    assert link_accuracy(in_cell, spots) > 0.95
    assert link_accuracy(as_is, spots) < 0.5  # 2 px/frame is beyond the spot search radius
    assert (in_cell.cell_track_id[in_cell.label > 0] == 1).all()
    # positions come back in the sample frame
    real = in_cell[in_cell.label > 0].merge(spots[["label", "x"]], on="label",
                                            suffixes=("", "_in"))
    assert np.allclose(real.x, real.x_in)


def test_tiled_spot_tracking_matches_untiled():
    rng = np.random.default_rng(1)
    n, n_t = 600, 4
    pos = rng.uniform(0, 1, (n, 3)) * [6, 60, 60]
    rows = []
    for t in range(n_t):
        if t:
            pos = pos + rng.normal(0, 0.08, pos.shape)
        rows.append(pd.DataFrame({"t": t, "spot_id": np.arange(n), "z": pos[:, 0],
                                  "y": pos[:, 1], "x": pos[:, 2]}))
    spots = pd.concat(rows, ignore_index=True)
    spots["label"] = np.arange(1, len(spots) + 1)
    whole = track.track_spots(spots.drop(columns="spot_id"), SPOT_CONFIG, VS, tile_size=5000)
    tiled = track.track_spots(spots.drop(columns="spot_id"), SPOT_CONFIG, VS, tile_size=100)
    assert link_accuracy(whole, spots) > 0.98
    assert link_accuracy(tiled, spots) > link_accuracy(whole, spots) - 0.01
    assert tiled.track_id.nunique() <= 1.02 * n


def test_laptrack_baseline_same_format(tmp_path):
    labels, lineage = blob_movie()
    objs = track.objects_from_labels(labels, VS)
    lt = track_laptrack(objs, VS, max_distance=6.0)
    assert set(track.TRACK_COLUMNS) <= set(lt.columns)
    r = score(tmp_path, labels, lineage, lt)
    assert r["Valid"] == 1 and r["TRA"] > 0.9
