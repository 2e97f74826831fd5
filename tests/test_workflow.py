"""The workflow end to end with the local executor: dry run, run, re-run triggers, bad input."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from cellspot.omezarr import open_array, read_meta
from workflow_helpers import (
    REPO,
    copy_movie,
    deep_update,
    make_workdir,
    planned_jobs,
    snakemake,
    update_config,
)

# Jobs per batch, per rule, in DAG order (one block of timepoints: segment_infer runs per model).
PER_BATCH = {"ingest": 1, "preprocess": 1, "drift_plot": 1, "segment_infer": 2, "merge": 1,
             "track": 1, "report": 1, "view": 1, "provenance": 1}
# Jobs shared by all batches.
SHARED = {"segment_coco": 2, "segment_train": 2, "summary": 1, "all": 1}
AFTER = {  # what a change of a stage's setting must re-run (per batch), and nothing else
    "preprocess": ["preprocess", "drift_plot", "segment_infer", "merge", "track", "report",
                   "view", "provenance"],
    "merge": ["merge", "track", "report", "view", "provenance"],
    "track": ["track", "report", "view", "provenance"],
}
# The demo's CPU settings plus CPU training: the workflow trains (fine-tunes from the starter
# models) here. Tests check the machinery, not accuracy: a few iterations on a small movie.
CPU_SETTINGS = deep_update(yaml.safe_load((REPO / "config" / "demo.yaml").read_text()),
                           yaml.safe_load((REPO / "config" / "cpu_train.yaml").read_text()))
for _model in ("cells", "spots"):
    CPU_SETTINGS["segment"]["models"][_model]["training_data"]["simulation"] = {
        "n_timepoints": 2, "shape": [8, 96, 96], "n_cells": 4, "n_divisions": 0}
    CPU_SETTINGS["segment"]["models"][_model]["train"].update(
        {"max_iters": 4, "checkpoint_interval": 2, "val_interval": 4, "log_interval": 1})


def expected(n_batches, rules=None, shared=("summary", "all")):
    jobs = {r: k * n_batches for r, k in PER_BATCH.items() if rules is None or r in rules}
    jobs.update({r: SHARED[r] for r in shared})
    return jobs


@pytest.fixture(scope="module")
def workdir(small_movie_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("wf")
    a = copy_movie(small_movie_files / "movie.ome.tif", root / "raw", "a.ome.tif")
    b = copy_movie(small_movie_files / "movie.ome.tif", root / "raw", "b.ome.tif")
    return make_workdir(root, {"a": a, "b": b}, **CPU_SETTINGS)


def test_dry_run_lists_every_stage_per_batch(workdir):
    assert planned_jobs(workdir) == expected(2, shared=SHARED)


@pytest.mark.slow
def test_run_processes_every_batch_to_the_end(workdir, small_movie):
    raw = workdir / "raw" / "a.ome.tif"
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    snakemake(workdir, timeout=3600)
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest  # raw data untouched
    for batch in "ab":
        res = workdir / "results" / batch
        assert np.array_equal(open_array(res / "raw.ome.zarr")[...], small_movie.image)
        assert read_meta(res / "raw.ome.zarr").name == batch
        pre = open_array(res / "preprocessed.ome.zarr")
        assert pre.shape == small_movie.image.shape and pre.dtype == np.float32
        assert set(pd.read_csv(res / "drift.csv").columns) >= {"t", "dz", "dy", "dx", "quality"}
        for table in ("cells", "nuclei", "spots", "cell_tracks", "spot_tracks", "cell_stats"):
            pd.read_parquet(res / "tables" / f"{table}.parquet")  # readable, maybe empty
        assert (res / "report" / "report.html").stat().st_size > 10_000
        assert (res / "track" / "ctc" / "res_track.txt").exists()
        prov = json.loads((res / "provenance.json").read_text())
        assert prov["batch"] == batch and "segment" in prov["config"]
        assert set(prov["checkpoints"]) == {"cells", "spots"}
        for rule in PER_BATCH:
            log = next((res / "logs").glob(f"{rule}*.log"))
            assert "done" in log.read_text(), f"{log} does not say the rule finished"
            assert next((res / "benchmarks").glob(f"{rule}*.tsv"))
    assert planned_jobs(workdir) == {}  # everything is up to date


@pytest.mark.slow
def test_napari_dataset_has_image_and_labels(workdir):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(workdir / "results" / "a" / "a.ome.zarr")))())
    names = {n.metadata.get("name") for n in nodes}
    assert {"cells", "nuclei", "semantic", "spots", "cells_tracked"} <= names
    image = nodes[0]
    assert image.metadata["channel_names"] == ["nucleus", "cytoplasm", "rna"]
    cells = [n for n in nodes if n.metadata.get("name") == "cells"][0]
    assert cells.data[0].shape == (4, 16, 96, 96)


@pytest.mark.slow
@pytest.mark.parametrize("stage,update", [
    ("preprocess", {"preprocess": {"registration": {"upsample_factor": 10}}}),
    ("merge", {"merge": {"iou_threshold": 0.25}}),
    ("track", {"track": {"spot_tile_size": 1000}}),
])
def test_changed_setting_reruns_that_stage_and_what_follows(workdir, stage, update):
    before = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    update_config(workdir, **update)
    try:
        assert planned_jobs(workdir) == expected(2, AFTER[stage])
    finally:
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(before, sort_keys=False))
    assert planned_jobs(workdir) == {}


@pytest.mark.slow
def test_edited_base_model_config_retrains_both_models(workdir):
    """Both model configs inherit config/_base_/maskrcnn_runtime.py: it is a training input."""
    base = workdir / "config" / "_base_" / "maskrcnn_runtime.py"
    text, st = base.read_text(), base.stat()
    base.write_text(text + "\n# edited\n")
    try:
        jobs = planned_jobs(workdir)
        assert jobs.get("segment_train") == 2 and "segment_coco" not in jobs, jobs
    finally:
        base.write_text(text)
        os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert planned_jobs(workdir) == {}


@pytest.mark.slow
def test_new_batch_in_inbox_is_the_only_new_work(workdir, small_movie_files):
    inbox = workdir / "inbox"
    copy_movie(small_movie_files / "movie.ome.tif", inbox, "night 1.ome.tif")
    update_config(workdir, inbox=str(inbox))
    try:  # after the full run: the models exist, only the new batch is planned
        assert planned_jobs(workdir) == expected(1)
    finally:
        update_config(workdir, inbox="")


@pytest.mark.slow
def test_resource_only_changes_rerun_nothing(workdir, fault):
    """Raising mem_mb / runtime / threads (the answer to an OOM kill) must not recompute."""
    before = (workdir / "config" / "config.yaml").read_text()
    update_config(workdir, preprocess={"mem_mb": 64000, "runtime": 600, "threads": 8},
                  merge={"mem_mb": 32000}, track={"runtime": 240}, report={"mem_mb": 9000},
                  segment={"models": {m: {"infer": {"mem_mb": 48000, "threads": 8, "gpu": 0},
                                          "train": {"mem_mb": 64000, "runtime": 2000}}
                                      for m in ("cells", "spots")}})
    try:
        jobs = planned_jobs(workdir)
    finally:
        (workdir / "config" / "config.yaml").write_text(before)
    fault("raise mem_mb / runtime / threads / gpu of every stage after a finished run",
          "nothing re-runs", jobs or "Nothing to be done")
    assert jobs == {}


@pytest.mark.slow
def test_deleted_outputs_are_regenerated_by_their_own_rule(workdir, fault):
    res = workdir / "results" / "a"
    (res / "drift.png").unlink()
    jobs = planned_jobs(workdir)
    snakemake(workdir, "results/a/drift.png")
    fault("delete drift.png", "only the figure is redrawn", jobs)
    assert jobs == {"drift_plot": 1, "all": 1} and (res / "drift.png").is_file()

    table = res / "tables" / "cells.parquet"
    kept = table.with_name("kept.parquet")
    table.rename(kept)
    try:
        jobs = planned_jobs(workdir)
    finally:
        kept.rename(table)
    fault("delete tables/cells.parquet", "merge re-runs (and what follows)", jobs)
    assert jobs.get("merge") == 1
    assert planned_jobs(workdir) == {}


@pytest.mark.slow
def test_an_archived_movie_keeps_its_summary_row(workdir, fault):
    sheet = workdir / "config" / "samples.tsv"
    before = sheet.read_text()
    sheet.write_text("".join(ln for ln in before.splitlines(True) if not ln.startswith("b\t")))
    try:
        jobs = planned_jobs(workdir)
        proc = subprocess.run([sys.executable, "-m", "cellspot.cli", "status"], cwd=workdir,
                              capture_output=True, text=True)
    finally:
        sheet.write_text(before)
    rows = pd.read_csv(workdir / "results" / "summary" / "batches.csv")["batch"].tolist()
    fault("batch b's movie archived (removed from the sheet) after processing",
          "nothing re-runs, b keeps its summary row", f"{jobs or 'Nothing to be done'}; "
          f"summary batches {rows}")
    assert jobs == {} and rows == ["a", "b"] and proc.returncode == 0


def test_corrupt_movie_fails_with_its_name_and_leaves_no_output(tmp_path, small_movie_files):
    good = small_movie_files / "movie.ome.tif"
    bad = tmp_path / "raw" / "bad.ome.tif"
    bad.parent.mkdir()
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    wd = make_workdir(tmp_path, {"bad": bad})
    proc = snakemake(wd, "results/bad/raw.ome.zarr", check=False)
    assert proc.returncode != 0
    log = (wd / "results" / "bad" / "logs" / "ingest.log").read_text()
    assert "bad.ome.tif" in log and "truncated or corrupt" in log
    assert not (wd / "results" / "bad" / "raw.ome.zarr").exists()
    leftovers = [p.name for p in (wd / "results" / "bad").iterdir()]
    assert not [n for n in leftovers if ".tmp-" in n]


def test_mis_shaped_plain_tiff_fails_clearly(tmp_path):
    plain = tmp_path / "raw" / "flat.tif"
    plain.parent.mkdir()
    tifffile.imwrite(plain, np.zeros((6, 16, 16), np.uint16), metadata=None)
    wd = make_workdir(tmp_path, {})
    (wd / "config" / "samples.tsv").write_text(f"batch\tpath\taxes\nflat\t{plain}\tTCZYX\n")
    proc = snakemake(wd, "results/flat/raw.ome.zarr", check=False)
    assert proc.returncode != 0
    log = (wd / "results" / "flat" / "logs" / "ingest.log").read_text()
    assert "flat.tif: the image has 3 dimensions" in log


@pytest.mark.parametrize("update,message", [
    ({"ingest": {"chunk_mb": "big"}}, "'big' is not of type 'number'"),
    ({"ingest": {"chunkmb": 4}}, "'chunkmb' was unexpected"),
    ({"colour": "red"}, "'colour' was unexpected"),
])
def test_config_schema_rejects_bad_keys_by_name(tmp_path, small_movie_files, update, message):
    wd = make_workdir(tmp_path, {"a": small_movie_files / "movie.ome.tif"})
    update_config(wd, **update)
    proc = snakemake(wd, "-n", check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_lint_is_clean(workdir):
    proc = snakemake(workdir, "--lint", "-n")
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_renamed_channels_train_from_simulated_data_by_role(tmp_path, small_movie_files):
    """A movie whose stains have their own names: the simulated training movie is looked up
    by role (nucleus, cytoplasm, rna), not by the user's channel names."""
    sim = {"n_timepoints": 1, "shape": [8, 64, 64], "n_cells": 2, "n_divisions": 0}
    models = {m: {"checkpoint": "", "training_data": {"simulation": sim, "z_step": 4}}
              for m in ("cells", "spots")}
    wd = make_workdir(tmp_path, {"a": small_movie_files / "movie.ome.tif"},
                      channels={"nucleus": "nuclei_DAPI", "cytoplasm": "cytoplasm_stain",
                                "rna": "RNA_spots"},
                      segment={"models": models})
    snakemake(wd, "models/cells/coco", "models/spots/coco")
    for model, n_channels in (("cells", 3), ("spots", 1)):
        train = json.loads((wd / "models" / model / "coco" / "train.json").read_text())
        assert train["annotations"], model
        img = np.load(wd / "models" / model / "coco" / train["images"][0]["file_name"])
        assert img.shape[-1] == n_channels
