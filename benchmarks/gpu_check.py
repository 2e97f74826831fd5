"""The GPU path, measured in one short run: training speed with and without mixed precision,
inference speed at the default tile size, peak GPU memory, and whether AMP training loss falls
like FP32's.

For each model (cells, spots) the starter model is fine-tuned for ``--iters`` iterations twice
from the same start and seed, once in FP32 and once with AMP (MMEngine ``AmpOptimWrapper``), on
simulated slices preprocessed as the workflow does (the starter recipe's training set builder);
then the starter model segments ``--slices`` slices of ``--size`` px at the inference settings of
``config/config.yaml`` (tile size, overlap, batch size). Prints a table and writes JSON.

    .venv/bin/python benchmarks/gpu_check.py                      # on a CUDA machine, < 8 min
    .venv/bin/python benchmarks/gpu_check.py --device cpu --iters 2 --slices 2 --size 128  # smoke

Figures: s/iter is the median of MMEngine's logged iteration times after the first log
interval (start-up and cuDNN autotuning excluded); AMP loss check: the mean logged loss over the
last third of the iterations, AMP within 15 % of FP32 and both below the first logged loss.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("cells", "spots")


def recipe():
    """recipes/starter_models.py as a module (its training-set builder and GPU profile)."""
    spec = importlib.util.spec_from_file_location("starter_recipe",
                                                  ROOT / "recipes" / "starter_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_run(model: str, coco_dir: Path, work: Path, device: str, amp: bool, iters: int,
              batch_size: int, crop: int) -> dict:
    """Fine-tune the starter model; speed, loss curve and peak GPU memory of the run."""
    import torch

    from cellspot.segment.starter import resolve_checkpoint, starter_files
    from cellspot.segment.train import _scalars, train_model

    if work.exists():
        shutil.rmtree(work)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    log_interval = max(1, min(10, iters // 5))
    t0 = time.perf_counter()
    train_model(model, coco_dir, work, config_path=str(starter_files(model)["config"]),
                max_iters=iters, batch_size=batch_size, lr=4e-4, amp=amp, device=device,
                load_from=resolve_checkpoint(model, "builtin", "pretrained"), val_interval=0,
                checkpoint_interval=iters, log_interval=log_interval, seed=0, num_workers=2,
                crop_size=crop)
    wall = time.perf_counter() - t0
    rows = [r for r in _scalars(work / "work")[0] if "loss" in r]
    times = [r["time"] for r in rows[1:] if "time" in r] or [wall / iters]
    losses = [float(r["loss"]) for r in rows]
    tail = losses[-max(1, len(losses) // 3):]
    # build_train_config uses MMEngine's AmpOptimWrapper on CUDA only (CPU autocast gains nothing)
    return {"model": model, "amp": amp, "amp_applied": amp and device.startswith("cuda"),
            "iters": iters, "batch_size": batch_size,
            "s_per_iter": float(np.median(times)), "iters_per_s": 1.0 / float(np.median(times)),
            "wall_s": round(wall, 1), "first_loss": losses[0] if losses else None,
            "final_loss": float(np.mean(tail)) if tail else None,
            "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20
                            if device.startswith("cuda") else None)}


def infer_run(model: str, slices: np.ndarray, device: str) -> dict:
    """The starter model on ``slices`` at the configured inference settings."""
    import torch

    from cellspot.segment.infer import Segmenter
    from cellspot.segment.starter import resolve_checkpoint, starter_files

    infer = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())[
        "segment"]["models"][model]["infer"]
    seg = Segmenter(str(starter_files(model)["config"]), resolve_checkpoint(model, "builtin"),
                    device=device, batch_size=infer["batch_size"], tile_size=infer["tile_size"],
                    tile_overlap=infer["tile_overlap"], score_threshold=infer["score_threshold"],
                    model=model)
    seg.segment_slices(slices[:1])  # warm-up (cuDNN autotuning, allocations)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    _, tables = seg.segment_slices(slices)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"model": model, "slices": len(slices), "size": int(slices.shape[1]),
            "tile_size": infer["tile_size"], "batch_size": infer["batch_size"],
            "slices_per_s": len(slices) / dt, "detections_per_slice":
                float(np.mean([len(t) for t in tables])),
            "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20
                            if device.startswith("cuda") else None)}


def test_slices(model: str, size: int, n: int, rec) -> np.ndarray:
    """``n`` slices of ``size`` px: a simulated 256 px field (preprocessed as the workflow does)
    tiled to the size, so detections are as dense as in a real field."""
    cfg = rec.random_simulation(np.random.default_rng(rec.BENCH_SEED0 + 77))
    img, _, _ = rec.movie_inputs(model, cfg, rec.BENCH_SEED0 + 77, rec.default_preprocess())
    x = np.moveaxis(img[0], 0, -1)  # (Z, Y, X, C)
    reps = -(-size // x.shape[1])
    x = np.tile(x, (1, reps, reps, 1))[:, :size, :size]
    return np.concatenate([x] * (-(-n // len(x))))[:n].astype(np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--slices", type=int, default=64)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--movies", type=int, default=2, help="simulated training movies")
    p.add_argument("--work", type=Path, default=Path("/tmp/cellspot_gpu_check"))
    p.add_argument("--output", type=Path, help="JSON of the figures (default WORK/gpu_check.json)")
    a = p.parse_args(argv)
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device (torch.cuda.is_available() is False); "
                         "use --device cpu for a smoke run")
    rec = recipe()
    gpu = rec.PROFILES["gpu"]
    cpu_smoke = not a.device.startswith("cuda")
    batch = 2 if cpu_smoke else gpu["batch_size"]
    a.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    movies = rec.training_movies(a.movies)
    out = {"device": torch.cuda.get_device_name(0) if not cpu_smoke else "cpu",
           "torch": torch.__version__, "train": [], "infer": [], "amp_loss_ok": {}}
    for model in MODELS:
        coco_dir = a.work / model / "coco"
        if coco_dir.exists():
            shutil.rmtree(coco_dir)
        rec.build_training_set(model, movies, coco_dir, rec.default_preprocess())
        crop = 64 if cpu_smoke else gpu["crop"][model]
        runs = [train_run(model, coco_dir, a.work / model / ("amp" if amp else "fp32"),
                          a.device, amp, a.iters, batch, crop) for amp in (False, True)]
        out["train"] += runs
        fp32, amp = runs
        out["amp_loss_ok"][model] = bool(
            fp32["final_loss"] is not None and amp["final_loss"] is not None
            and amp["final_loss"] <= 1.15 * fp32["final_loss"]
            and amp["final_loss"] < amp["first_loss"] and fp32["final_loss"] < fp32["first_loss"])
        out["infer"].append(infer_run(model, test_slices(model, a.size, a.slices, rec), a.device))
    out["wall_s"] = round(time.perf_counter() - t_start, 1)

    print(f"device {out['device']}, torch {out['torch']}, {out['wall_s']} s in all")
    print("model  precision  it/s    s/it   peak GPU MB  first -> final loss")
    for r in out["train"]:
        precision = "AMP" if r["amp_applied"] else ("FP32 (AMP asked; CUDA only)" if r["amp"]
                                                    else "FP32")
        print(f"{r['model']:6} {precision:9} {r['iters_per_s']:6.2f} "
              f"{r['s_per_iter']:6.3f}  {r['peak_gpu_mb'] or 0:10.0f}  "
              f"{r['first_loss']:.3f} -> {r['final_loss']:.3f}")
    for m, ok in out["amp_loss_ok"].items():
        print(f"{m}: AMP loss falls like FP32's: {'yes' if ok else 'NO'}")
    for r in out["infer"]:
        print(f"{r['model']:6} inference {r['slices_per_s']:.2f} slices/s ({r['size']} px, tile "
              f"{r['tile_size']}, batch {r['batch_size']}), {r['detections_per_slice']:.0f} "
              f"detections/slice, peak GPU {r['peak_gpu_mb'] or 0:.0f} MB")
    path = a.output or a.work / "gpu_check.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"figures: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
