"""Peak memory of the preprocess stage on a movie several times larger than a memory budget.

Writes a synthetic drifting movie (uint16 OME-Zarr, chunks of one timepoint, one channel and a
block of z-slices) of at least ``--factor`` times ``--budget-mb``, runs
:func:`cellspot.preprocess.preprocess_movie` on it in a fresh process and prints that process's
peak resident memory above its resting level after imports, against the budget.

    .venv/bin/python benchmarks/preprocess_memory.py --budget-mb 64 --threads 2

glibc's heap thresholds are fixed in the child (``limit_heap_growth``, as the rule's script
does), so resident memory reflects live buffers rather than freed ones kept by the allocator.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi

from cellspot.omezarr import ImageMeta, create_image

CHILD = r"""
import json, resource, sys, time
import psutil
# imported before the resting measurement: their memory is not the stage's
import dask.array, distributed, matplotlib, scipy.signal  # noqa: F401
import skimage.registration, skimage.restoration  # noqa: F401
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


def run_once(n_t, shape, z_block, threads, workdir):
    """Write a movie of ``n_t`` timepoints, preprocess it in a fresh process; returns figures."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src, dst = Path(tmp) / "raw.ome.zarr", Path(tmp) / "pre.ome.zarr"
        write_movie(src, n_t, shape, z_block)
        settings = {
            "channels": {
                "nucleus": {"filters": [{"kind": "gaussian", "sigma_um": 0.25}]},
                "cytoplasm": {"filters": [{"kind": "gaussian", "sigma_um": 0.25}]},
                "rna": {"filters": [{"kind": "tophat", "radius_um": 1.0}]},
            },
        }
        args = {"src": str(src), "dst": str(dst), "csv": str(Path(tmp) / "drift.csv"),
                "settings": settings, "threads": threads}
        res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)],
                             capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget-mb", type=float, default=64.0)
    p.add_argument("--factor", type=float, default=4.0, help="movie size / budget (at least)")
    p.add_argument("--shape", type=int, nargs=3, default=(16, 256, 256), metavar=("Z", "Y", "X"))
    p.add_argument("--z-block", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-half", action="store_true",
                   help="skip the run on half the movie (which shows peak memory does not grow "
                        "with the movie)")
    p.add_argument("--workdir", default=None)
    a = p.parse_args(argv)

    shape = tuple(a.shape)
    vol_bytes = 3 * int(np.prod(shape)) * 2
    n_t = max(2, math.ceil(a.factor * a.budget_mb * 2**20 / vol_bytes))
    chunk_mb = a.z_block * shape[1] * shape[2] * 4 / 2**20
    print(f"volume {shape}, 3 channels, uint16; chunks of {a.z_block} slices "
          f"({chunk_mb:.2f} MiB as float32); {a.threads} threads; budget {a.budget_mb:.0f} MiB")
    sizes = [n_t] if a.no_half else [max(2, n_t // 2), n_t]
    deltas = []
    for t in sizes:
        r = run_once(t, shape, a.z_block, a.threads, a.workdir)
        movie_mb = t * vol_bytes / 2**20
        delta = (r["peak"] - r["base"]) / 2**20
        deltas.append(delta)
        print(f"movie {t} timepoints = {movie_mb:.0f} MiB ({movie_mb / a.budget_mb:.1f} x budget): "
              f"peak RSS above resting {delta:.1f} MiB (resting {r['base'] / 2**20:.0f} MiB) = "
              f"{delta / chunk_mb:.0f} float32 chunks; {r['wall']:.1f} s, "
              f"{t * 3 * np.prod(shape) / r['wall'] / 1e6:.2f} Mvoxel/s")
    verdict = "within budget" if deltas[-1] <= a.budget_mb else "OVER BUDGET"
    print(f"largest movie: peak {deltas[-1]:.1f} MiB vs budget {a.budget_mb:.0f} MiB: {verdict}")
    if len(deltas) == 2:
        print(f"peak growth when the movie doubles: x{deltas[1] / deltas[0]:.2f}")


if __name__ == "__main__":
    main()
