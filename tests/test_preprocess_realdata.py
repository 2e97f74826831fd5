"""Preprocessing on real microscopy (a mouse embryo with 8 nuclei, BBBC050 via QCANet; see
/work/shared/data/README.md): chunked filters and drift recovery on real image statistics."""

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi

from cellspot.preprocess import (
    GaussianFilter,
    NLMeansFilter,
    TopHatFilter,
    apply_filters,
    filter_dask,
)
from cellspot.register import RegistrationSettings, estimate_drift

DATA = Path("/work/shared/data/nuclei3d_qcanet/images_raw/8_cell_stage.tif")
pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"real data not present ({DATA})")
VOXEL = (1.8, 0.8, 0.8)  # anisotropy z:x = 2.18 as in the data's README (absolute scale assumed)


@pytest.fixture(scope="module")
def embryo():
    import tifffile

    vol = tifffile.imread(DATA).astype(np.float32)
    assert vol.shape == (51, 120, 122)
    lo, hi = np.percentile(vol, [1, 99.8])
    return (vol - lo) / (hi - lo)


@pytest.mark.parametrize("filters", [
    [GaussianFilter(sigma_um=1.0)],
    [TopHatFilter(radius_um=4.0)],
    [NLMeansFilter(patch_size=3, patch_distance=2, h=0.1)],
], ids=["gaussian", "tophat", "nl_means"])
def test_chunked_filters_on_real_volume(embryo, filters):
    vol = embryo[10:40, 20:100, 20:100]
    whole = apply_filters(vol, filters, VOXEL)
    chunked = filter_dask(da.from_array(vol, chunks=(7, 30, 25)), filters, VOXEL).compute()
    assert np.abs(chunked - whole).max() < 1e-5 * float(np.ptp(whole))


def test_drift_recovered_on_real_volume(embryo):
    rng = np.random.default_rng(0)
    drifts = np.array([[0, 0, 0], [0.6, 2.3, -1.7], [1.4, 4.1, -0.6], [0.9, 7.4, 2.2]])
    frames = []
    for d in drifts:
        moved = ndi.shift(embryo, d, order=3)[6:45, 12:108, 12:110]
        frames.append(rng.poisson(np.clip(moved, 0, None) * 200 + 20).astype(np.uint16))
    movie = np.stack(frames)[:, None]
    df = estimate_drift(movie, 0, RegistrationSettings())
    residual = np.abs(df[["dz", "dy", "dx"]].to_numpy() - drifts)
    assert not df["flagged"].any()
    assert residual.max() < 0.5, residual
