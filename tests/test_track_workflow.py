"""The track rule: config section against schema and settings model, and a Snakemake run.

The lead's Snakefile includes workflow/rules/track.smk after common.smk; here a minimal
Snakefile provides what common.smk would (TARGETS, rule_code, config).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cellspot import track
from cellspot_bench.ctc_eval import evaluate_ctc, write_ctc_ground_truth
from conftest import btrack_loads
from workflow_helpers import prepare_upstream, stage_snakefile

ROOT = Path(__file__).resolve().parents[1]


def _track_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["track"]


def _merge_like_batch(movie, out: Path) -> None:
    """What the merge stage writes, built from the simulated truth."""
    from cellspot.omezarr import write_labels

    vs = movie.meta.voxel_size
    cells = track.objects_from_labels(movie.cells, vs)
    cells["n_nuclei"] = 1
    (out / "tables").mkdir(parents=True)
    cells.to_parquet(out / "tables" / "cells.parquet")
    spots = movie.spots.drop(columns="spot_id").copy()
    spots["label"] = spots.groupby("t").cumcount() + 1
    spots.to_parquet(out / "tables" / "spots.parquet")
    write_labels(out / "labels" / "cells.zarr", movie.cells, movie.meta, "cells")


@pytest.mark.slow
@pytest.mark.skipif(not btrack_loads(), reason="btrack's libtracker.so does not load here")
def test_snakemake_track_rule(tmp_path):
    from cellspot.omezarr import open_array
    from cellspot.simulate import SimulationConfig, simulate_movie

    movie = simulate_movie(SimulationConfig(n_timepoints=5, shape=(12, 96, 96), n_cells=4,
                                            n_divisions=1, spots_per_cell=(5, 8)), seed=4)
    _merge_like_batch(movie, tmp_path / "results" / "b1")
    shutil.copytree(ROOT / "config" / "btrack", tmp_path / "config" / "btrack")
    prepare_upstream(tmp_path, ["b1"], "merge")
    (tmp_path / "Snakefile").write_text(stage_snakefile("track.smk", ["b1"], ("merge",)))
    (tmp_path / "config.json").write_text(json.dumps({"track": _track_config()}))
    smk = [sys.executable, "-m", "snakemake", "all", "--cores", "1", "--configfile",
           "config.json"]
    run = subprocess.run(smk, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]

    res = tmp_path / "results" / "b1"
    tracks = pd.read_parquet(res / "tables" / "cell_tracks.parquet")
    spot_tracks = pd.read_parquet(res / "tables" / "spot_tracks.parquet")
    assert {"track_id", "t", "label", "parent", "root", "generation", "volume_um3"} <= set(
        tracks.columns)
    assert len(spot_tracks) >= len(movie.spots) and "cell_track_id" in spot_tracks
    tracked = open_array(res / "labels" / "cells_tracked.zarr")
    assert tracked.shape == movie.cells.shape
    assert set(np.unique(tracked[...])) - {0} == set(tracks.track_id)
    write_ctc_ground_truth(tmp_path / "gt", movie.cells, movie.lineage)
    assert evaluate_ctc(res / "track" / "ctc", tmp_path / "gt")["TRA"] >= 0.95
    assert (res / "track" / "cells.tracks.graph.json").exists()
    assert "rule track" in (res / "logs" / "track.log").read_text()
    # a second run has nothing to do: every output is complete
    again = subprocess.run(smk + ["-n"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
