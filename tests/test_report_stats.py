"""Statistics of the report stage on trajectories with known answers."""

import numpy as np
import pandas as pd
import pytest

from cellspot.report import stats, tables


def test_step_speeds_constant_velocity_with_gap():
    t = np.array([0, 1, 2, 4, 5])
    v = np.array([0.5, -1.0, 2.0])  # µm per frame
    pos = t[:, None] * v
    s = stats.step_speeds(t[::-1], pos[::-1], dt=10.0)  # order must not matter
    assert np.isnan(s[0])
    np.testing.assert_allclose(s[1:], np.linalg.norm(v) / 10.0)


def test_persistence_straight_line_and_random_walk():
    line = np.outer(np.arange(20), [0, 1, 1])
    assert stats.persistence(line) == pytest.approx(1.0)
    assert stats.net_displacement(line) == pytest.approx(19 * np.sqrt(2))
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(size=(2000, 3)), axis=0)
    assert stats.persistence(walk) < 0.2
    assert np.isnan(stats.persistence(np.zeros((5, 3))))


def test_msd_with_gaps_matches_dense_pairs():
    rng = np.random.default_rng(2)
    t = np.array([0, 1, 3, 4, 5, 8])
    pos = rng.normal(size=(6, 3))
    lags, vals, counts = stats.msd(t, pos, max_lag=8)
    for lag, v, n in zip(lags, vals, counts):
        pairs = [(i, j) for i in range(6) for j in range(6) if t[j] - t[i] == lag]
        assert n == len(pairs)
        assert v == pytest.approx(np.mean([np.sum((pos[j] - pos[i]) ** 2) for i, j in pairs]))
    assert 2 not in set(lags) or counts[list(lags).index(2)] == 2


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_diffusion_coefficient_recovers_brownian_d(noise):
    rng = np.random.default_rng(3)
    D, dt, n = 0.02, 2.0, 400  # µm²/s, s
    steps = rng.normal(scale=np.sqrt(2 * D * dt), size=(200, n, 3))
    est = []
    for tr in np.cumsum(steps, axis=1):
        tr = tr + rng.normal(scale=noise, size=tr.shape)
        lags, m, _ = stats.msd(np.arange(n), tr, max_lag=10)
        est.append(stats.diffusion_coefficient(lags, m, dt))
    err = abs(np.mean(est) - D) / D
    print(f"D estimate {np.mean(est):.4f} vs {D} (noise {noise} µm): {100 * err:.1f}% off")
    assert err < 0.05


def test_msd_exponent_directed_vs_diffusive():
    t = np.arange(50)
    directed = np.outer(t, [0.0, 1.0, 0.5])
    lags, m, _ = stats.msd(t, directed, 10)
    assert stats.msd_exponent(lags, m) == pytest.approx(2.0, abs=1e-6)
    rng = np.random.default_rng(4)
    alphas = []
    for _ in range(50):
        walk = np.cumsum(rng.normal(size=(500, 3)), axis=0)
        lags, m, _ = stats.msd(np.arange(500), walk, 10)
        alphas.append(stats.msd_exponent(lags, m))
    assert np.mean(alphas) == pytest.approx(1.0, abs=0.1)


def test_permutation_test_detects_and_does_not_invent_a_shift():
    rng = np.random.default_rng(5)
    pools = [rng.uniform(-2, 8, size=500) for _ in range(20)]
    random_obs = [p[rng.integers(0, len(p), 15)] for p in pools]
    res = stats.permutation_test_groups(random_obs, pools, "mean", 999, seed=1)
    assert res.p_two_sided > 0.01
    close_obs = [np.sort(p)[:15] for p in pools]  # the 15 places nearest the nucleus
    res = stats.permutation_test_groups(close_obs, pools, "mean", 999, seed=1)
    assert res.p_less == pytest.approx(1 / 1000)
    assert res.observed < res.null_mean
    frac = stats.permutation_test_groups(close_obs, pools, "fraction_negative", 999, seed=1)
    assert frac.observed == pytest.approx(1.0) and frac.p_greater == pytest.approx(1 / 1000)
    empty = stats.permutation_test_groups([np.zeros(0)], [np.ones(3)])
    assert np.isnan(empty.observed) and np.isnan(empty.p_two_sided)


def _lineage_tracks():
    # Track 1 from t=0..4 divides into 2 and 3 (t=5..9); btrack-style roots: parent == own id.
    rows = []
    for t in range(5):
        rows.append((1, t, 5.0, 10.0 + t, 10.0, 1, 1, 1, 0))
    for tid, dy in ((2, 1.0), (3, -1.0)):
        for t in range(5, 10):
            rows.append((tid, t, 5.0, 14.0 + dy * (t - 4), 10.0, tid, 1, 1, 1))
    return pd.DataFrame(rows, columns=["track_id", "t", "z", "y", "x", "label", "parent",
                                       "root", "generation"])


def test_cell_track_table_division_and_motion():
    ct = _lineage_tracks()
    out = tables.cell_track_table(ct, voxel_size=(2.0, 0.5, 0.5), dt=60.0).set_index("track_id")
    assert out.loc[1, "divides"] and out.loc[1, "daughters"] == "2,3"
    assert out.loc[1, "division_t"] == 4 and out.loc[1, "parent"] == 0
    assert np.isnan(out.loc[1, "cycle_time_s"])  # birth of track 1 not seen
    assert out.loc[2, "parent"] == 1 and not out.loc[2, "divides"]
    assert out.loc[1, "mean_speed_um_s"] == pytest.approx(0.5 / 60.0)
    assert out.loc[2, "persistence"] == pytest.approx(1.0)
    assert out.loc[1, "lifetime_s"] == pytest.approx(300.0)


def test_cell_timepoint_table_counts_and_speed():
    ct = _lineage_tracks()
    cells = ct[["t", "label", "z", "y", "x"]].assign(volume_um3=100.0)
    nuclei = cells[["t", "label"]].assign(volume_um3=20.0, cell_id=cells["label"])
    spots = pd.DataFrame({
        "t": [0, 0, 0, 0, 5], "label": [1, 2, 3, 4, 1], "z": 0.0, "y": 0.0, "x": 0.0,
        "cell_id": [1, 1, 1, 0, 3],
        "compartment": ["nucleus", "cytoplasm", "cytoplasm", "outside", "nucleus"],
        "distance_to_nucleus_um": [-1.0, 2.0, 4.0, 9.0, -0.5],
    })
    out = tables.cell_timepoint_table(cells, nuclei, spots, ct, (2.0, 0.5, 0.5), 60.0)
    row = out[(out.t == 0) & (out.label == 1)].iloc[0]
    assert (row.rna_total, row.rna_nuclear, row.rna_cytoplasmic) == (3, 1, 2)
    assert row.rna_mean_distance_to_nucleus_um == pytest.approx(5 / 3)
    assert row.nucleus_volume_um3 == 20.0 and np.isnan(row.speed_um_s)
    assert out[(out.t == 1) & (out.label == 1)].speed_um_s.iloc[0] == pytest.approx(0.5 / 60)
    assert out[(out.t == 5) & (out.label == 3)].rna_total.iloc[0] == 1
    assert out.rna_total.sum() == 4


def test_empty_tables_keep_their_columns():
    empty = pd.DataFrame(columns=["t", "label", "z", "y", "x", "volume_um3"])
    out = tables.cell_timepoint_table(empty, empty, empty, empty, (1, 1, 1), 1.0)
    assert list(out.columns) == tables.CELL_TIMEPOINT_COLUMNS and len(out) == 0
    assert list(tables.cell_track_table(empty, (1, 1, 1), 1.0).columns) == tables.CELL_TRACK_COLUMNS


def test_missing_column_is_named():
    with pytest.raises(tables.ReportInputError, match="cell_id"):
        tables.check_columns(pd.DataFrame({"t": [0]}), "spots", "spots.parquet")


def test_vectorised_msd_matches_single_track_functions():
    rng = np.random.default_rng(6)
    ids, ts, ps = [], [], []
    for tid in range(1, 40):
        n = int(rng.integers(2, 25))
        t = np.sort(rng.choice(30, n, replace=False)) if tid % 3 == 0 else np.arange(n) + tid
        ids += [tid] * n
        ts.append(t)
        ps.append(np.cumsum(rng.normal(size=(n, 3)), axis=0))
    t_all, p_all = np.concatenate(ts), np.concatenate(ps)
    perm = rng.permutation(len(t_all))  # input order must not matter
    tracks, lags, vals, counts = stats.msd_many(np.asarray(ids)[perm], t_all[perm],
                                                p_all[perm], max_lag=8)
    d_many = stats.diffusion_many(lags, vals, dt=2.0)
    a_many = stats.exponent_many(lags, vals)
    for k, tid in enumerate(tracks):
        l1, v1, c1 = stats.msd(ts[tid - 1], ps[tid - 1], max_lag=8)
        np.testing.assert_allclose(vals[k, l1 - 1], v1)
        np.testing.assert_array_equal(counts[k, l1 - 1], c1)
        assert np.isnan(np.delete(vals[k], l1 - 1)).all()
        if tid % 3:  # no gaps: the same lags are fitted
            assert d_many[k] == pytest.approx(stats.diffusion_coefficient(l1, v1, 2.0),
                                              nan_ok=True)
            assert a_many[k] == pytest.approx(stats.msd_exponent(l1, v1), nan_ok=True)
