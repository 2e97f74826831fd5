"""Preprocessing: chunked filters equal whole-volume filters, whole-movie percentiles, the stage
on OME-Zarr paths, and bad input."""

import logging

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from cellspot.omezarr import ImageMeta, create_image, open_array, read_meta
from cellspot.preprocess import (
    ChannelSettings,
    GaussianFilter,
    NLMeansFilter,
    PreprocessError,
    PreprocessSettings,
    RollingBallFilter,
    TopHatFilter,
    apply_filters,
    channel_stats,
    filter_dask,
    filter_halo,
    normalization_params,
    normalize_block,
    preprocess_movie,
    process_channel_dask,
)
from cellspot.register import shift_volume
from workflow_helpers import upstream_rules

VOXEL = (0.5, 0.2, 0.2)
CHANNELS = ("nucleus", "cytoplasm", "rna")


def blobs(shape, n, sigma, amp, rng):
    import scipy.ndimage as ndi

    vol = np.zeros(shape, np.float32)
    pts = rng.integers(0, shape, size=(n, len(shape)))
    vol[tuple(pts.T)] = 1.0
    vol = ndi.gaussian_filter(vol, sigma)
    return vol / vol.max() * amp


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(3)
    vol = blobs((14, 30, 28), 25, (1.0, 2.0, 2.0), 1.0, rng) + rng.normal(0.1, 0.05, (14, 30, 28))
    return vol.astype(np.float32)


FILTERS = {
    "gaussian": [GaussianFilter(sigma_um=(0.6, 0.3, 0.5))],
    "nl_means": [NLMeansFilter(patch_size=3, patch_distance=2, h=0.05)],
    "nl_means_slow": [NLMeansFilter(patch_size=3, patch_distance=2, h=0.05, fast_mode=False)],
    "tophat": [TopHatFilter(radius_um=(1.0, 0.6, 0.6))],
    "rolling_ball": [RollingBallFilter(radius_um=(1.0, 0.6, 0.6), height=0.5)],
    "chain": [GaussianFilter(sigma_um=0.2), TopHatFilter(radius_um=0.8)],
}
CHUNKS = (4, 7, 9)  # small chunks: borders on every axis, some thinner than the halo


def _chunk_borders(shape, chunks):
    """Mask of voxels within 1 voxel of an inner chunk border."""
    mask = np.zeros(shape, bool)
    for ax, (n, c) in enumerate(zip(shape, chunks)):
        for b in range(c, n, c):
            sl = [slice(None)] * len(shape)
            sl[ax] = slice(b - 1, b + 1)
            mask[tuple(sl)] = True
    return mask


@pytest.mark.parametrize("name", list(FILTERS))
def test_chunked_equals_whole_volume(volume, name):
    filters = FILTERS[name]
    whole = apply_filters(volume, filters, VOXEL)
    chunked = filter_dask(da.from_array(volume, chunks=CHUNKS), filters, VOXEL)
    chunked = chunked.compute(scheduler="threads", num_workers=2)
    dyn = float(whole.max() - whole.min())
    assert dyn > 0
    diff = np.abs(chunked - whole)
    border = _chunk_borders(volume.shape, CHUNKS)
    assert diff.max() < 1e-5 * dyn, name
    assert diff[border].max() < 1e-5 * dyn, name
    # the halo matters: without it the borders differ (so the check above can fail)
    hz, hy, hx = filter_halo(filters, VOXEL)
    assert max(hz, hy, hx) > 0
    naive = da.from_array(volume, chunks=CHUNKS).map_blocks(
        lambda b: apply_filters(b, filters, VOXEL), dtype=np.float32).compute()
    assert np.abs(naive - whole)[border].max() > 1e-3 * dyn


def test_chunked_filters_over_time_axis(volume):
    movie = np.stack([volume, volume[::-1], volume * 2])
    filters = FILTERS["chain"]
    got = filter_dask(da.from_array(movie, chunks=(1,) + CHUNKS), filters, VOXEL).compute()
    for t in range(3):
        want = apply_filters(movie[t], filters, VOXEL)
        assert np.abs(got[t] - want).max() < 1e-5 * float(np.ptp(want))


@pytest.mark.parametrize("order", [1, 3])
def test_fused_channel_pass_equals_whole_volume(volume, order):
    """Normalise + filter + shift in one chunked pass (what the stage runs) == whole volumes."""
    movie = np.stack([volume * 1000 + 50, volume[:, ::-1] * 900 + 60, volume[::-1] * 800 + 70])
    shifts = np.array([[0, 0, 0], [2.6, -5.3, 3.2], [-1.4, 2.2, -7.9]])
    norm = (50.0, 1 / 1000.0, 0.0)
    filters = FILTERS["chain"]
    got = process_channel_dask(da.from_array(movie, chunks=(1,) + CHUNKS), norm, filters,
                               VOXEL, shifts, order).compute()
    for t in range(3):
        want = shift_volume(apply_filters(normalize_block(movie[t], *norm), filters, VOXEL),
                            shifts[t], order)
        assert np.abs(got[t] - want).max() < 1e-5 * float(np.ptp(want))


def test_halo_follows_parameters():
    g = GaussianFilter(sigma_um=0.4)  # 0.8 px in z, 2 px in y and x
    assert g.halo(VOXEL) == (3, 8, 8)
    assert TopHatFilter(radius_um=1.0).halo(VOXEL) == (4, 10, 10)
    assert NLMeansFilter(patch_size=5, patch_distance=4).halo(VOXEL) == (7, 7, 7)
    assert filter_halo([g, TopHatFilter(radius_um=1.0)], VOXEL) == (7, 18, 18)


def test_settings_validation():
    s = ChannelSettings.model_validate({"filters": [{"kind": "gaussian", "sigma_um": 0.3},
                                                    {"kind": "tophat", "radius_um": 1}]})
    assert [f.kind for f in s.filters] == ["gaussian", "tophat"]
    with pytest.raises(ValidationError):
        ChannelSettings.model_validate({"filters": [{"kind": "median", "size": 3}]})
    with pytest.raises(ValidationError):
        ChannelSettings.model_validate({"normalize": {"low": 99, "high": 1}})
    with pytest.raises(ValidationError):
        PreprocessSettings.model_validate({"chanels": {}})


def test_resolve_channel_roles():
    s = PreprocessSettings.model_validate({
        "channels": {"nucleus": {}, "rna": {"filters": [{"kind": "tophat", "radius_um": 1}]}},
        "registration": {"channel": "nucleus"}})
    r = s.resolve_channels({"nucleus": "DAPI", "rna": 2}, ["DAPI", "GFP", "Cy5"])
    assert set(r.channels) == {"DAPI", "Cy5"}
    assert r.registration.channel == "DAPI"
    with pytest.raises(PreprocessError, match="index 5"):
        s.resolve_channels({"nucleus": 5}, ["DAPI"])
    # a stain the movie does not have (null) is not processed, and cannot register
    r = s.resolve_channels({"nucleus": "DAPI", "cytoplasm": None, "rna": None}, ["DAPI"])
    assert set(r.channels) == {"DAPI"}
    with pytest.raises(PreprocessError, match=r"registration\.channel .*channels\.nucleus is null"):
        s.resolve_channels({"nucleus": None, "rna": "Cy5"}, ["Cy5"])


# --------------------------------------------------------------------------- percentiles


def test_percentiles_exact_and_chunk_independent():
    rng = np.random.default_rng(0)
    data = rng.gamma(2.0, 300.0, (3, 6, 20, 22)).astype(np.uint16)
    want = np.percentile(data, [0.5, 99.7])
    a = channel_stats(da.from_array(data, chunks=(1, 2, 20, 22)), "c", 0.5, 99.7)
    b = channel_stats(da.from_array(data, chunks=(3, 6, 7, 5)), "c", 0.5, 99.7)
    assert (a.low, a.high) == (b.low, b.high)
    assert a.low == pytest.approx(want[0], abs=1e-9)
    assert a.high == pytest.approx(want[1], abs=1e-9)
    assert (a.vmin, a.vmax) == (data.min(), data.max())


def test_percentiles_float_data():
    rng = np.random.default_rng(1)
    data = rng.normal(5.0, 2.0, (2, 10, 30, 30)).astype(np.float32)
    data[0, 0, 0, :3] = np.nan
    finite = data[np.isfinite(data)]
    want = np.percentile(finite, [1, 99.8])
    st = channel_stats(da.from_array(data, chunks=(1, 3, 30, 30)), "c", 1, 99.8)
    tol = (finite.max() - finite.min()) / 65536
    assert abs(st.low - want[0]) <= tol and abs(st.high - want[1]) <= tol
    assert st.n_nonfinite == 3


def test_normalization_maps_percentiles_to_unit_range():
    data = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    st = channel_stats(da.from_array(data, chunks=(3, 10, 10)), "c", 10, 90)
    off, scale, fill = normalization_params(st, ChannelSettings().normalize.model_copy(
        update={"low": 10, "high": 90}))
    out = normalize_block(data, off, scale, fill)
    assert np.percentile(out, 10) == pytest.approx(0.0, abs=1e-6)
    assert np.percentile(out, 90) == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- the stage on OME-Zarr


def make_movie(tmp_path, image, name="raw.ome.zarr", chunks=None, channels=CHANNELS):
    T, C, Z, Y, X = image.shape
    meta = ImageMeta(tuple(channels), VOXEL, 30.0, "test")
    path = tmp_path / name
    arr = create_image(path, image.shape, image.dtype, meta, chunks=chunks or (1, 1, 4, Y, X))
    arr[...] = image
    return path


def synthetic_movie(rng, T=4, shape=(10, 40, 40), drift_step=1.5):
    """uint16 (T, 3, Z, Y, X): blobs that drift by a known random walk, plus camera noise."""
    import scipy.ndimage as ndi

    pad = (6, 12, 12)
    big = tuple(s + 2 * p for s, p in zip(shape, pad))
    drift = np.zeros((T, 3))
    drift[1:] = np.cumsum(rng.normal(0, drift_step, (T - 1, 3)) * [0.3, 1, 1], axis=0)
    sample = [blobs(big, 30, (1.0, 2.5, 2.5), 800, rng), blobs(big, 15, (1.5, 4, 4), 300, rng),
              blobs(big, 60, (0.8, 1.0, 1.0), 400, rng)]
    crop = tuple(slice(p, p + s) for p, s in zip(pad, shape))
    img = np.zeros((T, 3) + shape, np.uint16)
    for t in range(T):
        for c in range(3):
            moved = ndi.shift(sample[c], drift[t], order=1)[crop]
            img[t, c] = rng.poisson(moved + 100.0)
    return img, drift


SETTINGS = {
    "channels": {
        "nucleus": {"filters": [{"kind": "gaussian", "sigma_um": 0.3}]},
        "cytoplasm": {"normalize": {"low": 2, "high": 99}},
        "rna": {"filters": [{"kind": "gaussian", "sigma_um": 0.15},
                            {"kind": "tophat", "radius_um": 0.8}]},
    },
    "registration": {"channel": "nucleus", "order": 1},
}


def reference_pipeline(image, settings, drift):
    """The stage computed on whole in-memory volumes (the chunked run must equal this)."""
    s = PreprocessSettings.model_validate(settings)
    out = np.zeros(image.shape, np.float32)
    for c, name in enumerate(CHANNELS):
        ch = s.channels.get(name, ChannelSettings())
        lo, hi = np.percentile(image[:, c], [ch.normalize.low, ch.normalize.high])
        for t in range(image.shape[0]):
            v = (image[t, c].astype(np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
            v = apply_filters(v, ch.filters, VOXEL)
            out[t, c] = shift_volume(v, drift[t], s.registration.order)
    return out


@pytest.mark.parametrize("z_chunk", [4, 1])  # 1: thinner than every halo, several batches
def test_preprocess_movie_equals_whole_volume_pipeline(tmp_path, z_chunk):
    rng = np.random.default_rng(5)
    image, true = synthetic_movie(rng)
    src = make_movie(tmp_path, image, chunks=(1, 1, z_chunk) + image.shape[3:])
    out = tmp_path / "pre.ome.zarr"
    drift = preprocess_movie(src, out, SETTINGS, threads=2, drift_csv=tmp_path / "drift.csv",
                             drift_png=tmp_path / "drift.png")
    got = open_array(out)
    assert got.dtype == np.float32 and got.shape == image.shape
    meta = read_meta(out)
    assert meta.channel_names == CHANNELS and meta.voxel_size == VOXEL
    record = meta.extra["preprocess"]["channels"]
    assert record["cytoplasm"]["raw_high"] == pytest.approx(np.percentile(image[:, 1], 99))
    est = drift[["dz", "dy", "dx"]].to_numpy()
    assert np.abs(est - (true - true[0])).max() < 0.5
    want = reference_pipeline(image, SETTINGS, est)
    dyn = float(want.max() - want.min())
    assert np.abs(got[...] - want).max() < 1e-5 * dyn
    table = pd.read_csv(tmp_path / "drift.csv")
    assert list(table.columns) == ["t", "dz", "dy", "dx", "quality", "flagged"]
    assert len(table) == image.shape[0]
    assert (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # raw data untouched, no temporary leftovers
    assert np.array_equal(open_array(src)[...], image)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "drift.csv", "drift.png", "pre.ome.zarr", "raw.ome.zarr"]


@pytest.mark.slow
def test_distributed_scheduler_gives_same_result(tmp_path):
    rng = np.random.default_rng(6)
    image, _ = synthetic_movie(rng, T=2, shape=(8, 24, 24))
    src = make_movie(tmp_path, image)
    settings = dict(SETTINGS)
    preprocess_movie(src, tmp_path / "a.ome.zarr", settings, threads=1)
    preprocess_movie(src, tmp_path / "b.ome.zarr", {**settings, "scheduler": "distributed"},
                     threads=2)
    assert np.array_equal(open_array(tmp_path / "a.ome.zarr")[...],
                          open_array(tmp_path / "b.ome.zarr")[...])


# --------------------------------------------------------------------------- bad input


def _warnings(caplog):
    return " | ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_constant_channel_warns_and_writes_zeros(tmp_path, caplog):
    rng = np.random.default_rng(7)
    image, _ = synthetic_movie(rng, T=3, shape=(8, 32, 32))
    image[:, 1] = 100
    src = make_movie(tmp_path, image)
    with caplog.at_level(logging.WARNING):
        preprocess_movie(src, tmp_path / "pre.ome.zarr", SETTINGS, threads=1)
    assert "'cytoplasm' is constant" in _warnings(caplog)
    out = open_array(tmp_path / "pre.ome.zarr")[...]
    assert np.all(out[:, 1] == 0) and np.isfinite(out).all()
    assert out[:, 0].max() > 0.5


def test_nan_voxels_warn_and_are_filled(tmp_path, caplog):
    rng = np.random.default_rng(8)
    image, _ = synthetic_movie(rng, T=3, shape=(8, 32, 32))
    image = image.astype(np.float32)
    image[1, 0, 3, 5:9, 5:9] = np.nan
    image[2, 2, :, 0, 0] = np.nan
    src = make_movie(tmp_path, image)
    with caplog.at_level(logging.WARNING):
        drift = preprocess_movie(src, tmp_path / "pre.ome.zarr", SETTINGS, threads=1)
    msg = _warnings(caplog)
    assert "'nucleus' has 16 NaN" in msg and "'rna' has 8 NaN" in msg
    out = open_array(tmp_path / "pre.ome.zarr")[...]
    assert np.isfinite(out).all()
    assert not drift["flagged"].any()


def test_saturated_voxels_warn(tmp_path, caplog):
    rng = np.random.default_rng(9)
    image, _ = synthetic_movie(rng, T=2, shape=(8, 32, 32))
    image[:, 2, 4, 10:14, 10:14] = 65535
    src = make_movie(tmp_path, image)
    with caplog.at_level(logging.WARNING):
        preprocess_movie(src, tmp_path / "pre.ome.zarr", SETTINGS, threads=1)
    assert "'rna' has 32 saturated voxels" in _warnings(caplog)
    assert np.isfinite(open_array(tmp_path / "pre.ome.zarr")[...]).all()


def test_missing_channel_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(10)
    image, _ = synthetic_movie(rng, T=2, shape=(6, 24, 24))
    src = make_movie(tmp_path, image[:, :2], channels=CHANNELS[:2])
    with pytest.raises(PreprocessError) as err:
        preprocess_movie(src, tmp_path / "pre.ome.zarr", SETTINGS, threads=1)
    assert "'rna'" in str(err.value) and str(src) in str(err.value)
    assert "nucleus" in str(err.value)  # lists what the movie has
    assert not (tmp_path / "pre.ome.zarr").exists()


# --------------------------------------------------------------------------- config and rule


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_bad_channel_settings_name_the_problem():
    import yaml

    section = yaml.safe_load((REPO / "config/config.yaml").read_text())["preprocess"]
    settings = PreprocessSettings.from_config(section)
    assert settings.registration.channel == "nucleus"
    for bad in ({"filters": [{"kind": "median"}]}, {"filters": [{"kind": "tophat"}]},
                {"normalize": {"low": 1, "hi": 99}}):
        broken = {**section, "channels": {"rna": bad}}
        with pytest.raises(PreprocessError, match="invalid preprocess settings"):
            PreprocessSettings.from_config(broken)


@pytest.mark.slow
def test_snakemake_rule_runs(tmp_path):
    """The rule and its script on a tiny movie, through Snakemake (no conda)."""
    import subprocess
    import sys

    import yaml

    rng = np.random.default_rng(12)
    image, _ = synthetic_movie(rng, T=3, shape=(6, 24, 24))
    (tmp_path / "results/b1").mkdir(parents=True)
    make_movie(tmp_path / "results/b1", image)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["preprocess"]["threads"] = 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"preprocess": config["preprocess"], "channels": config["channels"]}))
    (tmp_path / "Snakefile").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'src')!r})\n"
        "from cellspot.smk import rule_code\n"
        "from cellspot.layout import batch_file\n"
        "TARGETS = []\n"
        "from cellspot.smk import scaled_mem, without_resources\n"
        + upstream_rules("ingest")
        + f"include: {str(REPO / 'workflow/rules/preprocess.smk')!r}\n"
        "rule all:\n    default_target: True\n    input: expand(TARGETS, batch=['b1'])\n")
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config.yaml",
         "--snakefile", "Snakefile", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "results/b1"
    assert open_array(out / "preprocessed.ome.zarr").dtype == np.float32
    assert len(pd.read_csv(out / "drift.csv")) == 3
    log = (out / "logs/preprocess.log").read_text()
    assert "channel 'nucleus': p_low" in log and "rule preprocess done" in log


def test_command_line(tmp_path, caplog):
    from cellspot.preprocess import main

    rng = np.random.default_rng(13)
    image, _ = synthetic_movie(rng, T=2, shape=(6, 24, 24))
    src = make_movie(tmp_path, image)
    assert main([str(src), str(tmp_path / "out"), "--threads", "1"]) == 0
    assert (tmp_path / "out/drift.csv").exists() and (tmp_path / "out/drift.png").exists()
    assert open_array(tmp_path / "out/preprocessed.ome.zarr").shape == image.shape
    # a role mapped to a channel the movie lacks: a clear message, exit status 2
    cfg = tmp_path / "config.yaml"
    cfg.write_text("channels: {nucleus: DAPI}\npreprocess: {channels: {nucleus: {}}}\n")
    with caplog.at_level(logging.ERROR):
        assert main([str(src), str(tmp_path / "out2"), "--config", str(cfg)]) == 2
    assert "['DAPI']" in caplog.text and str(src) in caplog.text


def test_registration_disabled(tmp_path):
    rng = np.random.default_rng(14)
    image, _ = synthetic_movie(rng, T=3, shape=(8, 32, 32))
    src = make_movie(tmp_path, image)
    settings = {**SETTINGS, "registration": {"enabled": False, "channel": "absent"}}
    drift = preprocess_movie(src, tmp_path / "pre.ome.zarr", settings, threads=1)
    assert (drift[["dz", "dy", "dx"]].to_numpy() == 0).all() and not drift["flagged"].any()
    want = reference_pipeline(image, SETTINGS, np.zeros((3, 3)))
    got = open_array(tmp_path / "pre.ome.zarr")[...]
    assert np.abs(got - want).max() < 1e-5 * float(np.ptp(want))
