"""The nightly wrapper: one run at a time, failing batches reported, the rest processed."""

import fcntl

from workflow_helpers import copy_movie, make_workdir, run_nightly


def test_second_run_does_not_start_while_one_is_active(tmp_path):
    wd = make_workdir(tmp_path, {})
    (wd / "results" / "nightly").mkdir(parents=True)
    with open(wd / "results" / "nightly" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run in progress
        proc = run_nightly(wd)
    assert proc.returncode == 75 and "another nightly run is active" in proc.stderr


def test_failing_batch_is_reported_and_others_processed(tmp_path, small_movie_files):
    good = copy_movie(small_movie_files / "movie.ome.tif", tmp_path / "inbox", "good.ome.tif")
    bad = tmp_path / "inbox" / "bad.ome.tif"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    for movie in (good, bad):
        (movie.parent / (movie.name + ".done")).write_text("")
    copy_movie(good, tmp_path / "inbox", "copying.ome.tif")  # no marker yet: left alone
    wd = make_workdir(tmp_path, {}, samples="", inbox=str(tmp_path / "inbox"), inbox_marker=".done")
    proc = run_nightly(wd, "results/good/raw.ome.zarr", "results/bad/raw.ome.zarr")
    assert proc.returncode == 1, proc.stderr
    status = next((wd / "results" / "nightly").glob("*.status.tsv")).read_text().splitlines()
    rows = {line.split("\t")[0]: line.split("\t") for line in status[1:]}
    assert set(rows) == {"good", "bad"}  # the movie still being copied is not a batch yet
    assert "ingest" in rows["good"][2].split(",")
    assert rows["bad"][1] == "failed" and "truncated or corrupt" in rows["bad"][4]
    assert not (wd / "results" / "copying").exists()
