"""The demo's path: the workflow with the shipped starter models, nothing trained, on a simulated
movie whose truth is declared in the samples sheet; the report shows the run against it."""

import json

import pytest
import yaml

from workflow_helpers import REPO, copy_movie, make_workdir, planned_jobs, snakemake

DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


@pytest.fixture(scope="module")
def demo_dir(small_movie_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    movie = copy_movie(small_movie_files / "movie.ome.tif", root / "input", "movie.ome.tif")
    wd = make_workdir(root, {}, **DEMO)
    (wd / "config" / "samples.tsv").write_text(
        f"batch\tpath\ttruth\nsim\t{movie}\t{small_movie_files / 'truth'}\n")
    return wd


def test_demo_plan_trains_nothing_and_checks_itself(demo_dir):
    jobs = planned_jobs(demo_dir)
    assert "segment_train" not in jobs and "segment_coco" not in jobs, jobs
    assert jobs["segment_infer"] == 2 and jobs["truth_check"] == 1


@pytest.mark.slow
def test_demo_run_reports_accuracy_against_truth(demo_dir):
    snakemake(demo_dir, timeout=1800)
    res = demo_dir / "results" / "sim"
    check = json.loads((res / "report" / "truth_check.json").read_text())
    page = (res / "report" / "report.html").read_text()
    assert "Accuracy against the simulation&#x27;s truth" in page or \
        "Accuracy against the simulation's truth" in page
    print("\n" + json.dumps({k: v for k, v in check.items() if k != "cell_ap50_per_frame"},
                            indent=1))
    # the starter models on a movie no training used: right answers, not just any answer
    assert check["spots"]["f1"] >= 0.8, check["spots"]
    assert check["cell_ap50"] >= 0.7 and check["nucleus_ap50"] >= 0.7, check
    assert check["rna_per_cell"]["mean_abs_error"] <= 0.25, check["rna_per_cell"]
    prov = json.loads((res / "provenance.json").read_text())
    assert all("starter_models" in v["path"] for v in prov["checkpoints"].values()), prov
    assert planned_jobs(demo_dir) == {}


@pytest.mark.slow
def test_a_movie_without_cytoplasm_stain_gets_cells_from_its_nuclei(small_movie, tmp_path):
    """DAPI + smFISH, no cytoplasm stain (channels.cytoplasm: null): the shipped models run on
    what is there, each cell is its grown nucleus, RNA is counted in those cells, and the
    report says how the cells were made."""
    import dataclasses

    import numpy as np
    import tifffile

    from cellspot.simulate import ome_metadata, write_simulation

    sim = write_simulation(small_movie, tmp_path / "sim").parent
    keep = [small_movie.meta.channel_index(c) for c in ("nucleus", "rna")]
    meta = dataclasses.replace(small_movie.meta, channel_names=("DAPI", "smFISH"))
    movie = tmp_path / "input" / "dapi_fish.ome.tif"
    movie.parent.mkdir()
    tifffile.imwrite(movie, np.asarray(small_movie.image)[:, keep], ome=True,
                     photometric="minisblack", metadata=ome_metadata(meta))
    wd = make_workdir(tmp_path / "wd", {}, **DEMO)
    cfg_path = wd / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["channels"] = {"nucleus": "DAPI", "cytoplasm": None, "rna": "smFISH"}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (wd / "config" / "samples.tsv").write_text(f"batch\tpath\ttruth\nb\t{movie}\t{sim / 'truth'}\n")
    snakemake(wd, timeout=1800)
    res = wd / "results" / "b"
    check = json.loads((res / "report" / "truth_check.json").read_text())
    print("\n" + json.dumps({k: v for k, v in check.items() if k != "cell_ap50_per_frame"},
                            indent=1))
    assert check["nucleus_ap50"] >= 0.7, check        # the nuclei, from the nucleus stain alone
    # cells grown 2 µm from them match the simulated cells (cytoplasm ~1.8 µm thick there)
    assert check["cell_ap50"] >= 0.7, check
    assert check["rna_per_cell"]["mean_abs_error"] <= 0.25, check["rna_per_cell"]
    assert check["spots"]["f1"] >= 0.8, check["spots"]
    import pandas as pd

    cells = pd.read_parquet(res / "tables" / "cells.parquet")
    assert len(cells) and (cells["n_nuclei"] == 1).all()
    spots = pd.read_parquet(res / "tables" / "spots.parquet")
    assert (spots["cell_id"] > 0).mean() > 0.5          # RNA counted in the grown cells
    page = (res / "report" / "report.html").read_text()
    assert "no cytoplasm stain" in page and "No RNA spots were found" not in page
