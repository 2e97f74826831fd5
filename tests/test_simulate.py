import numpy as np
import pandas as pd
import tifffile

from cellspot.simulate import SimulationConfig, load_truth, simulate_movie


def test_shape_dtype_and_channels(small_movie):
    m = small_movie
    assert m.image.shape == (4, 3, 16, 96, 96) and m.image.dtype == np.uint16
    assert m.meta.channel_names == ("nucleus", "cytoplasm", "rna")
    assert m.cells.shape == m.nuclei.shape == (4, 16, 96, 96)


def test_same_seed_same_movie_other_seed_differs():
    cfg = SimulationConfig(n_timepoints=2, shape=(8, 48, 48), n_cells=2)
    a, b, c = simulate_movie(cfg, 3), simulate_movie(cfg, 3), simulate_movie(cfg, 4)
    assert np.array_equal(a.image, b.image) and a.spots.equals(b.spots)
    assert not np.array_equal(a.image, c.image)


def test_nuclei_inside_their_cells_and_identity_over_time(demo_movie):
    m = demo_movie
    nuc = m.nuclei > 0
    assert np.array_equal(m.nuclei[nuc], m.cells[nuc])  # a nucleus carries its cell's id
    lin = m.lineage.set_index("cell_id")
    for t in range(m.cells.shape[0]):
        ids = set(np.unique(m.cells[t])) - {0}
        alive = set(lin.index[(lin.t_start <= t) & (lin.t_end >= t)])
        assert ids <= alive
    # At least one division: two daughters with the same parent, born the frame after it ends.
    daughters = m.lineage[m.lineage.parent_id > 0]
    assert len(daughters) >= 2
    parent = lin.loc[daughters.parent_id.iloc[0]]
    assert (daughters.t_start == parent.t_end + 1).all()


def test_spots_subpixel_and_in_their_compartment(demo_movie):
    s = demo_movie.spots
    assert len(s) > 100
    frac = s[["z", "y", "x"]].to_numpy() % 1
    assert np.std(frac) > 0.2  # positions are not on the grid
    idx = np.round(s[["z", "y", "x"]].to_numpy()).astype(int)
    cell_at = demo_movie.cells[s.t, idx[:, 0], idx[:, 1], idx[:, 2]]
    assert np.array_equal(cell_at, s.cell_id)
    assert set(s.compartment) <= {"nucleus", "cytoplasm", "outside"}
    assert (s.compartment == "nucleus").mean() > 0.15
    # Spots keep their identity over time (one row per spot and timepoint).
    assert not s.duplicated(["t", "spot_id"]).any()
    assert s.groupby("spot_id").t.nunique().max() == demo_movie.image.shape[0]


def test_drift_is_visible_in_the_raw_image(demo_movie):
    """The raw nuclear channel at t is the sample frame shifted by drift[t]."""
    from skimage.registration import phase_cross_correlation

    m = demo_movie
    t = m.image.shape[0] - 1
    d = m.drift.loc[t, ["dz", "dy", "dx"]].to_numpy()
    assert np.abs(d).max() > 1.0
    shift, *_ = phase_cross_correlation(m.image[t, 0].astype(float),
                                        (m.nuclei[t] > 0).astype(float), upsample_factor=10,
                                        normalization=None)
    assert np.allclose(shift, d, atol=0.5)


def test_noise_background_and_vignetting(demo_movie):
    rna = demo_movie.image[0, 2].astype(float)
    bg = rna[demo_movie.cells[0] == 0]
    assert bg.std() > 3  # shot + read noise
    center = rna[:, 70:90, 70:90][demo_movie.cells[0][:, 70:90, 70:90] == 0]
    corner = rna[:, :12, :12][demo_movie.cells[0][:, :12, :12] == 0]
    assert center.mean() > corner.mean()  # uneven illumination


def test_written_ome_tiff_has_physical_metadata(small_movie_files, small_movie):
    with tifffile.TiffFile(small_movie_files / "movie.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].axes == "TCZYX"
        xml = tif.ome_metadata
    assert 'PhysicalSizeZ="0.5"' in xml and 'TimeIncrement="60.0"' in xml
    assert 'Name="rna"' in xml
    truth = load_truth(small_movie_files)
    assert np.array_equal(truth["cells"], small_movie.cells)
    pd.testing.assert_frame_equal(truth["lineage"], small_movie.lineage)


def test_empty_movies_have_empty_truth():
    for cfg in (SimulationConfig(n_timepoints=2, shape=(4, 32, 32), n_cells=0),
                SimulationConfig(n_timepoints=2, shape=(4, 32, 32), n_cells=1,
                                 spots_per_cell=(0, 0))):
        m = simulate_movie(cfg, 0)
        assert len(m.spots) == 0 and m.image.shape == (2, 3, 4, 32, 32)


def test_cell_centres_follow_the_labels(demo_movie):
    merged = demo_movie.cell_centres.merge(demo_movie.cell_table, on=["t", "cell_id"])
    # Label centroids sit near the true centres (tessellation with neighbours shifts them a bit).
    d = np.hypot(merged.y_x - merged.y_y, merged.x_x - merged.x_y)
    assert np.median(d) < 2.0
