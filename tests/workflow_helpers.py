"""Running the workflow from tests: a deployed working directory and Snakemake subprocesses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def make_workdir(root: Path, movies: dict[str, Path], **config_updates) -> Path:
    """A working directory as a user deploys it: ``config/`` with a samples sheet of ``movies``."""
    root.mkdir(parents=True, exist_ok=True)
    # Deployed like snakedeploy does: the whole config/ folder (model configs, btrack JSON...).
    shutil.copytree(REPO / "config", root / "config", dirs_exist_ok=True)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    deep_update(config, config_updates)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rows = "".join(f"{name}\t{path}\n" for name, path in movies.items())
    (root / "config" / "samples.tsv").write_text("batch\tpath\n" + rows)
    return root


STAGE_SNAKEFILE = """
import sys
sys.path.insert(0, {src!r})
from cellspot.layout import batch_file, model_file, summary_file
from cellspot.smk import rule_code
from cellspot.smk import scaled_mem, without_resources
BATCHES = {batches!r}
processed_elsewhere = lambda: []  # noqa: E731 - no batch outside BATCHES
TARGETS = []
batch_truth = lambda wildcards: ""  # no simulated truth
wildcard_constraints:
    batch="|".join(BATCHES)
{upstream}
include: {rules!r}
rule all:
    default_target: True
    input: [t.format(batch=b) for t in TARGETS for b in BATCHES]
"""

# The outputs of upstream rules that the stages run alone here take as input
# (rules.<upstream>.output.<key>): rule -> key -> (layout name, its fields).
UPSTREAM = {
    "ingest": {"zarr": ("raw", {})},
    "preprocess": {"zarr": ("preprocessed", {}), "drift_csv": ("drift_csv", {})},
    "merge": {"cells": ("labels", {"name": "cells"}), "nuclei": ("labels", {"name": "nuclei"}),
              "cell_table": ("table", {"name": "cells"}),
              "nucleus_table": ("table", {"name": "nuclei"}),
              "spot_table": ("table", {"name": "spots"})},
    "track": {"cell_tracks": ("table", {"name": "cell_tracks"}),
              "spot_tracks": ("table", {"name": "spot_tracks"}),
              "tracked_labels": ("labels", {"name": "cells_tracked"}), "ctc": ("ctc", {})},
}


def upstream_rules(*names: str) -> str:
    """Stand-ins for upstream rules: outputs only, which the test has prepared (see
    :func:`prepare_upstream`), so Snakemake never runs them."""
    from cellspot.layout import BATCH_FILES

    text = ""
    for name in names:
        text += f"rule {name}:\n    output:\n"
        for key, (file, fields) in UPSTREAM[name].items():
            args = ", ".join([repr(file)] + [f"{k}={v!r}" for k, v in fields.items()])
            path = f"batch_file({args})"
            if BATCH_FILES[file].endswith((".zarr", "ctc")):
                path = f"directory({path})"
            text += f"        {key}={path},\n"
    return text


def prepare_upstream(workdir: Path, batches: list[str], *names: str) -> None:
    """Placeholders for the upstream outputs a test did not write (the stand-in rules'
    outputs must all exist, or Snakemake would try to run them)."""
    from cellspot.layout import BATCH_FILES, batch_file

    for batch in batches:
        for name in names:
            for file, fields in UPSTREAM[name].values():
                path = workdir / batch_file(file, batch=batch, **fields)
                if path.exists():
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                if BATCH_FILES[file].endswith((".zarr", "ctc")):
                    path.mkdir()
                else:
                    path.touch()


def stage_snakefile(rules: str, batches: list[str], upstream: tuple[str, ...] = ()) -> str:
    """A minimal Snakefile around one stage's rules (what common.smk provides, and stand-ins
    for the ``upstream`` rules it takes input from), to run a stage on prepared inputs without
    the stages before it."""
    return STAGE_SNAKEFILE.format(src=str(REPO / "src"), batches=list(batches),
                                  rules=str(REPO / "workflow" / "rules" / rules),
                                  upstream=upstream_rules(*upstream))


def deep_update(config: dict, updates: dict) -> dict:
    """Merge ``updates`` into ``config`` recursively, as Snakemake merges config files."""
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            deep_update(config[key], value)
        else:
            config[key] = value
    return config


def update_config(workdir: Path, **updates) -> None:
    path = workdir / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    deep_update(config, updates)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1800,
              cores: int = 2) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's Snakefile in ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", str(cores), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n"
                             f"{proc.stderr[-10000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs a dry run would execute, by rule: the 'Job stats' table of ``snakemake -n``."""
    proc = snakemake(workdir, "-n", *args)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m or m.group(1) == "total":
            break
        jobs[m.group(1)] = int(m.group(2))
    return jobs


def run_nightly(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """scripts/nightly.sh on ``workdir`` with the local profile."""
    env = {**os.environ, "CELLSPOT_WORKDIR": str(workdir), "CELLSPOT_PROFILE": "profiles/local"}
    return subprocess.run(["bash", str(REPO / "scripts" / "nightly.sh"), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def copy_movie(src: Path, dst_dir: Path, name: str) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / name
    shutil.copy(src, dst)
    return dst
