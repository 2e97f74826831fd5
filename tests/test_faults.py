"""The fault matrix: bad input, kills, overlapping runs and resource changes, as a user meets them.

Each test records a row (probe, expected, observed) with the ``fault`` fixture; the table is
printed at the end of the test run. What a probe expects is what the README's "What happens
when ..." table promises. The probes that need a finished workflow run (resource-only changes,
deleted outputs, an archived movie) live in test_workflow.py beside that run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from cellspot.omezarr import (
    ImageMeta,
    OmeZarrError,
    atomic_output,
    create_image,
    open_array,
    read_meta,
)
from workflow_helpers import (
    REPO,
    copy_movie,
    make_workdir,
    planned_jobs,
    run_nightly,
    snakemake,
    update_config,
)

CLI = [sys.executable, "-m", "cellspot.cli"]


def cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def digest(path: Path) -> str:
    """SHA-256 of a file, or of every file under a folder (names and bytes)."""
    h = hashlib.sha256()
    for p in sorted([path] if path.is_file() else path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path.parent)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def last_line(proc) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else ""


def no_traceback(proc) -> bool:
    return "Traceback" not in proc.stdout + proc.stderr


# ------------------------------------------------------------------------ ingest: nothing lost


def test_ingest_into_an_existing_folder_keeps_it(tmp_path, small_movie_files, fault):
    movie = copy_movie(small_movie_files / "movie.ome.tif", tmp_path / "DIR", "movie.ome.tif")
    before = digest(tmp_path / "DIR")
    proc = cli("ingest", movie, tmp_path / "DIR")
    fault("ingest movie.ome.tif DIR (an existing folder holding the movie)",
          "refused, folder intact", f"rc {proc.returncode}: {last_line(proc)}")
    assert proc.returncode == 2 and "replace the movie" in proc.stderr and no_traceback(proc)
    assert digest(tmp_path / "DIR") == before

    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("keep me")
    proc = cli("ingest", movie, other, "--overwrite")
    fault("ingest --overwrite into a folder that is not an OME-Zarr", "refused, folder intact",
          f"rc {proc.returncode}: {last_line(proc)}")
    assert proc.returncode == 2 and "not an OME-Zarr image" in proc.stderr
    assert (other / "a.txt").read_text() == "keep me"


def test_ingest_onto_the_movie_or_the_current_folder_is_refused(tmp_path, small_movie_files,
                                                                 fault):
    here = tmp_path / "here"
    movie = copy_movie(small_movie_files / "movie.ome.tif", here, "m.ome.tif")
    before = digest(here)
    same = cli("ingest", movie, movie)
    cwd = cli("ingest", "m.ome.tif", "../here", cwd=here)
    fault("ingest m.ome.tif m.ome.tif / ingest m.ome.tif ../here (from inside here)",
          "both refused, movie byte-identical",
          f"rc {same.returncode}, {cwd.returncode}: {last_line(cwd)}")
    assert same.returncode == 2 and "would replace the movie" in same.stderr
    assert cwd.returncode == 2 and ("current folder" in cwd.stderr or "movie" in cwd.stderr)
    assert digest(here) == before


def test_ingest_overwrite_replaces_an_ome_zarr(tmp_path, small_movie_files, fault):
    movie = small_movie_files / "movie.ome.tif"
    out = tmp_path / "m.ome.zarr"
    assert cli("ingest", movie, out).returncode == 0
    again = cli("ingest", movie, out)
    forced = cli("ingest", movie, out, "--overwrite")
    fault("ingest onto its own earlier output", "refused without --overwrite, replaced with it",
          f"rc {again.returncode} then {forced.returncode}")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert forced.returncode == 0
    assert read_meta(out).channel_names == ("nucleus", "cytoplasm", "rna")


def test_kill_during_ingest_leaves_nothing_complete_and_rerun_is_identical(tmp_path, fault):
    src = tmp_path / "big.ome.tif"
    T, C, Z, Y, X = 24, 3, 16, 192, 192
    rng = np.random.default_rng(0)
    tifffile.imwrite(src, rng.integers(0, 4000, (T, C, Z, Y, X), dtype=np.uint16),
                     metadata={"axes": "TCZYX"}, ome=True)
    out = tmp_path / "big.ome.zarr"
    proc = subprocess.Popen([*CLI, "ingest", str(src), str(out), "--z-block", "4"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stderr:  # kill once the first timepoint is written
        if "timepoint 1/" in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    leftovers = sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name)
    out_after_kill = out.exists()
    killed_state = f"after kill: output exists={out_after_kill}, temp folders {len(leftovers)}"
    rerun = cli("ingest", src, out)
    reference = tmp_path / "ref.ome.zarr"
    assert cli("ingest", src, reference).returncode == 0
    fault("kill -9 during ingest, then ingest again", "no output until complete; re-run identical, "
          "temp folder removed", f"{killed_state}; re-run rc {rerun.returncode}, temp folders left "
          f"{len([p for p in tmp_path.iterdir() if '.tmp-' in p.name])}")
    assert not out_after_kill  # a killed run leaves nothing that looks complete
    assert rerun.returncode == 0
    assert np.array_equal(open_array(out)[...], open_array(reference)[...])
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


# ------------------------------------------------------------------------ physical metadata


@pytest.mark.parametrize("args,message", [
    (["--time-interval", "0"], "seconds > 0"),
    (["--time-interval", "-30"], "seconds > 0"),
    (["--voxel-size", "0,0.2,0.2"], "finite number > 0"),
    (["--voxel-size", "nan,0.2,0.2"], "finite number > 0"),
    (["--voxel-size=-1,0.2,0.2"], "finite number > 0"),
    (["--voxel-size", "1000000,0.2,0.2"], "is its unit right"),
])
def test_impossible_physical_metadata_is_refused(tmp_path, args, message, fault):
    src = tmp_path / "plain.tif"
    tifffile.imwrite(src, np.zeros((3, 5, 16, 16), np.uint16))
    out = tmp_path / "o.ome.zarr"
    proc = cli("ingest", src, out, "--axes", "TZYX", *args)
    fault(f"declared {' '.join(args)}", "one-line error naming the file, nothing written",
          f"rc {proc.returncode}: {last_line(proc)}")
    assert proc.returncode == 2 and message in proc.stderr and str(src) in proc.stderr
    assert no_traceback(proc) and not out.exists()


def test_a_file_stating_a_zero_time_interval_uses_the_declared_one(tmp_path, fault):
    src = tmp_path / "dt0.ome.tif"
    tifffile.imwrite(src, np.zeros((3, 1, 4, 16, 16), np.uint16), ome=True,
                     metadata={"axes": "TCZYX", "TimeIncrement": 0.0, "PhysicalSizeZ": 1.0,
                               "PhysicalSizeY": 0.2, "PhysicalSizeX": 0.2})
    declared = cli("ingest", src, tmp_path / "a.ome.zarr", "--time-interval", "30")
    undeclared = cli("ingest", src, tmp_path / "b.ome.zarr")
    dt = read_meta(tmp_path / "a.ome.zarr").time_interval
    fault("OME-TIFF stating TimeIncrement 0", "ignored with a warning; the declared interval is "
          "used (else 1 s with a warning)", f"declared 30 -> {dt} s; undeclared rc "
          f"{undeclared.returncode}")
    assert declared.returncode == 0 and dt == 30.0 and "ignoring it" in declared.stderr
    assert undeclared.returncode == 0 and "no time interval" in undeclared.stderr


def test_a_store_with_nan_metadata_is_named(tmp_path, fault):
    store = tmp_path / "s.ome.zarr"
    create_image(store, (1, 1, 2, 4, 4), np.uint16, ImageMeta(("c0",), (1.0, 0.2, 0.2)))
    attrs = json.loads((store / ".zattrs").read_text())
    attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][2] = 0
    (store / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(OmeZarrError) as err:
        read_meta(store)
    fault("OME-Zarr whose z scale is 0", "error naming the store", str(err.value))
    assert str(store) in str(err.value) and "finite number > 0" in str(err.value)
    with pytest.raises(OmeZarrError):
        ImageMeta(("c0",), (math.nan, 1.0, 1.0))  # never written: NaN is not JSON


# ------------------------------------------------------------------------ atomic outputs


def test_a_killed_jobs_temp_folder_is_removed_by_the_next_writer(tmp_path, fault):
    target = tmp_path / "labels.zarr"
    stale = tmp_path / ".labels.zarr.tmp-4242-deadbeef"
    (stale / "0").mkdir(parents=True)
    (stale / "0" / "chunk").write_bytes(b"x" * 1000)
    unrelated = tmp_path / ".other.zarr.tmp-4242-deadbeef"
    unrelated.mkdir()
    with atomic_output(target) as tmp:
        tmp.mkdir()
    fault("temp folder of a killed job, then the job re-runs", "removed; others' kept",
          f"stale exists={stale.exists()}, unrelated exists={unrelated.exists()}")
    assert not stale.exists() and unrelated.exists() and target.is_dir()


def test_a_failing_preprocess_leaves_no_temp_folder(tmp_path, monkeypatch, fault):
    """One task fails while others still write (dask raises at once): nothing may be left."""
    from cellspot import preprocess
    from cellspot.preprocess import run as preprocess_run

    real = preprocess.process_channel_dask

    def failing(x, *args, **kwargs):  # the fault: the last timepoint's task raises, late
        def step(block, block_info=None):
            if block_info[0]["chunk-location"][0] == x.numblocks[0] - 1:
                raise OSError("disk quota exceeded (injected)")
            time.sleep(0.5)  # the other worker is still busy when the failure is raised
            return block
        return real(x, *args, **kwargs).map_blocks(step, dtype=np.float32)

    monkeypatch.setattr(preprocess_run, "process_channel_dask", failing)  # where it is called
    rng = np.random.default_rng(4)
    data = rng.integers(0, 1000, (6, 1, 8, 32, 32)).astype(np.uint16)
    src = tmp_path / "raw.ome.zarr"
    create_image(src, data.shape, data.dtype, ImageMeta(("nucleus",), (1.0, 0.2, 0.2)),
                 chunks=(1, 1, 2, 32, 32))
    open_array(src, mode="r+")[...] = data
    out = tmp_path / "pre.ome.zarr"
    with pytest.raises(OSError, match="injected"):
        preprocess.preprocess_movie(src, out, {"registration": {"enabled": False}}, threads=2)
    time.sleep(1.0)  # a worker left running would write by now
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    fault("preprocessing fails in one dask task while others still write",
          "no output, no temp folder", f"output {out.exists()}, temp folders {leftovers}")
    assert not out.exists() and not leftovers


# ------------------------------------------------------------------------ planning: one bad batch


def test_a_typo_in_the_samples_sheet_skips_only_that_batch(tmp_path, small_movie_files, fault):
    wd = make_workdir(tmp_path, {"good": small_movie_files / "movie.ome.tif",
                                 "typo": tmp_path / "raw" / "mvoie.ome.tif"})
    proc = snakemake(wd, "-n", check=False)
    jobs = planned_jobs(wd)
    status = cli("status", cwd=wd)
    rows = {r.split("\t")[0]: r.split("\t") for r in status.stdout.splitlines()[1:]}
    fault("samples sheet row with a mistyped movie path (and one good batch)",
          "dry run plans the good batch; status says why the other is skipped",
          f"rc {proc.returncode}, ingest jobs {jobs.get('ingest')}, typo: {rows['typo'][1]} "
          f"{rows['typo'][4]}")
    assert proc.returncode == 0 and jobs.get("ingest") == 1
    assert "batch typo skipped" in proc.stdout + proc.stderr
    assert rows["typo"][1] == "failed" and "mvoie.ome.tif: movie not found" in rows["typo"][4]


def test_inbox_files_with_one_batch_name_do_not_block_the_rest(tmp_path, small_movie_files,
                                                               fault):
    inbox = tmp_path / "inbox"
    for name in ("x.tif", "x.tiff", "good.ome.tif"):
        copy_movie(small_movie_files / "movie.ome.tif", inbox, name)
    wd = make_workdir(tmp_path, {}, samples="", inbox=str(inbox))
    proc = snakemake(wd, "-n", check=False)
    jobs = planned_jobs(wd)
    status = cli("status", "--output", wd / "status.tsv", cwd=wd)
    fault("inbox with x.tif and x.tiff (one batch name) beside a good movie",
          "the good batch planned, x rejected by name; status written",
          f"rc {proc.returncode}, ingest jobs {jobs.get('ingest')}, status file "
          f"{(wd / 'status.tsv').exists()}")
    assert proc.returncode == 0 and jobs.get("ingest") == 1
    assert "given to 2 movies" in (wd / "status.tsv").read_text()
    assert status.returncode == 1  # not all complete


def test_declared_voxel_size_is_not_warned_about_and_a_traversal_name_is_rejected(tmp_path, fault):
    plain = tmp_path / "raw" / "plain.tif"
    plain.parent.mkdir()
    tifffile.imwrite(plain, np.zeros((2, 4, 16, 16), np.uint16))
    wd = make_workdir(tmp_path, {})
    (wd / "config" / "samples.tsv").write_text(
        f"batch\tpath\taxes\tvoxel_size\ttime_interval\nplain\t{plain}\tTZYX\t1,0.2,0.2\t30\n"
        f"../up\t{plain}\tTZYX\t1,0.2,0.2\t30\n")
    proc = snakemake(wd, "-n", check=False)
    out = proc.stdout + proc.stderr
    fault("plain TIFF whose voxel size the sheet declares; a row named '../up'",
          "no 'no physical pixel size' warning; '../up' rejected, 'plain' planned",
          f"rc {proc.returncode}, warned {'no physical' in out}, "
          f"{next((ln for ln in out.splitlines() if 'skipped' in ln), '')}")
    assert proc.returncode == 0 and "no physical" not in out
    assert "batch ../up skipped" in out and planned_jobs(wd).get("ingest") == 1


def test_a_fresh_checkout_dry_run_needs_no_demo_movie(tmp_path, fault):
    wd = make_workdir(tmp_path, {})
    (wd / "config" / "samples.tsv").write_text((REPO / "config" / "samples.tsv").read_text())
    proc = snakemake(wd, "-n", check=False)
    out = proc.stdout + proc.stderr
    fault("snakemake -n on a fresh checkout (demo movie not simulated yet)",
          "dry run succeeds, says the demo batch is skipped",
          f"rc {proc.returncode}: {next((ln for ln in out.splitlines() if 'skipped' in ln), '')}")
    assert proc.returncode == 0 and "batch demo skipped" in out


def test_a_mistyped_config_key_is_one_line(tmp_path, small_movie_files, fault):
    wd = make_workdir(tmp_path, {"a": small_movie_files / "movie.ome.tif"})
    update_config(wd, segment={"models": {"cells": {"infer": {"score_treshold": 0.4}}}})
    proc = snakemake(wd, "-n", check=False)
    out = (proc.stdout + proc.stderr).strip().splitlines()
    fault("mistyped key segment.models.cells.infer.score_treshold", "one line naming the setting",
          f"rc {proc.returncode}, {len(out)} line(s): {out[-1] if out else ''}")
    assert proc.returncode != 0 and len(out) <= 3
    assert "segment.models.cells.infer" in out[-1] and "score_treshold" in out[-1]


# ------------------------------------------------------------------------ running jobs


def test_out_of_memory_names_mem_mb(tmp_path, fault):
    from types import SimpleNamespace

    from cellspot.smk import run_step

    def main(_):
        raise MemoryError()

    mem_mb = 100_000_000  # more than any machine running the tests has
    smk = SimpleNamespace(log=[str(tmp_path / "x.log")], rule="merge", wildcards={}, threads=1,
                          resources=SimpleNamespace(mem_mb=mem_mb))
    with pytest.raises(SystemExit) as done:
        run_step(smk, main)
    log = (tmp_path / "x.log").read_text()
    fault("a job runs out of memory (MemoryError), asking for more than the machine has",
          "warned at the start; one line pointing at mem_mb at the end", done.value.code)
    assert f"mem_mb={mem_mb}" in str(done.value.code)
    assert "raise the `mem_mb`" in str(done.value.code)
    assert f"asks for mem_mb={mem_mb} but this machine has" in log


def test_a_job_above_its_mem_mb_is_warned_about(tmp_path, fault):
    """Locally nothing enforces mem_mb: a job that used more than it asked for finishes, and its
    log says the cluster would have killed it."""
    from types import SimpleNamespace

    import numpy as np

    from cellspot.smk import peak_memory_mb, run_step

    def main(_):
        block = np.ones(64 * 2**20, np.uint8)  # 64 MB touched: the peak is above mem_mb=1
        assert block.sum() > 0

    smk = SimpleNamespace(log=[str(tmp_path / "x.log")], rule="merge", wildcards={}, threads=1,
                          resources=SimpleNamespace(mem_mb=1))
    run_step(smk, main)
    log = (tmp_path / "x.log").read_text()
    warned = "above its mem_mb=1: on a cluster it would be killed" in log
    fault("a local job uses more memory than its mem_mb", "finishes; the log warns that a "
          "cluster would kill it", "warned" if warned else "silent")
    assert warned and "rule merge done" in log
    # a job within its request is not warned about
    smk.resources.mem_mb = int(peak_memory_mb()) + 10_000
    run_step(smk, lambda _: None)
    assert "would be killed" not in (tmp_path / "x.log").read_text()


def test_a_2d_image_says_it_is_2d(tmp_path, fault):
    from cellspot.preprocess import PreprocessError, preprocess_movie

    src = tmp_path / "flat.tif"
    tifffile.imwrite(src, np.zeros((64, 64), np.uint16))
    assert cli("ingest", src, tmp_path / "flat.ome.zarr").returncode == 0
    with pytest.raises(PreprocessError) as err:
        preprocess_movie(tmp_path / "flat.ome.zarr", tmp_path / "pre.ome.zarr",
                         yaml.safe_load((REPO / "config" / "config.yaml").read_text())[
                             "preprocess"])
    fault("a single 2D image (YX) through preprocessing", "the message says it is a 2D image",
          str(err.value))
    assert "a 2D image" in str(err.value) and "channel_names" in str(err.value)


def test_a_blank_frame_does_not_shift_the_normalisation(tmp_path, fault):
    from cellspot.preprocess import preprocess_movie

    rng = np.random.default_rng(3)
    movie = rng.integers(200, 1200, (4, 1, 4, 32, 32)).astype(np.uint16)
    meta = ImageMeta(("nucleus",), (1.0, 0.2, 0.2))
    settings = {"channels": {"nucleus": {"normalize": {"low": 1.0, "high": 99.8}}},
                "registration": {"enabled": False}}
    results = []
    for name, data in (("clean", movie), ("dropped", np.concatenate([movie, movie[:1] * 0]))):
        src = tmp_path / f"{name}.ome.zarr"
        create_image(src, data.shape, data.dtype, meta)
        open_array(src, mode="r+")[...] = data
        preprocess_movie(src, tmp_path / f"{name}.pre.ome.zarr", settings)
        results.append(np.asarray(open_array(tmp_path / f"{name}.pre.ome.zarr")[:4]))
    diff = float(np.abs(results[0] - results[1]).max())
    fault("one all-zero frame in a movie", "normalisation unchanged (frame left out, warned)",
          f"max difference of the other frames {diff:.2g}")
    assert diff < 1e-5


# ------------------------------------------------------------------------ runs that overlap


SLEEPER = """
rule all:
    output: "results/.manual-run-marker"
    shell: "sleep 20 && touch {output}"
"""


def test_nightly_never_unlocks_under_a_manual_run(tmp_path, fault):
    wd = make_workdir(tmp_path, {})
    (wd / "manual.smk").write_text(SLEEPER)
    manual = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", "manual.smk", "--cores",
                               "1"], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.time() + 60
        while not any((wd / ".snakemake" / "locks").glob("*")) and time.time() < deadline:
            time.sleep(0.2)
        nightly = run_nightly(wd, timeout=120)
        locks_kept = any((wd / ".snakemake" / "locks").glob("*"))
    finally:
        out, _ = manual.communicate(timeout=120)
    fault("nightly starts while a Snakemake run by hand is active in the folder",
          "nightly exits 75 without unlocking; the manual run finishes",
          f"nightly rc {nightly.returncode} ({last_line(nightly)}); lock kept {locks_kept}; "
          f"manual rc {manual.returncode}")
    assert nightly.returncode == 75 and "Snakemake run is active" in nightly.stderr
    assert locks_kept and manual.returncode == 0, out[-2000:]


def _stale_lock(wd: Path) -> Path:
    """What a killed run leaves: Snakemake's lock on its outputs (relative paths), which the
    nightly's run writes too."""
    locks = wd / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("results/summary/batches.parquet\n")
    return locks


def test_nightly_clears_the_stale_lock_of_a_killed_nightly(tmp_path, fault):
    wd = make_workdir(tmp_path, {}, samples="")
    locks = _stale_lock(wd)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: the killed nightly's shell
    (wd / "results" / "nightly").mkdir(parents=True)
    (wd / "results" / "nightly" / ".owner").write_text(f"{os.uname().nodename} {dead.pid}\n")
    nightly = run_nightly(wd, timeout=300)
    fault("nightly after a killed nightly left Snakemake's lock", "the stale lock is cleared, "
          "the run goes on", f"rc {nightly.returncode}, lock left {any(locks.glob('*'))}")
    assert nightly.returncode == 0, nightly.stderr[-2000:]
    assert "clearing the lock left by a killed nightly" in nightly.stderr
    assert not any(locks.glob("*")) and not (wd / "results" / "nightly" / ".owner").exists()


def test_nightly_leaves_a_lock_it_cannot_prove_stale(tmp_path, fault):
    wd = make_workdir(tmp_path, {}, samples="")
    locks = _stale_lock(wd)  # no owner: a run by hand, maybe alive on another login node
    nightly = run_nightly(wd, timeout=300)
    fault("nightly finds Snakemake's lock not taken by a nightly on this host (a run by hand, "
          "another node)", "exit 75, lock untouched, says how to clear it",
          f"rc {nightly.returncode}: {last_line(nightly)}")
    assert nightly.returncode == 75 and "snakemake --unlock" in nightly.stderr
    assert any(locks.glob("*"))


def test_nightly_without_a_readable_sheet_names_no_status_file(tmp_path, fault):
    wd = make_workdir(tmp_path, {}, samples="config/missing.tsv")
    nightly = run_nightly(wd, timeout=300)
    written = list((wd / "results" / "nightly").glob("*.status.tsv"))
    fault("nightly whose samples sheet is missing", "exit 1; says there is no status table (and "
          "why), names no file it did not write", f"rc {nightly.returncode}: {last_line(nightly)}")
    assert nightly.returncode == 1 and not written
    assert "no status table" in nightly.stderr and "samples sheet not found" in nightly.stderr


def test_nightly_without_its_python_says_so(tmp_path, fault, monkeypatch):
    """A nightly on a machine where setup was not run (no .venv) says so; it used to exit 75
    as if a run were active."""
    wd = make_workdir(tmp_path, {})
    monkeypatch.setenv("CELLSPOT_PYTHON", str(tmp_path / "no" / "python"))
    nightly = run_nightly(wd, timeout=60)
    fault("nightly where the cellspot Python is missing", "exit 2 naming it and the setup",
          f"rc {nightly.returncode}: {last_line(nightly)}")
    assert nightly.returncode == 2 and "scripts/setup.sh" in nightly.stderr
    assert not (wd / "results").exists()


# ------------------------------------------------------------------------ kills, end to end


# Per-batch outputs whose content must not depend on where a run was killed.
COMPARED = ["tables/cells.parquet", "tables/nuclei.parquet", "tables/spots.parquet",
            "tables/cell_tracks.parquet", "tables/cell_stats.parquet", "labels/cells.zarr",
            "labels/spots.zarr", "drift.csv"]
KILL_AT = ["preprocess", "segment_infer", "merge", "track", "report"]


def _same_output(a: Path, b: Path) -> bool:
    if a.suffix == ".parquet":
        return pd.read_parquet(a).equals(pd.read_parquet(b))
    if a.suffix == ".zarr":
        return np.array_equal(open_array(a)[...], open_array(b)[...])
    return a.read_text() == b.read_text()


@pytest.mark.slow
def test_kill_9_at_every_stage_then_rerun_matches_an_uninterrupted_run(tmp_path, fault):
    from cellspot.simulate import SimulationConfig, simulate_movie, write_simulation

    # small: two whole runs of the workflow (the reference and the killed one)
    tiny = simulate_movie(SimulationConfig(n_timepoints=3, shape=(8, 64, 64), n_cells=3,
                                           n_divisions=0), seed=5)
    write_simulation(tiny, tmp_path / "sim")
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    runs = {}
    for name in ("reference", "killed"):
        movie = copy_movie(tmp_path / "sim" / "movie.ome.tif", tmp_path / name / "raw", "a.tif")
        runs[name] = make_workdir(tmp_path / name, {"a": movie}, **demo)
    raw = runs["killed"] / "raw" / "a.tif"
    raw_digest = digest(raw)
    snakemake(runs["reference"], timeout=1800)

    wd, killed_in = runs["killed"], []
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(wd),
           "--cores", "2", "--rerun-incomplete"]
    for rule in KILL_AT:
        subprocess.run([*cmd, "--unlock"], capture_output=True, timeout=300)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        logs = wd / "results" / "a" / "logs"
        while proc.poll() is None and not list(logs.glob(f"{rule}*.log")):
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_in.append(rule)
        proc.wait(timeout=60)
    subprocess.run([*cmd, "--unlock"], capture_output=True, timeout=300)
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    res, ref = wd / "results" / "a", runs["reference"] / "results" / "a"
    different = [p for p in COMPARED if not _same_output(res / p, ref / p)]
    temps = [str(p) for p in res.rglob("*") if ".tmp-" in p.name]
    fault(f"kill -9 of the whole run during {', '.join(killed_in)}; then re-run",
          "re-run completes; outputs identical to an uninterrupted run; no temp folders; raw "
          "movie byte-identical", f"rc {final.returncode}, different {different}, temps "
          f"{len(temps)}, raw same {digest(raw) == raw_digest}")
    assert final.returncode == 0, final.stderr[-3000:]
    assert not different and not temps and digest(raw) == raw_digest
    assert planned_jobs(wd) == {}


def test_demo_in_a_folder_that_is_not_a_checkout_is_one_line(tmp_path, fault):
    proc = subprocess.run([str(Path(sys.executable).with_name("cellspot")), "demo", "--directory",
                           str(tmp_path / "nowhere")], capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip().splitlines()
    fault("cellspot demo --directory naming a missing folder", "one line, no traceback",
          f"rc {proc.returncode}, {len(out)} line(s): {out[-1] if out else ''}")
    assert proc.returncode == 2 and len(out) == 1 and "Traceback" not in proc.stderr
    assert "not a cellspot workflow folder" in out[0]
