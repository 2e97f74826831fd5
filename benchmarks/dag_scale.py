"""How long Snakemake takes to plan (dry run) a batch of many timepoints, and how many jobs.

    .venv/bin/python benchmarks/dag_scale.py [--timepoints 500] [--per-job 10]

Baseline in the same run: the dry run of a 1-timepoint batch (Snakemake's fixed start-up cost).
The movie is a real OME-TIFF (tiny planes; planning reads only its header).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cellspot.omezarr import ImageMeta  # noqa: E402
from cellspot.simulate import ome_metadata  # noqa: E402
from workflow_helpers import REPO, make_workdir  # noqa: E402


def write_movie(path: Path, t: int) -> Path:
    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), (1.0, 0.2, 0.2), 60.0, path.stem)
    with tifffile.TiffWriter(path, ome=True) as tw:
        planes = (np.zeros((16, 16), np.uint16) for _ in range(t * 3 * 2))
        tw.write(planes, shape=(t, 3, 2, 16, 16), dtype=np.uint16, metadata=ome_metadata(meta))
    return path


def plan(workdir: Path) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "-n", "--cores", "1", "--quiet", "rules"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    total = re.search(r"^total\s+(\d+)", out.stdout + out.stderr, re.M)
    return seconds, int(total.group(1)) if total else 0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--timepoints", type=int, default=500)
    p.add_argument("--per-job", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for t in (1, args.timepoints):
            wd = make_workdir(tmp / f"t{t}", {f"b{t}": write_movie(tmp / f"m{t}.ome.tif", t)},
                              segment={"timepoints_per_job": args.per_job})
            rows.append((t, *plan(wd)))
    print(f"{'timepoints':>10} {'dry-run s':>10} {'jobs':>6}")
    for t, s, n in rows:
        print(f"{t:>10} {s:>10.2f} {n:>6}")
    print(f"planning cost of {args.timepoints} timepoints beyond the fixed start-up: "
          f"{rows[1][1] - rows[0][1]:.2f} s; jobs bounded by grouping "
          f"({args.per_job} timepoints per segmentation job)")


if __name__ == "__main__":
    main()
