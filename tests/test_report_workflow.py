"""The report rules run under Snakemake on a batch built from simulated truth.

The lead's Snakefile includes workflow/rules/report.smk after common.smk; here a minimal
Snakefile provides what common.smk would (BATCHES, TARGETS, rule_code, config).
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cellspot.report import build
from cellspot.simulate import SimulationConfig, simulate_movie
from cellspot_bench import truth_tables as truth
from workflow_helpers import prepare_upstream, stage_snakefile

ROOT = Path(__file__).resolve().parents[1]


def _config_defaults() -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return {"report": cfg["report"], "channels": cfg.get("channels", {})}


def test_report_env_lists_what_the_scripts_import():
    env = yaml.safe_load((ROOT / "envs" / "report.yaml").read_text())
    names = {d.split("=")[0] for d in env["dependencies"] if isinstance(d, str)}
    for pkg in ("python", "numpy", "pandas", "pyarrow", "scipy", "scikit-image", "matplotlib",
                "zarr", "numcodecs", "pydantic"):
        assert pkg in names, pkg


@pytest.mark.slow
def test_snakemake_report_and_summary(tmp_path):
    movie = simulate_movie(SimulationConfig(n_timepoints=3, shape=(8, 64, 64), n_cells=2,
                                            n_divisions=0), seed=2)
    batches = ["b1", "b2"]
    for b in batches:
        truth.write_batch(movie, tmp_path / "results" / b)
    upstream = ("preprocess", "merge", "track")
    prepare_upstream(tmp_path, batches, *upstream)
    (tmp_path / "Snakefile").write_text(stage_snakefile("report.smk", batches, upstream))
    cfg = _config_defaults()
    cfg["report"]["n_permutations"] = 50
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    smk = [sys.executable, "-m", "snakemake", "all", "--cores", "2", "--configfile",
           "config.json"]
    run = subprocess.run(smk, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    summary = pd.read_parquet(tmp_path / "results/summary/batches.parquet")
    assert summary["batch"].tolist() == batches
    assert (summary["n_cell_tracks"] == len(movie.lineage)).all()
    page = (tmp_path / "results/b1/report/report.html").read_text()
    assert "cellspot report: b1" in page
    # `snakemake --report` collects the figures marked report(...).
    run = subprocess.run(smk + ["--report", "report.zip"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        pngs = [n for n in z.namelist() if n.endswith(".png")]
    assert len(pngs) >= len(build.FIGURES) * len(batches), pngs
