"""Shared fixtures: small simulated movies and paths to the repository and shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSPOT_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def small_movie():
    """A small simulated movie (4 timepoints, 16 x 96 x 96, 4 cells, one division)."""
    from cellspot.simulate import SimulationConfig, simulate_movie

    cfg = SimulationConfig(n_timepoints=4, shape=(16, 96, 96), n_cells=4, n_divisions=1)
    return simulate_movie(cfg, seed=1)


@pytest.fixture(scope="session")
def demo_movie():
    """The standard demo movie (seed 0, default settings): what `cellspot demo` processes."""
    from cellspot.simulate import simulate_movie

    return simulate_movie(seed=0)


@pytest.fixture(scope="session")
def small_movie_files(small_movie, tmp_path_factory):
    """``small_movie`` written as ``movie.ome.tif`` + ``truth/``."""
    from cellspot.simulate import write_simulation

    out = tmp_path_factory.mktemp("sim")
    write_simulation(small_movie, out)
    return out


def btrack_loads() -> bool:
    """Whether btrack's compiled tracker library loads on this machine."""
    try:
        from btrack import libwrapper

        libwrapper.get_library()
        return True
    except Exception:
        return False


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test if it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p}")
    return p
