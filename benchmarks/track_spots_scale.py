"""RNA-spot tracking: time against spots per frame, btrack (tiled and whole) and laptrack.

Spots diffuse (RMS step 0.08 µm per axis per frame, as in cellspot.simulate), 3 % vanish and
as many appear each frame, at a density of 0.1 spots/µm³ in a 6 µm thick slab. Link accuracy
is the fraction of true frame-to-frame links that a method reproduces. btrack's belief matrix
is dense, so whole-frame tracking grows with the square of the spots per frame; cellspot
tracks tiles of ``--tile-size`` spots and stitches them (``track.link_tiled``).

A second table compares spot linking in the frame of the cell's motion (``spot_frame: cell``)
with linking positions as they are, on simulated movies whose cells move 0.4 and 1.5 µm per
frame (cells tracked by btrack on their true masks). Usage::

    python benchmarks/track_spots_scale.py [--counts 500 2000 5000 10000] [--frames 5]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellspot import track
from cellspot.simulate import SimulationConfig, simulate_movie
from cellspot_bench.baselines import track_laptrack

REPO = Path(__file__).resolve().parents[1]
SPOT_CONFIG = REPO / "config" / "btrack" / "spot_config.json"
CELL_CONFIG = REPO / "config" / "btrack" / "cell_config.json"
VOXEL = (0.5, 0.25, 0.25)


def diffusing_spots(n: int, n_t: int, step=0.08, turnover=0.03, density=0.1, seed=0):
    rng = np.random.default_rng(seed)
    zext = 6.0
    side = np.sqrt(n / density / zext)
    ext = np.array([zext, side, side])
    pos = rng.uniform(0, 1, (n, 3)) * ext
    ids = np.arange(1, n + 1)
    nxt = n + 1
    rows = []
    for t in range(n_t):
        if t:
            pos = pos + rng.normal(0, step, pos.shape)
            dead = rng.random(len(ids)) < turnover
            pos, ids = pos[~dead], ids[~dead]
            nb = int(dead.sum())
            pos = np.vstack([pos, rng.uniform(0, 1, (nb, 3)) * ext])
            ids = np.r_[ids, np.arange(nxt, nxt + nb)]
            nxt += nb
        rows.append(pd.DataFrame({"t": t, "spot_id": ids, "z": pos[:, 0] / VOXEL[0],
                                  "y": pos[:, 1] / VOXEL[1], "x": pos[:, 2] / VOXEL[2]}))
    df = pd.concat(rows, ignore_index=True)
    df["label"] = np.arange(1, len(df) + 1)
    return df


def link_accuracy(tr: pd.DataFrame, truth: pd.DataFrame) -> float:
    m = tr[tr.label > 0].merge(truth[["label", "spot_id"]], on="label").sort_values(
        ["spot_id", "t"])
    same = (m.spot_id.to_numpy()[1:] == m.spot_id.to_numpy()[:-1]) & (np.diff(m.t) == 1)
    ok = same & (m.track_id.to_numpy()[1:] == m.track_id.to_numpy()[:-1])
    return float(ok.sum() / max(same.sum(), 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[500, 2000, 5000, 10000])
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--tile-size", type=int, default=1500)
    ap.add_argument("--whole-max", type=int, default=5000,
                    help="largest count tracked by btrack without tiles (quadratic cost)")
    ap.add_argument("--laptrack-max", type=int, default=10000)
    ap.add_argument("--cell-speeds", type=float, nargs="*", default=[0.4, 1.5])
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    # warm-up: library loading and first-call costs stay out of the timings
    with open(os.devnull, "w") as f, contextlib.redirect_stdout(f):
        warm = diffusing_spots(100, 2).drop(columns="spot_id")
        track.track_spots(warm, SPOT_CONFIG, VOXEL)
        track_laptrack(warm, VOXEL, max_distance=0.8, divisions=False)

    rows = []
    for n in args.counts:
        spots = diffusing_spots(n, args.frames)
        inp = spots.drop(columns="spot_id")
        runs = [("btrack tiled", lambda: track.track_spots(inp, SPOT_CONFIG, VOXEL,
                                                           tile_size=args.tile_size))]
        if n <= args.whole_max:
            runs.append(("btrack whole", lambda: track.track_spots(inp, SPOT_CONFIG, VOXEL,
                                                                   tile_size=10 ** 9)))
        if n <= args.laptrack_max:
            runs.append(("laptrack", lambda: track_laptrack(inp, VOXEL, max_distance=0.8,
                                                                  divisions=False)))
        for name, fn in runs:
            t0 = time.perf_counter()
            with open(os.devnull, "w") as f, contextlib.redirect_stdout(f):
                tr = fn()
            dt = time.perf_counter() - t0
            rows.append({"spots_per_frame": n, "frames": args.frames, "method": name,
                         "time_s": round(dt, 2), "ms_per_spot_frame": round(
                             1000 * dt / len(spots), 3),
                         "link_accuracy": round(link_accuracy(tr, spots), 4),
                         "tracks": tr.track_id.nunique(), "true_tracks": spots.spot_id.nunique()})
            print(rows[-1], flush=True)

    frame_rows = []
    for speed in args.cell_speeds:
        m = simulate_movie(SimulationConfig(n_timepoints=8, n_divisions=2, cell_speed=speed),
                           seed=2)
        vs = m.meta.voxel_size
        with open(os.devnull, "w") as f, contextlib.redirect_stdout(f):
            cells = track.objects_from_labels(m.cells, vs)
            ct = track.track_cells(cells, CELL_CONFIG, vs, shape=m.cells.shape[1:])
            sp = m.spots.copy()
            sp["label"] = np.arange(1, len(sp) + 1)
            inp = sp.drop(columns="spot_id")
            for frame, tracks_of_cells in (("cell", ct), ("sample", None)):
                tr = track.track_spots(inp, SPOT_CONFIG, vs, tracks_of_cells)
                frame_rows.append({"cell_speed_um": speed, "spot_frame": frame,
                                   "spots": len(sp), "link_accuracy": round(
                                       link_accuracy(tr, sp), 4)})

    df = pd.DataFrame(rows)
    print("\nTime (s) against spots per frame:")
    print(df.pivot_table(index="spots_per_frame", columns="method", values="time_s").to_string())
    print("\nLink accuracy:")
    print(df.pivot_table(index="spots_per_frame", columns="method",
                         values="link_accuracy").to_string())
    print("\nSpots of simulated movies, linked in the cell's frame or as they are:")
    print(pd.DataFrame(frame_rows).pivot_table(index="cell_speed_um", columns="spot_frame",
                                               values="link_accuracy").to_string())


if __name__ == "__main__":
    main()
