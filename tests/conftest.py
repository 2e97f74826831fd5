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


# ------------------------------------------------------------------ the fault matrix (test_faults)
FAULT_MATRIX: list[tuple[str, str, str, str]] = []  # probe, expected, observed, outcome


@pytest.fixture
def fault(request):
    """``fault(probe, expected, observed)``: a row of the fault matrix printed after the run; the
    row's outcome is the test's (so a failing probe shows what was observed)."""
    rows = []

    def record(probe: str, expected: str, observed: str) -> None:
        rows.append((probe, expected, " ".join(str(observed).split())[:160]))

    yield record
    failed = getattr(request.node, "rep_call", None)
    outcome = "FAIL" if failed is not None and failed.failed else "ok"
    FAULT_MATRIX.extend((*row, outcome) for row in rows)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep


def pytest_terminal_summary(terminalreporter):
    if not FAULT_MATRIX:
        return
    tr = terminalreporter
    tr.section("fault matrix (test_faults, test_workflow): probe | expected | observed")
    for probe, expected, observed, outcome in FAULT_MATRIX:
        tr.write_line(f"[{outcome:>4}] {probe} | {expected} | {observed}")
