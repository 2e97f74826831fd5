"""Throughput of the preprocess filters and of the whole stage, 1 vs 2 threads, vs plain calls.

For each filter: voxels per second of a plain single call of the scipy/scikit-image function on
each whole volume (the baseline), and of the chunked dask version (:func:`filter_dask`) with 1
and 2 threads and with a local cluster of 2 single-threaded processes (for filters that hold the
GIL: scikit-image's non-local means and rolling ball), on the same movie in the same run. Then
the whole stage
(:func:`preprocess_movie`: statistics, drift, normalise + filter + shift, OME-Zarr I/O) with the
threaded scheduler (1 and 2 threads) and a 2-process distributed cluster, against a plain
in-memory numpy pipeline doing the same work.

    .venv/bin/python benchmarks/preprocess_throughput.py --shape 4 24 192 192
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import scipy.ndimage as ndi

from cellspot.omezarr import ImageMeta, create_image, open_array
from cellspot.preprocess import (
    GaussianFilter,
    NLMeansFilter,
    RollingBallFilter,
    TopHatFilter,
    ellipsoid_footprint,
    filter_dask,
    limit_heap_growth,
    preprocess_movie,
)

VOXEL = (0.5, 0.25, 0.25)


def _baselines():
    from skimage.restoration import denoise_nl_means, ellipsoid_kernel, rolling_ball

    px = np.array(VOXEL)
    return {
        "gaussian": (GaussianFilter(sigma_um=0.25),
                     lambda v: ndi.gaussian_filter(v, 0.25 / px)),
        "tophat": (TopHatFilter(radius_um=1.0),
                   lambda v: ndi.white_tophat(v, footprint=ellipsoid_footprint(1.0 / px))),
        "rolling_ball": (RollingBallFilter(radius_um=0.75, height=0.5),
                         lambda v: v - rolling_ball(v, kernel=ellipsoid_kernel((3, 7, 7), 0.5),
                                                    workers=1)),
        "nl_means": (NLMeansFilter(patch_size=3, patch_distance=2, h=0.05),
                     lambda v: denoise_nl_means(v, patch_size=3, patch_distance=2, h=0.05,
                                                fast_mode=True)),
    }


def timed(fn, repeat=1):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def movie(shape, seed=0):
    rng = np.random.default_rng(seed)
    t, z, y, x = shape
    vol = np.zeros((z + 8, y + 16, x + 16), np.float32)
    pts = rng.integers(0, vol.shape, size=(int(vol.size / 3000), 3))
    vol[tuple(pts.T)] = 1.0
    vol = ndi.gaussian_filter(vol, (1.0, 2.0, 2.0))
    vol /= vol.max()
    frames = []
    for i in range(t):
        d = rng.normal(0, 1.0, 3) * [0.3, 1, 1] * i
        moved = ndi.shift(vol, d, order=1)[4:4 + z, 8:8 + y, 8:8 + x]
        frames.append(rng.poisson(moved * 500 + 100).astype(np.uint16))
    return np.stack(frames)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", type=int, nargs=4, default=(4, 24, 192, 192),
                   metavar=("T", "Z", "Y", "X"))
    p.add_argument("--z-block", type=int, default=12)
    p.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    p.add_argument("--filters", nargs="*", default=["gaussian", "tophat", "rolling_ball",
                                                    "nl_means"])
    p.add_argument("--skip-stage", action="store_true")
    a = p.parse_args(argv)
    limit_heap_growth()

    raw = movie(tuple(a.shape))
    norm = ((raw.astype(np.float32) - 100.0) / 500.0).astype(np.float32)
    n_vox = norm.size
    chunks = (1, a.z_block) + tuple(a.shape[2:])
    print(f"movie {tuple(a.shape)} = {n_vox / 1e6:.2f} Mvoxel; dask chunks {chunks}")
    print(f"{'filter':<13}{'baseline':>11}{'1 thread':>11}{'2 threads':>11}{'2 procs':>10}"
          f"{'2t/1t':>8}{'2p/1t':>8}{'1t/base':>9}{'2t/base':>9}   (Mvoxel/s)")
    base = _baselines()
    from distributed import Client, LocalCluster

    # the movie travels inside the graph: fine for a benchmark, so no warning about it
    warnings.filterwarnings("ignore", message="Sending large graph")
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    for name in a.filters:
        filt, plain = base[name]
        tb, want = timed(lambda: np.stack([plain(v) for v in norm]), a.repeat)
        lazy = filter_dask(da.from_array(norm, chunks=chunks), [filt], VOXEL)
        t1, got = timed(lambda: lazy.compute(scheduler="threads", num_workers=1), a.repeat)
        t2, _ = timed(lambda: lazy.compute(scheduler="threads", num_workers=2), a.repeat)
        tp, _ = timed(lambda: client.compute(lazy).result(), a.repeat)
        err = float(np.abs(got - want).max() / max(np.ptp(want), 1e-12))
        r = [n_vox / t / 1e6 for t in (tb, t1, t2, tp)]
        print(f"{name:<13}{r[0]:>11.2f}{r[1]:>11.2f}{r[2]:>11.2f}{r[3]:>10.2f}{t1 / t2:>8.2f}"
              f"{t1 / tp:>8.2f}{tb / t1:>9.2f}{tb / t2:>9.2f}   max diff {err:.1e} of range")
    client.close()
    cluster.close()

    if a.skip_stage:
        return
    settings = {
        "channels": {"nucleus": {"filters": [{"kind": "gaussian", "sigma_um": 0.25}]},
                     "rna": {"filters": [{"kind": "tophat", "radius_um": 1.0}]}},
        "registration": {"channel": "nucleus"},
    }
    two = np.stack([raw, raw[:, ::-1]], axis=1)  # (T, 2, Z, Y, X): nucleus, rna
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "raw.ome.zarr"
        arr = create_image(src, two.shape, np.uint16, ImageMeta(("nucleus", "rna"), VOXEL),
                           chunks=(1, 1) + chunks[1:])
        arr[...] = two
        stage_vox = two.size

        def plain_stage():
            from cellspot.register import RegistrationSettings, estimate_drift

            data = open_array(src)[...]
            drift = estimate_drift(data, 0, RegistrationSettings())
            d = drift[["dz", "dy", "dx"]].to_numpy()
            out = np.empty(data.shape, np.float32)
            fp = ellipsoid_footprint(1.0 / np.array(VOXEL))
            for c in range(2):
                lo, hi = np.percentile(data[:, c], [1, 99.8])
                for t in range(data.shape[0]):
                    v = (data[t, c].astype(np.float32) - lo) / (hi - lo)
                    v = (ndi.gaussian_filter(v, 0.25 / np.array(VOXEL)) if c == 0
                         else ndi.white_tophat(v, footprint=fp))
                    out[t, c] = ndi.shift(v, -d[t], order=1)
            return out

        tb, _ = timed(plain_stage, a.repeat)
        print(f"\nwhole stage on {two.shape} uint16 OME-Zarr ({stage_vox / 1e6:.2f} Mvoxel), "
              f"Mvoxel/s:\n  plain numpy/scipy, whole movie in memory: {stage_vox / tb / 1e6:.2f}")
        times = {}
        for label, threads, sched in (("threads, 1", 1, "threads"), ("threads, 2", 2, "threads"),
                                      ("distributed, 2 processes", 2, "distributed")):
            t, _ = timed(lambda: preprocess_movie(src, Path(tmp) / "pre.ome.zarr",
                                                  {**settings, "scheduler": sched},
                                                  threads=threads), a.repeat)
            times[label] = t
            print(f"  preprocess_movie, {label}: {stage_vox / t / 1e6:.2f} "
                  f"(x{tb / t:.2f} of plain)")
        print(f"  speed-up 2 vs 1 thread: x{times['threads, 1'] / times['threads, 2']:.2f}")


if __name__ == "__main__":
    main()
