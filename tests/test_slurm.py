"""The workflow through a real (throwaway, single-node) SLURM cluster.

The cluster is started for the test with ../shared/slurm/start_slurm.sh, which needs root; where
that is impossible the test is skipped with the reason.
"""

import os
import re
import subprocess

import numpy as np
import pytest

from cellspot.omezarr import open_array
from conftest import SHARED
from workflow_helpers import REPO, copy_movie, make_workdir, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STATE = os.environ.get("SLURM_CI_STATE", "/var/spool/slurm-ci")
# A cluster without accounting has no sacct; the executor must poll squeue (see shared notes).
TEST_FLAGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks",
              "2", "--slurm-jobname-prefix", "cellspot-test"]


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


def test_workflow_runs_as_slurm_jobs(slurm_cluster, small_movie_files, small_movie, tmp_path):
    movie = copy_movie(small_movie_files / "movie.ome.tif", tmp_path / "raw", "s1.ome.tif")
    wd = make_workdir(tmp_path, {"s1": movie})
    proc = subprocess.run(
        ["timeout", "-k", "30", "1500", *snakemake_cmd(wd)], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    job_ids = re.findall(r"SLURM (?:run ID|jobid)[^\d]*(\d+)", out) or re.findall(
        r"submitted with SLURM jobid (\d+)", out)
    assert job_ids, f"no SLURM submission in the output:\n{out[-3000:]}"
    jobcomp = open(f"{STATE}/log/jobcomp.txt").read()
    for jid in job_ids:
        assert re.search(rf"JobId={jid} .*JobState=COMPLETED", jobcomp), f"job {jid} not completed"
    assert np.array_equal(open_array(wd / "results" / "s1" / "raw.ome.zarr")[...],
                          small_movie.image)


def snakemake_cmd(workdir):
    import sys

    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            "--profile", str(REPO / "profiles" / "slurm"), "--jobs", "4", *TEST_FLAGS]
