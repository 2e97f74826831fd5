"""Drift estimation and correction: accuracy on movies with known drift, large drifts, frames
without signal, chunked shifting."""

import logging

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi

from cellspot.register import (
    RegistrationSettings,
    estimate_drift,
    load_binned,
    overlap_ncc,
    registration_binning,
    shift_dask,
    shift_volume,
)


def _drift(df):
    return df[["dz", "dy", "dx"]].to_numpy()


@pytest.fixture(scope="module")
def simulated():
    sim = pytest.importorskip("cellspot.simulate")
    # cells do not move: all motion is drift (moving cells would be registered too)
    cfg = sim.SimulationConfig(n_timepoints=8, shape=(16, 96, 96), n_cells=6, cell_speed=0.0)
    return sim.simulate_movie(cfg, seed=11)


def test_drift_residual_on_simulated_movie(simulated):
    true = simulated.drift[["dz", "dy", "dx"]].to_numpy()
    true = true - true[0]
    assert np.abs(true).max() > 2  # the movie really drifts
    nucleus = simulated.meta.channel_index("nucleus")
    df = estimate_drift(simulated.image, nucleus, RegistrationSettings())
    residual = np.abs(_drift(df) - true)
    assert residual.max() < 0.5, residual
    assert not df["flagged"].any()
    assert df["quality"].iloc[1:].min() > 0.5


def test_corrected_movie_aligns_like_the_true_correction(simulated):
    nucleus = simulated.meta.channel_index("nucleus")
    image = simulated.image[:, nucleus].astype(np.float32)
    true = simulated.drift[["dz", "dy", "dx"]].to_numpy()
    true = true - true[0]
    est = _drift(estimate_drift(image[:, None], 0, RegistrationSettings()))
    inner = (slice(3, 13), slice(12, 84), slice(12, 84))  # away from the zero-filled borders

    def ncc_to_first(frames):
        return np.array([np.corrcoef(frames[0][inner].ravel(), f[inner].ravel())[0, 1]
                         for f in frames])

    ours = ncc_to_first([shift_volume(image[t], d) for t, d in enumerate(est)])
    ideal = ncc_to_first([shift_volume(image[t], d) for t, d in enumerate(true)])
    raw = ncc_to_first(image)
    assert np.all(ours >= ideal - 0.005), (ours, ideal)
    assert np.mean(ours[1:]) > np.mean(raw[1:]) + 0.03


def _scene(rng, shape=(16, 64, 64), pad=(8, 40, 40)):
    big = tuple(s + 2 * p for s, p in zip(shape, pad))
    vol = np.zeros(big, np.float32)
    pts = rng.integers(0, big, size=(int(np.prod(big) / 1500), 3))
    vol[tuple(pts.T)] = 1.0
    vol = ndi.gaussian_filter(vol, (1.2, 2.5, 2.5))
    return vol / vol.max() * 1000, pad


def _movie(rng, drifts, shape=(16, 64, 64)):
    scene, pad = _scene(rng, shape)
    frames = []
    for d in drifts:
        moved = ndi.shift(scene, d, order=3)
        crop = tuple(slice(p, p + s) for p, s in zip(pad, shape))
        frames.append(rng.poisson(np.clip(moved[crop], 0, None) + 100.0))
    return np.stack(frames)[:, None].astype(np.uint16)


def test_large_drift_quarter_of_field():
    rng = np.random.default_rng(2)
    # jumps of a quarter of the field in y and x between consecutive frames, 3 px in z
    drifts = np.array([[0, 0, 0], [0.4, 16.3, -15.8], [3.2, 31.6, -16.4], [3.0, 16.1, 0.7]])
    movie = _movie(rng, drifts)
    df = estimate_drift(movie, 0, RegistrationSettings())
    assert not df["flagged"].any()
    assert np.abs(_drift(df) - drifts).max() < 0.5


def test_frames_without_signal_are_flagged(caplog):
    rng = np.random.default_rng(4)
    drifts = np.cumsum(rng.normal(0, 1.0, (7, 3)) * [0.3, 1, 1], axis=0)
    drifts -= drifts[0]
    movie = _movie(rng, drifts)
    movie[2] = 100                                        # a blank frame
    movie[4] = rng.poisson(100.0, movie[4].shape)         # camera noise only
    with caplog.at_level(logging.WARNING):
        df = estimate_drift(movie, 0, RegistrationSettings())
    assert df["flagged"].tolist() == [False, False, True, False, True, False, False]
    est = _drift(df)
    # a flagged frame keeps the last good cumulative shift, not garbage
    np.testing.assert_array_equal(est[2], est[1])
    np.testing.assert_array_equal(est[4], est[3])
    good = ~df["flagged"].to_numpy()
    assert np.abs(est[good] - drifts[good]).max() < 0.5
    assert df.loc[df["flagged"], "quality"].max() < 0.2
    assert "t=2 has no signal" in caplog.text and "t=4 matches t=3 poorly" in caplog.text


def test_first_frame_without_signal_does_not_crash():
    rng = np.random.default_rng(5)
    drifts = np.array([[0, 0, 0], [0, 0, 0], [0.5, 2.0, -1.5], [0.5, 3.0, 1.0]])
    movie = _movie(rng, drifts)
    movie[0] = 0
    df = estimate_drift(movie, 0, RegistrationSettings())
    assert df["flagged"].tolist() == [True, False, False, False]
    # drift is then relative to the first frame with signal (t=1)
    assert np.abs(_drift(df)[1:] - drifts[1:]).max() < 0.5


def test_downsampled_estimate_is_in_full_resolution_pixels():
    rng = np.random.default_rng(6)
    drifts = np.array([[0, 0, 0], [1.0, 4.6, -3.4], [1.4, 7.0, -1.0]])
    movie = _movie(rng, drifts)
    df = estimate_drift(movie, 0, RegistrationSettings(downsample=(1, 2, 2)))
    assert np.abs(_drift(df) - drifts).max() < 0.5


def test_automatic_binning_bounds_the_volume():
    assert registration_binning((16, 512, 512), (1, 1, 1), 2**20) == (1, 2, 2)
    assert registration_binning((16, 512, 512), (1, 1, 1), None) == (1, 1, 1)
    assert registration_binning((64, 64, 64), (2, 1, 1), 2**15) == (2, 2, 2)
    rng = np.random.default_rng(7)
    drifts = np.array([[0, 0, 0], [0.7, -3.6, 2.4], [1.1, -6.2, 5.0]])
    movie = _movie(rng, drifts)
    df = estimate_drift(movie, 0, RegistrationSettings(max_voxels=16 * 32 * 32))
    assert np.abs(_drift(df) - drifts).max() < 0.5
    vol, signal = load_binned(movie, 1, 0, (1, 2, 2))
    want = movie[1, 0].astype(np.float32).reshape(16, 32, 2, 32, 2).mean(axis=(2, 4))
    assert signal and np.allclose(vol, want)


@pytest.mark.parametrize("kw,tol", [
    ({}, 0.15),
    ({"normalization": "none"}, 0.15),
    ({"refine": False}, 0.5),  # upsampled-DFT sub-pixel only: biased by FFT wrap-around
    ({"refine": False, "normalization": "none"}, 0.5),
])
def test_estimator_variants(kw, tol):
    rng = np.random.default_rng(4)
    drifts = np.cumsum(rng.normal(0, 1.0, (5, 3)) * [0.3, 1, 1], axis=0)
    drifts -= drifts[0]
    movie = _movie(np.random.default_rng(1), drifts)
    df = estimate_drift(movie, 0, RegistrationSettings(**kw))
    assert np.abs(_drift(df) - drifts).max() < tol


def test_overlap_ncc():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 20, 20))
    b = np.roll(a, (1, -3, 2), axis=(0, 1, 2))
    assert overlap_ncc(a, b, (1, -3, 2)) == pytest.approx(1.0)
    assert abs(overlap_ncc(a, b, (0, 0, 0))) < 0.2
    assert overlap_ncc(a, np.zeros_like(a), (0, 0, 0)) == 0.0
    assert overlap_ncc(a, b, (0, 25, 0)) == 0.0


@pytest.mark.parametrize("order", [1, 3])
def test_chunked_shift_equals_whole_volume(order):
    rng = np.random.default_rng(1)
    movie = ndi.gaussian_filter(rng.random((3, 14, 26, 22)), (0, 1, 1, 1)).astype(np.float32)
    shifts = np.array([[0, 0, 0], [2.3, -4.6, 1.2], [-1.7, 3.1, -6.5]])
    got = shift_dask(da.from_array(movie, chunks=(1, 4, 9, 8)), shifts, order).compute()
    for t in range(3):
        want = shift_volume(movie[t], shifts[t], order)
        assert np.abs(got[t] - want).max() < 1e-5 * float(np.ptp(want))
    # content moves back: the shifted frame matches a frame drawn at p + d
    assert np.allclose(shift_volume(movie[0], (0, 0, 2), 1)[:, :, :-2], movie[0][:, :, 2:])


def test_drift_residual_on_the_standard_demo_movie(demo_movie):
    """The default movie: cells move and divide, the sample drifts; drift residual < 0.5 px."""
    true = demo_movie.drift[["dz", "dy", "dx"]].to_numpy()
    df = estimate_drift(demo_movie.image, demo_movie.meta.channel_index("nucleus"),
                        RegistrationSettings())
    residual = np.abs(_drift(df) - true)
    assert residual.max() < 0.5, residual
