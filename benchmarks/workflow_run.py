"""Run the real workflow on one simulated movie (a helper of the end-to-end benchmarks).

The movie is simulated into ``work/<name>/input`` with its truth folder, named in a samples
sheet with a ``truth`` column, and Snakemake runs the whole workflow there with the local
profile and ``config/demo.yaml`` (the shipped starter models, nothing trained or tuned), so
rule ``truth_check`` scores the run's own outputs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cellspot.layout import batch_dir

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class SimulatedRun:
    name: str
    seed: int
    workdir: Path
    results: Path      # results/<name>/ of the run
    truth: Path        # the simulation's truth folder
    movie: object      # cellspot.simulate.SimulatedMovie
    wall_s: float


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def run_simulated(name: str, settings: dict, seed: int, work: Path) -> SimulatedRun:
    """Simulate ``SimulationConfig(**settings)`` with ``seed`` and run the workflow on it."""
    sys.path.insert(0, str(ROOT / "src"))
    from cellspot.simulate import SimulationConfig, simulate_movie, write_simulation

    wd = Path(work) / name
    shutil.rmtree(wd, ignore_errors=True)
    shutil.copytree(ROOT / "config", wd / "config")
    movie = simulate_movie(SimulationConfig(**settings), seed=seed)
    write_simulation(movie, wd / "input")
    (wd / "config" / "samples.tsv").write_text(
        f"batch\tpath\ttruth\n{name}\t{wd / 'input' / 'movie.ome.tif'}\t{wd / 'input' / 'truth'}\n")
    t0 = time.time()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd),
           "--profile", str(ROOT / "profiles" / "local"), "--configfile",
           str(ROOT / "config" / "demo.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"{name}: workflow failed\n{proc.stderr[-4000:]}")
    return SimulatedRun(name, seed, wd, wd / batch_dir(name), wd / "input" / "truth", movie,
                        wall)


def movie_parser(doc: str, movies, work: str) -> argparse.ArgumentParser:
    """The command line shared by the end-to-end benchmarks: which movies, where, JSON out."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--movies", nargs="+", default=list(movies), choices=list(movies))
    p.add_argument("--work", default=work)
    p.add_argument("--json", help="also write every movie's results here")
    return p
