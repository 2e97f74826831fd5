"""Cell-tracking accuracy: btrack (cellspot.track) against a laptrack baseline, CTC TRA and DET.

Both trackers link the same detections of simulated movies with divisions (cellspot.simulate):

* ``gt``: ground-truth detections (linking only; the masks are the true masks);
* ``perturbed``: the 3D labels the merge stage builds from per-slice 2D instances with
  segmentation-like errors (``slice_labels`` with drops, splits and merges, then
  ``merge.stitch_slices``): controlled error rates;
* ``maskrcnn`` (with ``--cells-model DIR``, a trained cells model's ``config.py`` and
  ``checkpoint.pth``): the pipeline's own detections. The cells model runs on every z-slice
  (``cellspot.segment.infer.Segmenter``; the image is aligned with the known drift, as preprocessing
  would) and the merge stage stitches its 2D cell instances into 3D cells
  (``merge.merge_timepoint``). Train a model with ``benchmarks/segment_accuracy.py --parts
  cells`` (it trains on the same simulator).

Scores come from py-ctcmetrics on CTC folders written by ``cellspot.ctc``. Usage::

    python benchmarks/track_accuracy.py [--seeds 3] [--frames 12] [--cells-model DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellspot import track
from cellspot.merge import object_table, stitch_slices
from cellspot.simulate import SimulationConfig, simulate_movie
from cellspot_bench.baselines import track_laptrack
from cellspot_bench.corrupt import slice_labels
from cellspot_bench.ctc_eval import evaluate_ctc, write_ctc_ground_truth

REPO = Path(__file__).resolve().parents[1]
CELL_CONFIG = REPO / "config" / "btrack" / "cell_config.json"


def pipeline_labels(cells: np.ndarray, voxel_size, seed: int) -> np.ndarray:
    """3D labels rebuilt by the merge stage from noisy per-slice 2D instances."""
    out = np.zeros(cells.shape, dtype=np.uint32)
    for t in range(cells.shape[0]):
        l2d = slice_labels(cells[t], seed=seed * 1000 + t, p_drop=0.05, p_split=0.03,
                           p_merge=0.03)
        out[t] = stitch_slices(l2d, anisotropy=voxel_size)
    return out


def maskrcnn_labels(movie, model_dir: Path, threads: int = 2) -> np.ndarray:
    """3D cells of every timepoint from the Mask R-CNN cells model and the merge stage."""
    import torch
    from scipy import ndimage as ndi

    from cellspot.merge import merge_timepoint
    from cellspot.segment.coco import normalize_volume
    from cellspot.segment.infer import Segmenter

    torch.set_num_threads(threads)
    seg = Segmenter(model_dir / "config.py", model_dir / "checkpoint.pth", score_threshold=0.5)
    channels = ["nucleus", "cytoplasm", "rna"]
    img = np.asarray(movie.image, np.float32)[:, [movie.meta.channel_index(c) for c in channels]]
    img = np.stack([normalize_volume(img[:, c]) for c in range(img.shape[1])], 1)
    out = np.zeros(movie.cells.shape, np.uint32)
    for t, d in enumerate(movie.drift[["dz", "dy", "dx"]].to_numpy(float)):
        vol = np.stack([ndi.shift(img[t, c], -d, order=1) for c in range(len(channels))], -1)
        stacks, _ = seg.segment_slices(vol)
        out[t] = merge_timepoint(stacks["cell"], stacks["nucleus"], None, None,
                                 movie.meta).cells
    return out


def objects(labels: np.ndarray, voxel_size) -> pd.DataFrame:
    frames = []
    for t in range(labels.shape[0]):
        df = object_table(labels[t], voxel_size=voxel_size)
        frames.append(df.assign(t=t))
    return pd.concat(frames, ignore_index=True)


def evaluate(tmp: Path, name: str, labels, tracks) -> dict:
    track.write_ctc(tmp / name, labels, tracks)
    r = evaluate_ctc(tmp / name, tmp / "gt")
    n_div = int((tracks.groupby("track_id")["parent"].first() > 0).sum() // 2) if len(
        tracks) else 0
    return {"TRA": r["TRA"], "DET": r["DET"], "divisions": n_div}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--speeds", type=float, nargs="+", default=[0.4, 1.2])
    ap.add_argument("--laptrack-distance", type=float, default=5.0,
                    help="laptrack link, gap and division cutoff (µm)")
    ap.add_argument("--cells-model", type=Path, default=None,
                    help="folder with a trained cells model (config.py, checkpoint.pth): adds "
                         "the pipeline's own detections")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    rows = []
    for speed in args.speeds:
        for seed in range(args.seeds):
            cfg = SimulationConfig(n_timepoints=args.frames, n_cells=10, n_divisions=4,
                                   cell_speed=speed)
            m = simulate_movie(cfg, seed=seed)
            vs = m.meta.voxel_size
            n_div = int((m.lineage.parent_id > 0).sum() // 2)
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                write_ctc_ground_truth(tmp / "gt", m.cells, m.lineage)
                t0 = time.perf_counter()
                sets = [("gt", m.cells), ("perturbed", pipeline_labels(m.cells, vs, seed))]
                if args.cells_model:
                    sets.append(("maskrcnn", maskrcnn_labels(m, args.cells_model)))
                t_seg = time.perf_counter() - t0
                for det, labels in sets:
                    objs = track.objects_from_labels(labels, vs) if det == "gt" else \
                        objects(labels, vs)
                    for method in ("btrack", "laptrack"):
                        t0 = time.perf_counter()
                        with open(os.devnull, "w") as f, contextlib.redirect_stdout(f):
                            if method == "btrack":
                                tr = track.track_cells(objs, CELL_CONFIG, vs,
                                                       shape=labels.shape[1:])
                            else:
                                tr = track_laptrack(objs, vs, args.laptrack_distance)
                        dt = time.perf_counter() - t0
                        r = evaluate(tmp, f"{det}_{method}", labels, tr)
                        rows.append({"speed_um": speed, "seed": seed, "detections": det,
                                     "method": method, "objects": len(objs),
                                     "true_divisions": n_div, **r, "time_s": dt})
            print(f"speed {speed} seed {seed}: {len(m.lineage)} cells, {n_div} divisions, "
                  f"detections {t_seg:.1f} s", flush=True)

    df = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print("\nPer movie:")
    print(df.round(4).to_string(index=False))
    summary = df.groupby(["speed_um", "detections", "method"]).agg(
        TRA=("TRA", "mean"), TRA_min=("TRA", "min"), DET=("DET", "mean"),
        divisions=("divisions", "sum"), true_divisions=("true_divisions", "sum"),
        time_s=("time_s", "mean"))
    print("\nMean over seeds:")
    print(summary.round(4).to_string())
    piv = df.pivot_table(index=["speed_um", "detections"], columns="method", values="TRA")
    piv["btrack - laptrack"] = piv["btrack"] - piv["laptrack"]
    print("\nTRA, btrack against the laptrack baseline:")
    print(piv.round(4).to_string())


if __name__ == "__main__":
    main()
