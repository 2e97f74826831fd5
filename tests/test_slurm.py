"""The workflow through a real (throwaway, single-node) SLURM cluster.

The cluster is started for the test with ../shared/slurm/start_slurm.sh, which needs root; where
that is impossible the test is skipped with the reason.
"""

import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from cellspot.omezarr import open_array
from conftest import SHARED
from workflow_helpers import REPO, copy_movie, make_workdir

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STATE = os.environ.get("SLURM_CI_STATE", "/var/spool/slurm-ci")
# A cluster without accounting has no sacct; the executor must poll squeue (see shared notes).
TEST_FLAGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks",
              "2", "--slurm-jobname-prefix", "cellspot-test",
              # a job asking for more CPUs than the node has would wait forever
              "--max-threads", str(os.cpu_count())]


@pytest.fixture(scope="module")
def slurm_cluster():
    start = SHARED / "slurm" / "start_slurm.sh"
    if os.geteuid() != 0:
        pytest.skip("starting a throwaway SLURM cluster needs root")
    if not start.exists():
        pytest.skip(f"no SLURM start script at {start}")
    env = {**os.environ, "SLURM_CI_FAKE_GPUS": "1"}
    proc = subprocess.run(["bash", str(start)], capture_output=True, text=True, timeout=1200,
                          env=env)
    if proc.returncode != 0:
        pytest.fail(f"start_slurm.sh failed:\n{proc.stderr[-3000:]}")
    yield
    subprocess.run(["bash", str(SHARED / "slurm" / "stop_slurm.sh")], capture_output=True,
                   timeout=300)


def snakemake_cmd(workdir, *targets):
    import sys

    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            "--profile", str(REPO / "profiles" / "slurm"), "--jobs", "4", *TEST_FLAGS, *targets]


def completed_jobs(out: str) -> list[str]:
    """SLURM job ids the executor reported, each checked COMPLETED in SLURM's job log."""
    job_ids = re.findall(r"SLURM jobid (\d+)", out) or re.findall(r"jobid[^\d]{0,20}(\d+)", out)
    assert job_ids, f"no SLURM submission in the output:\n{out[-3000:]}"
    jobcomp = open(f"{STATE}/log/jobcomp.txt").read()
    return [j for j in job_ids if re.search(rf"JobId={j} .*JobState=COMPLETED", jobcomp)]


def test_workflow_runs_as_slurm_jobs(slurm_cluster, small_movie_files, small_movie, tmp_path):
    movie = copy_movie(small_movie_files / "movie.ome.tif", tmp_path / "raw", "s1.ome.tif")
    wd = make_workdir(tmp_path, {"s1": movie})
    target = "results/s1/preprocessed.ome.zarr"
    proc = subprocess.run(["timeout", "-k", "30", "1200", *snakemake_cmd(wd, target)],
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert len(set(completed_jobs(out))) >= 2  # ingest and preprocess ran as SLURM jobs
    assert np.array_equal(open_array(wd / "results" / "s1" / "raw.ome.zarr")[...],
                          small_movie.image)
    assert open_array(wd / target).shape == small_movie.image.shape


def running_job(name_part: str, timeout: float = 600) -> str:
    """Wait until a job of this workflow whose comment names ``name_part`` is RUNNING."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        q = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i %k"], capture_output=True,
                           text=True).stdout
        for line in q.splitlines():
            if name_part in line:
                return line.split()[0]
        time.sleep(1)
    raise AssertionError(f"no running job for {name_part}")


def test_killed_run_and_cancelled_job_resume_without_recomputing(slurm_cluster, demo_movie,
                                                                 tmp_path):
    """kill -9 Snakemake and scancel its running job; the next run finishes the rest only."""
    from cellspot.simulate import write_simulation

    write_simulation(demo_movie, tmp_path / "raw")
    # Non-local means makes preprocessing slow enough to be caught running.
    slow = {"preprocess": {"channels": {"nucleus": {"filters": [
        {"kind": "nl_means", "patch_size": 5, "patch_distance": 6, "h": 0.05}]}}}}
    wd = make_workdir(tmp_path, {"k1": tmp_path / "raw" / "movie.ome.tif"}, **slow)
    target = "results/k1/preprocessed.ome.zarr"
    first = subprocess.Popen(snakemake_cmd(wd, target), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        job = running_job("preprocess")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the Snakemake process dies without cleaning up
        first.wait()
    subprocess.run(["scancel", job], check=True)
    ingested = wd / "results" / "k1" / "raw.ome.zarr"
    stamp = (ingested / ".zattrs").stat().st_mtime_ns
    assert not (wd / target).exists()  # nothing half-written under the output's name

    subprocess.run([*snakemake_cmd(wd), "--unlock"], check=True, capture_output=True)
    proc = subprocess.run(["timeout", "-k", "30", "1200", *snakemake_cmd(wd, target)],
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "rule ingest" not in out  # finished work is not recomputed
    assert (ingested / ".zattrs").stat().st_mtime_ns == stamp
    assert open_array(wd / target).shape == demo_movie.image.shape
