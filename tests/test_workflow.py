"""The workflow end to end with the local executor: dry run, run, re-run triggers, bad input."""

import hashlib

import numpy as np
import pytest
import tifffile

from cellspot.omezarr import open_array, read_meta
from workflow_helpers import copy_movie, make_workdir, planned_jobs, snakemake, update_config

# Rules that run once per batch, in DAG order. Stages append here as they are wired in.
PER_BATCH_RULES = ["ingest"]


@pytest.fixture(scope="module")
def workdir(small_movie_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("wf")
    a = copy_movie(small_movie_files / "movie.ome.tif", root / "raw", "a.ome.tif")
    b = copy_movie(small_movie_files / "movie.ome.tif", root / "raw", "b.ome.tif")
    return make_workdir(root, {"a": a, "b": b})


def test_dry_run_lists_every_stage_per_batch(workdir):
    jobs = planned_jobs(workdir)
    assert jobs == {**{r: 2 for r in PER_BATCH_RULES}, "all": 1}


def test_run_writes_ome_zarr_equal_to_input(workdir, small_movie):
    raw = workdir / "raw" / "a.ome.tif"
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    snakemake(workdir)
    for batch in "ab":
        arr = open_array(workdir / "results" / batch / "raw.ome.zarr")
        assert np.array_equal(arr[...], small_movie.image)
        assert read_meta(workdir / "results" / batch / "raw.ome.zarr").name == batch
        assert (workdir / "results" / batch / "logs" / "ingest.log").read_text().count("done") >= 1
        assert (workdir / "results" / batch / "benchmarks" / "ingest.tsv").exists()
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest
    assert planned_jobs(workdir) == {}  # everything is up to date


def test_changed_setting_reruns_that_stage_and_what_follows(workdir):
    update_config(workdir, ingest={"chunk_mb": 4})
    assert planned_jobs(workdir) == {**{r: 2 for r in PER_BATCH_RULES}, "all": 1}
    update_config(workdir, ingest={"chunk_mb": 8})
    assert planned_jobs(workdir) == {}


def test_new_batch_in_inbox_is_the_only_new_work(workdir, small_movie_files):
    inbox = workdir / "inbox"
    copy_movie(small_movie_files / "movie.ome.tif", inbox, "night 1.ome.tif")
    update_config(workdir, inbox=str(inbox))
    try:
        jobs = planned_jobs(workdir)
        assert jobs == {**{r: 1 for r in PER_BATCH_RULES}, "all": 1}
    finally:
        update_config(workdir, inbox="")


def test_corrupt_movie_fails_with_its_name_and_leaves_no_output(tmp_path, small_movie_files):
    good = small_movie_files / "movie.ome.tif"
    bad = tmp_path / "raw" / "bad.ome.tif"
    bad.parent.mkdir()
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    wd = make_workdir(tmp_path, {"bad": bad})
    proc = snakemake(wd, check=False)
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
    proc = snakemake(wd, check=False)
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
