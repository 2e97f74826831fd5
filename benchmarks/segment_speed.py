"""Inference speed and peak memory of the Mask R-CNN models on the CPU (GPU if present).

Each (model, batch size) runs in a fresh subprocess so that its peak resident memory
(``ru_maxrss``) is its own; the classical LoG + Otsu spot detector runs on the same slices in
the same run as the baseline.

Usage::

    python benchmarks/segment_speed.py --size 256 --slices 16 --work /tmp/cellspot_segbench

With ``--work`` pointing at the folder of ``segment_accuracy.py``, its trained checkpoints are
used (a trained model makes realistic numbers of detections); otherwise a model is trained for
2 iterations on a tiny synthetic set first (speed of the network itself, few detections).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _slices(size, n, model):
    from cellspot import coco
    from cellspot.simulate import SimulationConfig, simulate_movie

    z = max(4, n // 2)
    movie = simulate_movie(SimulationConfig(n_timepoints=2, shape=(z, size, size),
                                            n_cells=max(3, int(8 * (size / 160) ** 2))), seed=7)
    ch = ["rna"] if model == "spots" else ["nucleus", "cytoplasm", "rna"]
    img = np.asarray(movie.image, np.float32)[:, [movie.meta.channel_index(c) for c in ch]]
    img = np.stack([coco.normalize_volume(img[:, c]) for c in range(img.shape[1])], -1)
    return img.reshape(-1, size, size, len(ch))[:n]


def _checkpoint(model, work):
    p = Path(work) / model / "model"
    if (p / "checkpoint.pth").is_file():
        return p / "config.py", p / "checkpoint.pth", "trained (segment_accuracy.py)"
    from cellspot import coco
    from cellspot.segment.train import train_model

    tiny = Path(work) / "speed_tiny" / model
    if not (tiny / "model" / "checkpoint.pth").is_file():
        x = _slices(64, 4, model)
        lab = {"spot": np.zeros((1, 4, 64, 64), np.int32)} if model == "spots" else {
            "nucleus": np.zeros((1, 4, 64, 64), np.int32), "cell": np.zeros((1, 4, 64, 64),
                                                                            np.int32)}
        for v in lab.values():
            v[0, :, 20:30, 20:30] = 1
        coco.coco_from_volumes(np.moveaxis(x, -1, 0)[None], lab,
                               tiny / "coco", normalize=False, val_fraction=0.0)
        train_model(model, tiny / "coco", tiny / "model", max_iters=2, val_interval=0)
    return tiny / "model" / "config.py", tiny / "model" / "checkpoint.pth", "2 iterations only"


def run_one(args):
    """Child process: time one model at one batch size; print JSON."""
    import torch

    from cellspot.segment.infer import Segmenter

    torch.set_num_threads(args.threads)
    x = _slices(args.size, args.slices, args.model)
    config, ckpt, _ = _checkpoint(args.model, args.work)
    seg = Segmenter(config, ckpt, batch_size=args.batch, score_threshold=0.5,
                    tile_size=max(args.size, 1024))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seg.segment_slices(x[:args.batch])  # warm-up
    t0 = time.perf_counter()
    stacks, tables = seg.segment_slices(x)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"model": args.model, "batch": args.batch, "slices": len(x),
                      "seconds": dt, "slices_per_s": len(x) / dt, "peak_rss_mb": peak / 1024,
                      "rss_before_mb": base / 1024,
                      "instances_per_slice": float(np.mean([len(t) for t in tables]))}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--models", nargs="+", default=["spots", "cells"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/cellspot_segbench")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_one(args)
    import torch

    print(f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, {args.threads} threads, "
          f"{args.slices} slices of {args.size}x{args.size}")
    for model in args.models:
        _, _, how = _checkpoint(model, args.work)
        for b in args.batches:
            out = subprocess.run([sys.executable, __file__, "--child", "--model", model,
                                  "--batch", str(b), "--size", str(args.size), "--slices",
                                  str(args.slices), "--threads", str(args.threads), "--work",
                                  args.work], capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:])
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{model:5s} ({how}) batch {b}: {r['slices_per_s']:.2f} slices/s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(model loaded: {r['rss_before_mb']:.0f} MB), "
                  f"{r['instances_per_slice']:.0f} instances/slice")
    # Baseline in the same run: LoG + Otsu on the same spot slices.
    from cellspot.segment.spots_classic import detect_spots_log

    torch.set_num_threads(args.threads)
    x = _slices(args.size, args.slices, "spots")[..., 0]
    t0 = time.perf_counter()
    n = sum(len(detect_spots_log(s, 1.0)) for s in x)
    dt = time.perf_counter() - t0
    print(f"LoG+Otsu baseline: {len(x) / dt:.2f} slices/s ({n / len(x):.0f} spots/slice)")


if __name__ == "__main__":
    sys.exit(main())
