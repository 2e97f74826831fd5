"""Peak memory of the preprocess stage on a movie several times larger than a memory budget.

Writes a synthetic drifting movie (uint16 OME-Zarr, chunks of one timepoint, one channel and a
block of z-slices) of at least ``--factor`` times ``--budget-mb``, runs
:func:`cellspot.preprocess.preprocess_movie` on it in a fresh process and prints that process's
peak resident memory above its resting level after imports, against the budget.

    .venv/bin/python benchmarks/preprocess_memory.py --budget-mb 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from cellspot.omezarr import ImageMeta, create_image

CHILD = r"""
import json, resource, sys, time
import psutil
import dask.array, distributed, matplotlib, scipy.signal, skimage.registration, skimage.restoration  # noqa: F401
from cellspot.preprocess import limit_heap_growth, preprocess_movie
limit_heap_growth()
args = json.loads(sys.argv[1])
base = psutil.Process().memory_info().rss
t0 = time.perf_counter()
preprocess_movie(args["src"], args["dst"], args["settings"], threads=args["threads"],
                 drift_csv=args["csv"])
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
print(json.dumps({"base": base, "peak": peak, "wall": wall}))
"""


def write_movie(path: Path, n_t: int, shape: tuple[int, int, int], z_block: int, seed: int = 0):
    """A drifting 3-channel movie written one timepoint at a time (never whole in memory)."""
    rng = np.random.default_rng(seed)
    pad = 8
    big = tuple(s + 2 * pad for s in shape)
    scene = np.zeros(big, np.float32)
    pts = rng.integers(0, big, size=(int(np.prod(big) / 4000), 3))
    scene[tuple(pts.T)] = 1.0
    scene = ndi.gaussian_filter(scene, (1.0, 2.5, 2.5))
    scene *= 600.0 / scene.max()
    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.25, 0.25), 60.0, "membench")
    arr = create_image(path, (n_t, 3) + shape, np.uint16, meta, chunks=(1, 1, z_block) + shape[1:])
    drift = np.zeros(3)
    for t in range(n_t):
        if t:
            drift += rng.normal(0, 1.0, 3) * [0.2, 1.0, 1.0]
        moved = ndi.shift(scene, drift, order=1)[tuple(slice(pad, pad + s) for s in shape)]
        for c in range(3):
            arr[t, c] = rng.poisson(moved * (1.0, 0.5, 0.3)[c] + 100.0).astype(np.uint16)
    return arr


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget-mb", type=float, default=32.0)
    p.add_argument("--factor", type=float, default=4.0, help="movie size / budget (at least)")
    p.add_argument("--shape", type=int, nargs=3, default=(16, 256, 256), metavar=("Z", "Y", "X"))
    p.add_argument("--z-block", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)

    shape = tuple(a.shape)
    vol_bytes = 3 * int(np.prod(shape)) * 2
    n_t = max(2, math.ceil(a.factor * a.budget_mb * 2**20 / vol_bytes))
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        src, dst = Path(tmp) / "raw.ome.zarr", Path(tmp) / "pre.ome.zarr"
        t0 = time.perf_counter()
        write_movie(src, n_t, shape, a.z_block)
        movie_mb = n_t * vol_bytes / 2**20
        chunk_mb = a.z_block * shape[1] * shape[2] * 2 / 2**20
        print(f"movie: {n_t} x 3 x {shape} uint16 = {movie_mb:.0f} MiB "
              f"(written in {time.perf_counter() - t0:.1f} s); chunk {chunk_mb:.2f} MiB uint16 "
              f"({2 * chunk_mb:.2f} MiB as float32)")
        settings = {
            "channels": {
                "nucleus": {"filters": [{"kind": "gaussian", "sigma_um": 0.25}]},
                "cytoplasm": {"filters": [{"kind": "gaussian", "sigma_um": 0.25}]},
                "rna": {"filters": [{"kind": "tophat", "radius_um": 1.0}]},
            },
        }
        args = {"src": str(src), "dst": str(dst), "csv": str(Path(tmp) / "drift.csv"),
                "settings": settings, "threads": a.threads}
        res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)],
                             capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
    delta = (r["peak"] - r["base"]) / 2**20
    print(f"threads: {a.threads}; preprocess wall time {r['wall']:.1f} s "
          f"({n_t * 3 * np.prod(shape) / r['wall'] / 1e6:.2f} Mvoxel/s)")
    print(f"resident memory after imports: {r['base'] / 2**20:.0f} MiB; peak {r['peak'] / 2**20:.0f} MiB")
    print(f"peak RSS above resting: {delta:.1f} MiB vs budget {a.budget_mb:.0f} MiB "
          f"(movie/budget = {movie_mb / a.budget_mb:.1f}; peak/movie = {delta / movie_mb:.3f}; "
          f"peak = {delta / (2 * chunk_mb):.1f} float32 chunks)")
    print("within budget" if delta <= a.budget_mb else "OVER BUDGET")


if __name__ == "__main__":
    main()
