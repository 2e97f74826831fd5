"""The demo's self-check: a run's outputs against a simulated movie's truth."""

import json

import numpy as np
import pandas as pd
import pytest

from cellspot import omezarr
from cellspot_bench import truth_check
from cellspot_bench.truth_tables import tables_from_truth


def _outputs(movie, tmp_path, drop_cell=None, extra_spots=0):
    """Workflow-shaped outputs made from the truth itself (optionally with errors)."""
    cells = np.asarray(movie.cells).copy()
    if drop_cell is not None:
        cells[cells == drop_cell] = 0
    tb = tables_from_truth(movie)
    spots = tb["spots"]
    if extra_spots:
        rng = np.random.default_rng(0)
        fake = spots.sample(extra_spots, random_state=0).copy()
        fake[["y", "x"]] += rng.uniform(20, 30, (extra_spots, 2))
        fake["cell_id"] = 0
        spots = pd.concat([spots, fake], ignore_index=True)
    meta = movie.meta
    p = {k: tmp_path / f"{k}.zarr" for k in ("cells", "nuclei", "cells_tracked")}
    omezarr.write_labels(p["cells"], cells, meta, "cells")
    omezarr.write_labels(p["nuclei"], np.asarray(movie.nuclei), meta, "nuclei")
    omezarr.write_labels(p["cells_tracked"], cells, meta, "cells_tracked")
    img = omezarr.create_image(tmp_path / "pre.ome.zarr", (1, 3, 1, 4, 4), "float32", meta)
    img[...] = 0
    spots.to_parquet(tmp_path / "spots.parquet")
    tb["cell_tracks"].to_parquet(tmp_path / "cell_tracks.parquet")
    tb["spot_tracks"].to_parquet(tmp_path / "spot_tracks.parquet")
    movie.drift.to_csv(tmp_path / "drift.csv", index=False)
    from cellspot import track

    track.write_ctc(tmp_path / "ctc", cells, tb["cell_tracks"])
    return dict(cells=str(p["cells"]), nuclei=str(p["nuclei"]),
                cells_tracked=str(p["cells_tracked"]), spots=str(tmp_path / "spots.parquet"),
                cell_tracks=str(tmp_path / "cell_tracks.parquet"),
                spot_tracks=str(tmp_path / "spot_tracks.parquet"),
                drift=str(tmp_path / "drift.csv"), image=str(tmp_path / "pre.ome.zarr"),
                ctc_dir=str(tmp_path / "ctc"))


def test_the_truth_scores_perfectly(small_movie, small_movie_files, tmp_path):
    out = _outputs(small_movie, tmp_path)
    s = truth_check.write_check(small_movie_files / "truth", tmp_path / "c.json",
                                tmp_path / "c.csv", tmp_path / "c.png", **out)
    assert s["spots"]["f1"] == 1.0 and s["cell_ap50"] == 1.0 and s["nucleus_ap50"] == 1.0
    assert s["divisions"] == {"true": 1, "found": 1, "missed": 0, "false": 0}
    assert s["tracking"]["TRA"] == pytest.approx(1.0)
    assert s["rna_per_cell"]["mean_abs_error"] == 0.0 and s["rna_per_cell"]["within_10pct"] == 1
    assert max(s["drift_residual_px"].values()) == 0.0
    sp, rna = s["spots"], s["rna_per_cell"]
    assert sp["right_cell"] == 1.0 and sp["right_compartment"] == 1.0
    # the truth table's distance is looked up at the nearest voxel, the check's interpolated
    assert sp["nucleus_distance_error_um"]["median"] < 0.15
    assert rna["cells_only"]["mean_abs_error"] == rna["spots_only"]["mean_abs_error"] == 0.0
    assert rna["within_5pct"] == 1.0 and 0 < rna["complete_cell_timepoints"] <= len(
        pd.read_csv(tmp_path / "c.csv"))
    # label centroids of complete cells follow the simulated centres closely
    assert s["cell_speed"]["tracks"] > 0 and s["cell_speed"]["median_abs_error"] < 0.1
    d = s["rna_diffusion_in_cell"]
    assert d["tracks"]["found"] == d["tracks"]["true"] > 0 and abs(d["error"]) < 0.3
    assert s["tracking"]["LNK"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "c.json").read_text()) == s
    assert (tmp_path / "c.png").stat().st_size > 1000
    rna = pd.read_csv(tmp_path / "c.csv")
    assert list(rna.columns) == truth_check.RNA_COLUMNS and len(rna) > 0
    assert all(isinstance(v, str) for v in truth_check.headline(s).values() if v is not None)


def test_errors_are_counted(small_movie, small_movie_files, tmp_path):
    out = _outputs(small_movie, tmp_path, drop_cell=2, extra_spots=10)
    s, rna = truth_check.check_run(small_movie_files / "truth", **out)
    assert s["spots"]["fp"] == 10 and s["spots"]["fn"] == 0
    assert s["cell_ap50"] < 1.0
    # a lost cell moves its spots out of every cell: the spot-only count still matches the truth
    assert s["rna_per_cell"]["spots_only"]["mean_abs_error"] == 0.0
    assert s["cells_per_frame"]["found"] < s["cells_per_frame"]["true"]
    assert 2 not in set(rna["true_cell"])


def test_misplaced_spots_are_counted(small_movie, small_movie_files, tmp_path):
    out = _outputs(small_movie, tmp_path)
    spots = pd.read_parquet(out["spots"])
    flip = spots.index[spots["compartment"] == "nucleus"][:20]
    spots.loc[flip, "compartment"] = "cytoplasm"
    spots.loc[flip, "distance_to_nucleus_um"] += 2.0
    spots.to_parquet(out["spots"])
    s, _ = truth_check.check_run(small_movie_files / "truth", **out)
    assert s["spots"]["right_compartment"] == pytest.approx(1 - 20 / s["spots"]["tp"])
    assert s["spots"]["right_cell"] == 1.0 and s["spots"]["f1"] == 1.0


def test_wrong_movie_is_named(small_movie, small_movie_files, tmp_path):
    out = _outputs(small_movie, tmp_path)
    other = tmp_path / "other.zarr"
    omezarr.write_labels(other, np.zeros((1, 2, 3, 4), np.uint16), small_movie.meta, "x")
    with pytest.raises(truth_check.InputError, match="not the simulated movie"):
        truth_check.check_run(small_movie_files / "truth", **{**out, "cells": str(other)})
    with pytest.raises(truth_check.InputError, match="not a cellspot simulation truth"):
        truth_check.check_run(tmp_path, **out)
