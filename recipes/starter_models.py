"""Recipe: rebuild cellspot's starter Mask R-CNN models (cells, spots) from scratch.

One command trains both models on varied simulated movies, measures them on held-out movies
(other seeds and settings, never used in training; LoG + Otsu as the spot baseline in the same
run) and writes each model as fp16 weights with its config and a card (data, seeds, iterations,
wall and CPU time, figures)::

    python recipes/starter_models.py --out build/starter_models            # CPU: ~2 h on 2 cores
    python recipes/starter_models.py --device cuda --out build/starter_models   # GPU profile
    python recipes/starter_models.py --out build/starter_models --install  # and ship them

``--install`` copies a model into ``src/cellspot/starter_models/`` only when its benchmark score
beats the shipped card's (weights stay in git history forever: commit only improvements).

Training data (every movie preprocessed exactly as the workflow's ``preprocess`` defaults do, so
training images look like what inference sees): ``--movies`` simulated movies whose settings are
drawn at random per movie (seeds 1000 + k): voxel size, cell and nucleus size, packing, PSF
width, spot brightness and density, stain brightness, background, vignetting and camera noise
(:func:`random_simulation` lists the ranges). For the cells model, a share of the simulated
slices goes without the cytoplasm and/or RNA stain (``--stain-dropout``, :data:`STAIN_DROPOUT`;
nuclei-only and DAPI + smFISH movies) and ``--real-nuclei`` real DSB2018 nuclear stains of the
training sources join them (``cellspot_bench.real_nuclei``). Held-out benchmark sets: movies of
seeds 9000 + k and the demo's settings (that one also with its nucleus stain alone), DSB2018
images of a source never trained on, and the QCANet embryo in 3D (reported, not scored). The
shipped model is benchmarked on the same sets in the same run; ``--install`` needs a higher
score. ``--pretrained builtin`` fine-tunes the shipped model instead of training from scratch.

The profiles set iterations, batch size and precision: ``cpu`` fits a 2-core machine in about two
hours; ``gpu`` trains 10x longer with mixed precision. Every choice is a flag.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cellspot.segment import coco, spots_classic  # noqa: E402
from cellspot.segment.starter import (  # noqa: E402
    MODELS,
    STARTER_DIR,
    export_checkpoint,
    read_card,
    starter_files,
)
from cellspot.simulate import SimulationConfig, simulate_movie  # noqa: E402
from cellspot_bench import real_nuclei  # noqa: E402
from cellspot_bench.metrics import MatchResult, match_instances, spot_f1  # noqa: E402

ROLES = {"cells": ["nucleus", "cytoplasm", "rna"], "spots": ["rna"]}
PROFILES = {
    # iterations per model, images per iteration, learning rate, mixed precision
    # (crop: random training crops in px; a 2-core CPU runs ~1.9 s per iteration of either)
    "cpu": {"cells": 1100, "spots": 900, "batch_size": 4, "lr": 4e-4, "amp": False,
            "crop": {"cells": 192, "spots": 128}},
    "gpu": {"cells": 12000, "spots": 12000, "batch_size": 8, "lr": 4e-4, "amp": True,
            "crop": {"cells": 256, "spots": 256}},
}
TRAIN_SEED0, BENCH_SEED0 = 1000, 9000


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


# --------------------------------------------------------------------------- data


def random_simulation(rng: np.random.Generator, shape_yx: int = 256) -> SimulationConfig:
    """Settings of one training movie, drawn over what users image (fluorescence, 3D).

    Ranges: xy voxel 0.12-0.35 µm, z voxel 0.3-1.2 µm; cell radius 9-30 px in xy (nucleus
    0.4-0.7 of it), z radius 0.5-0.9 of xy; sparse to dense packing; PSF sigma 0.8-1.6 px;
    spot peaks 60-900 photons over a background of 15-200; 5-60 RNA per cell; nucleus and
    cytoplasm stains 120-2000 and 40-700 photons; vignetting 0-0.5; read noise 1-8.
    """
    vxy = rng.uniform(0.12, 0.35)
    vz = rng.uniform(0.3, 1.2)
    r_px = rng.uniform(9, 30)
    rxy = r_px * vxy
    rz = rxy * rng.uniform(0.5, 0.9)
    nz = int(np.clip(np.ceil(2.6 * rz / vz), 8, 24))
    # cells placed 1.7 radii apart at least: the field holds about (L / 1.7 r)^2 of them
    capacity = (shape_yx / (1.7 * r_px)) ** 2
    n_cells = int(np.clip(rng.uniform(0.25, 0.9) * capacity, 1, 40))
    lo = rng.uniform(60, 500)
    per_cell = int(rng.uniform(5, 45))
    return SimulationConfig(
        n_timepoints=2, shape=(nz, shape_yx, shape_yx), voxel_size=(vz, vxy, vxy),
        n_cells=n_cells, cell_radius=(rxy, rz), nucleus_fraction=rng.uniform(0.4, 0.7),
        n_divisions=int(rng.integers(0, 2)), cell_speed=rng.uniform(0, 3) * vxy,
        spots_per_cell=(per_cell, per_cell + int(rng.uniform(0, 15))),
        nuclear_spot_fraction=rng.uniform(0.1, 0.5),
        psf_sigma=(rng.uniform(0.8, 1.5), rng.uniform(0.8, 1.6)),
        spot_photons=(lo, lo * rng.uniform(1.3, 2.5)),
        stain_photons=(rng.uniform(120, 2000), rng.uniform(40, 700)),
        background_photons=rng.uniform(15, 200), vignetting=rng.uniform(0, 0.5),
        drift_step=(0.2, 1.0, 1.0), read_noise=rng.uniform(1, 8))


def spot_half_width(cfg: SimulationConfig) -> float:
    """Slices either side of a spot's z where it is labelled: within one z sigma of the PSF
    (the merge stage links a spot's detections through z and localises it in 3D)."""
    return float(np.clip(cfg.psf_sigma[0], 0.5, 1.5))


def default_preprocess() -> dict:
    """The preprocess stage's channel settings of config/config.yaml, by role."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return cfg["preprocess"]["channels"]


def movie_inputs(model: str, cfg: SimulationConfig, seed: int, preprocess: dict, movie=None):
    """(inputs (T, C, Z, Y, X), labels, movie) of one simulated movie, as the workflow sees it."""
    movie = movie if movie is not None else simulate_movie(cfg, seed=seed)
    img, labels = coco.simulation_volumes(movie, model, ROLES[model],
                                          spot_radius=max(2.0, 1.5 * cfg.psf_sigma[1]),
                                          preprocess=preprocess,
                                          spot_z_half_width=spot_half_width(cfg))
    return img, labels, movie


def training_movies(n_movies: int) -> list:
    """The ``n_movies`` random training movies (seeds 1000 + k), simulated once for both models."""
    movies = []
    for k in range(n_movies):
        seed = TRAIN_SEED0 + k
        cfg = random_simulation(np.random.default_rng(seed))
        movies.append((seed, cfg, simulate_movie(cfg, seed=seed)))
        if (k + 1) % 10 == 0:
            log(f"{k + 1}/{n_movies} training movies simulated")
    return movies


# Stain dropout of the cells model's simulated slices: (share of slices, stains removed). A
# movie with a nucleus stain only, or nucleus + RNA (DAPI + smFISH), then gets nuclei from the
# same model (and no cells: their outline is not in the image).
STAIN_DROPOUT = ((0.15, ("cytoplasm",)), (0.10, ("cytoplasm", "rna")), (0.05, ("rna",)))


def dropped_stains(rng: np.random.Generator, scale: float) -> tuple[str, ...]:
    """The stains one training slice goes without (:data:`STAIN_DROPOUT`, shares x ``scale``)."""
    u = rng.random()
    for share, absent in STAIN_DROPOUT:
        if u < share * scale:
            return absent
        u -= share * scale
    return ()


def build_training_set(model: str, movies: list, out: Path, preprocess: dict,
                       stain_dropout: float = 0.0, n_real_nuclei: int = 0) -> dict:
    """COCO training set of ``model`` from the training movies; returns its description.

    Cells: ``stain_dropout`` scales :data:`STAIN_DROPOUT`; ``n_real_nuclei`` DSB2018 images of
    the training sources (nuclei only, the other channels zero) join the simulated slices.
    """
    z_step = 2
    settings = []
    n_movies = len(movies)
    roles = ROLES[model]
    real_ids = real_nuclei_ids(n_real_nuclei) if model == "cells" else []
    n_dropped: dict[str, int] = {}

    def gen():
        for k, (seed, cfg, movie) in enumerate(movies):
            settings.append({"seed": seed, **cfg.model_dump(mode="json")})
            img, labels, _ = movie_inputs(model, cfg, seed, preprocess, movie)
            rng = np.random.default_rng(seed)
            for t in range(img.shape[0]):
                for s in coco.volume_slices(img[t], {c: v[t] for c, v in labels.items()},
                                            f"m{k:03d}t{t}", z_step, 0.1, rng):
                    absent = dropped_stains(rng, stain_dropout) if model == "cells" else ()
                    if absent:
                        n_dropped["+".join(absent)] = n_dropped.get("+".join(absent), 0) + 1
                        img_s, lab_s = coco.without_stains(s.image, s.labels, roles, absent)
                        s = coco.Slice(img_s, lab_s, s.group, f"{s.name}_no_{'_'.join(absent)}")
                    yield s
        for i, img, gt in real_nuclei.dsb_images(real_ids):
            yield coco.Slice(real_nuclei.nuclei_only_input(img, len(roles)), {"nucleus": gt},
                             f"dsb_{i[:12]}", f"dsb_{i[:12]}")

    paths = coco.write_coco(gen(), list(coco_categories(model)), out, val_fraction=0.0)
    doc = json.loads(Path(paths["train"]).read_text())
    desc = {"source": "cellspot.simulate, settings drawn per movie (random_simulation)",
            "movies": n_movies, "seeds": [TRAIN_SEED0, TRAIN_SEED0 + n_movies - 1],
            "z_step": z_step, "slices": len(doc["images"]),
            "instances": len(doc["annotations"]), "preprocess": preprocess,
            "movie_settings": settings}
    if model == "cells":
        desc["nucleus_diameter_px"] = nucleus_diameters(doc)
        desc["stain_dropout"] = {"shares": [[sh * stain_dropout, list(a)]
                                            for sh, a in STAIN_DROPOUT],
                                 "slices": n_dropped}
        desc["real_nuclei"] = {
            "source": "../shared/data/nuclei2d_dsb2018 (2018 Data Science Bowl, BBBC038, CC0)",
            "images": len(real_ids),
            "held_out_source": f"images of {real_nuclei.DSB_TEST_SIZE[0]} x "
                               f"{real_nuclei.DSB_TEST_SIZE[1]} px (never trained on)",
            "input": "nucleus channel normalised 1-99.8 %, Gaussian 1 px; other channels zero"}
    return desc


def nucleus_diameters(doc: dict) -> dict:
    """Equivalent diameters (px) of the nuclei of a COCO training set: ``low`` (25th
    percentile: smaller nuclei are found less reliably), ``median``, ``high`` (95th); inference
    rescales movies whose nuclei lie outside to the median (:mod:`cellspot.segment.scale`)."""
    nucleus = next(c["id"] for c in doc["categories"] if c["name"] == "nucleus")
    d = 2 * np.sqrt(np.array([a["area"] for a in doc["annotations"]
                              if a["category_id"] == nucleus], float) / np.pi)
    lo, med, hi = np.percentile(d, [25, 50, 95])
    return {"low": round(float(lo), 1), "median": round(float(med), 1),
            "high": round(float(hi), 1)}


def real_nuclei_ids(n: int) -> list[str]:
    """``n`` DSB2018 training-source images (a fixed draw, seed 0); none when absent."""
    if n <= 0:
        return []
    try:
        ids = real_nuclei.dsb_ids("train")
    except FileNotFoundError:
        log("real nuclei: ../shared/data/nuclei2d_dsb2018 not found, trained without them")
        return []
    rng = np.random.default_rng(0)
    return sorted(rng.permutation(ids)[:n].tolist())


def coco_categories(model: str):
    from cellspot.segment.models import CLASSES

    return CLASSES[model]


# --------------------------------------------------------------------------- benchmark


def benchmark_movies(n: int) -> list[tuple[str, SimulationConfig, int]]:
    """Held-out movies: the demo's settings (seed 9000) and ``n`` random ones (9001..)."""
    out = [("demo settings", SimulationConfig(n_timepoints=2), BENCH_SEED0)]
    for k in range(1, n + 1):
        seed = BENCH_SEED0 + k
        out.append((f"random {seed}", random_simulation(np.random.default_rng(seed)), seed))
    return out


def _sum(results) -> MatchResult:
    return MatchResult(sum(r.tp for r in results), sum(r.fp for r in results),
                       sum(r.fn for r in results))


def _centres(labels: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    ids = np.unique(labels)
    ids = ids[ids > 0]
    return np.asarray(ndi.center_of_mass(labels > 0, labels, ids)).reshape(-1, 2)


def benchmark(model: str, paths: dict, movies, preprocess: dict, threshold: float = 0.5) -> dict:
    """Per-slice accuracy on held-out movies: cells AP@0.5 (TP / (TP + FP + FN)) per class;
    spots F1 at 3 px (one-to-one) against the spots labelled in each slice, with LoG + Otsu
    on the same slices as the baseline."""
    from cellspot.segment.infer import Segmenter

    seg = Segmenter(paths["config"], paths["checkpoint"], score_threshold=threshold,
                    batch_size=4)
    rows = {}
    for name, cfg, seed in movies:
        img, labels, _ = movie_inputs(model, cfg, seed, preprocess)
        x = np.moveaxis(img, 1, -1)  # (T, Z, Y, X, C)
        res: dict[str, list] = {}
        for t in range(x.shape[0]):
            stacks, tables = seg.segment_slices(x[t])
            for z in range(x.shape[1]):
                if model == "cells":
                    for c in ("nucleus", "cell"):
                        if labels[c][t, z].any():
                            res.setdefault(c, []).append(
                                match_instances(labels[c][t, z], stacks[c][z], 0.5))
                else:
                    truth = _centres(labels["spot"][t, z])
                    res.setdefault("maskrcnn", []).append(
                        spot_f1(truth, tables[z][["y", "x"]].to_numpy(), 3.0))
                    det = spots_classic.detect_spots_log(x[t, z, ..., 0], cfg.psf_sigma[1])
                    res.setdefault("log_otsu", []).append(
                        spot_f1(truth, det[["y", "x"]].to_numpy(), 3.0))
        summary = {}
        for k, v in res.items():
            m = _sum(v).as_dict()
            m["ap50" if model == "cells" else "f1"] = (
                m["tp"] / max(m["tp"] + m["fp"] + m["fn"], 1) if model == "cells" else m["f1"])
            summary[k] = {kk: (round(vv, 4) if isinstance(vv, float) else vv)
                          for kk, vv in m.items()}
        rows[name] = summary
        log(f"{model} benchmark, {name}: " + "; ".join(
            f"{k} {'AP@0.5' if model == 'cells' else 'F1'} "
            f"{v['ap50' if model == 'cells' else 'f1']:.3f}" for k, v in summary.items()))
        if model == "cells" and name == "demo settings":
            rows[f"{name}, nucleus stain only"] = {"nucleus": nuclei_only_ap(seg, x, labels)}
    if model == "spots":
        score = float(np.mean([r["maskrcnn"]["f1"] for r in rows.values()]))
        return {"per_movie": rows, "score": round(score, 4),
                "score_definition": "mean over the held-out movies of per-slice spot F1 at 3 px",
                "threshold": threshold}
    real = {}
    if (real_nuclei.shared_data() / "nuclei2d_dsb2018").is_dir():
        rows["DSB2018, unseen source"] = {"nucleus": real_nuclei.evaluate_dsb(
            seg, real_nuclei.dsb_ids("test")[:DSB_BENCH_IMAGES], threshold)}
    if (real_nuclei.shared_data() / "nuclei3d_qcanet").is_dir():
        real["QCANet embryo"] = real_nuclei.evaluate_qcanet(seg, threshold)
    for name, r in [(k, v) for k, v in rows.items() if "," in k or k.startswith("DSB")] + \
            list(real.items()):
        log(f"cells benchmark, {name}: " + json.dumps(r))
    # headline of each held-out set: cell AP where the cytoplasm stain is there, else nucleus AP
    heads = [r["cell"]["ap50"] if "cell" in r else r["nucleus"]["ap50"] for r in rows.values()]
    return {"per_movie": rows, "real_3d": real, "score": round(float(np.mean(heads)), 4),
            "score_definition": "mean over the held-out sets of per-slice AP@0.5: cells on "
                                "simulated movies, nuclei on nuclei-only ones (simulated, "
                                "DSB2018 unseen source); QCANet (3D) is reported, not scored",
            "threshold": threshold}


DSB_BENCH_IMAGES = 40


def nuclei_only_ap(seg, x: np.ndarray, labels: dict) -> dict:
    """Nucleus AP@0.5 of a simulated movie ``x`` (T, Z, Y, X, C) with its nucleus stain only."""
    x = x.copy()
    x[..., 1:] = 0.0
    res = []
    for t in range(x.shape[0]):
        stacks, _ = seg.segment_slices(x[t])
        res += [match_instances(labels["nucleus"][t, z], stacks["nucleus"][z], 0.5)
                for z in range(x.shape[1]) if labels["nucleus"][t, z].any()]
    m = _sum(res)
    return {**m.as_dict(), "ap50": round(real_nuclei.ap50(m), 4)}


# --------------------------------------------------------------------------- recipe


def train_one(model: str, args, profile: dict, preprocess: dict, movies: list,
              simulation_time: dict) -> dict:
    from cellspot.segment.models import default_config_path
    from cellspot.segment.train import train_model

    work = Path(args.work) / model
    t0, c0 = time.time(), cpu_seconds()
    data = build_training_set(model, movies, work / "coco", preprocess,
                              stain_dropout=args.stain_dropout, n_real_nuclei=args.real_nuclei)
    log(f"{model}: {data['slices']} training slices, {data['instances']} instances "
        f"({time.time() - t0:.0f} s)")
    t1, c1 = time.time(), cpu_seconds()
    iters = int(args.iters or profile[model])
    pretrained = (str(starter_files(model, "pretrained")["checkpoint"])
                  if args.pretrained == "builtin" else args.pretrained)
    parent = read_card(model) if args.pretrained == "builtin" else None
    crop = int(args.crop_size or profile["crop"][model]) or None
    paths = train_model(model, work / "coco", work / "model", threads=args.threads,
                        max_iters=iters, batch_size=profile["batch_size"], lr=profile["lr"],
                        checkpoint_interval=max(50, iters // 4), val_interval=0,
                        log_interval=max(1, iters // 100), amp=profile["amp"], seed=0,
                        num_workers=0, crop_size=crop, device=args.device,
                        load_from=pretrained)
    train_s, train_cpu = time.time() - t1, cpu_seconds() - c1
    log(f"{model}: trained {iters} iterations in {train_s / 60:.1f} min")
    held_out = benchmark_movies(args.bench_movies)
    bench = benchmark(model, paths, held_out, preprocess)
    # the shipped model on the same held-out sets, in the same run: what this one must beat
    if (STARTER_DIR / model / "checkpoint.pth").is_file():
        shipped = {k: v for k, v in starter_files(model).items() if k != "card"}
        bench["shipped_score"] = benchmark(model, shipped, held_out, preprocess)["score"]
        log(f"{model}: score {bench['score']:.4f}, shipped model {bench['shipped_score']:.4f}")
    # a shipped config names no file of this machine (fine-tuning's load_from)
    config_text = re.sub(r"^load_from = .*$", "load_from = None",
                         Path(paths["config"]).read_text(), flags=re.M)
    card = {
        "model": model,
        "recipe": "recipes/starter_models.py",
        "command": " ".join(sys.argv),
        "config": str(default_config_path(model).relative_to(ROOT)),
        "training_data": {**{k: v for k, v in data.items() if k != "movie_settings"},
                          **simulation_time},
        "training": {"iterations": iters, "batch_size": profile["batch_size"],
                     "lr": profile["lr"], "amp": profile["amp"], "seed": 0,
                     "crop_size": crop, "device": args.device or "auto",
                     "pretrained": ({"from": "the shipped starter model",
                                     "its_date": parent["date"],
                                     "its_training": parent["training"],
                                     "its_data": {k: v for k, v in parent["training_data"].items()
                                                  if k != "preprocess"}}
                                    if parent else args.pretrained),
                     "threads": args.threads, "wall_min": round(train_s / 60, 1),
                     "cpu_min": round(train_cpu / 60, 1),
                     "data_wall_min": round((t1 - t0) / 60, 1),
                     "data_cpu_min": round((c1 - c0) / 60, 1)},
        "benchmark": bench,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
    }
    (work / "movie_settings.json").write_text(json.dumps(data["movie_settings"], indent=1))
    out = export_checkpoint(paths["checkpoint"], Path(args.out) / model, config_text, card)
    log(f"{model}: wrote {out['checkpoint']} ({out['checkpoint'].stat().st_size / 2**20:.1f} MB), "
        f"benchmark score {bench['score']:.3f}")
    return {"card": json.loads(out["card"].read_text()), "dir": Path(args.out) / model}


def install(model: str, built: Path) -> bool:
    """Copy a built model into the package when its benchmark beats the shipped one."""
    new = json.loads((built / "card.json").read_text())
    old = new["benchmark"].get("shipped_score", -1.0)  # measured in the same run
    if new["benchmark"]["score"] <= old:
        log(f"{model}: score {new['benchmark']['score']:.3f} does not beat the shipped "
            f"{old:.3f}: not installed")
        return False
    dst = STARTER_DIR / model
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("checkpoint.pth", "config.py", "card.json"):
        shutil.copyfile(built / f, dst / f)
    log(f"{model}: installed into {dst} (score {old:.3f} -> {new['benchmark']['score']:.3f})")
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--out", default=str(ROOT / "build" / "starter_models"))
    p.add_argument("--work", default=str(ROOT / "build" / "starter_work"))
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    p.add_argument("--profile", choices=sorted(PROFILES),
                   help="default: gpu with a CUDA device, else cpu")
    p.add_argument("--iters", type=int, help="training iterations (default: the profile's)")
    p.add_argument("--movies", type=int, default=40, help="simulated training movies")
    p.add_argument("--bench-movies", type=int, default=3, help="random held-out movies")
    p.add_argument("--pretrained", default=None,
                   help="fine-tune from this checkpoint ('builtin': the shipped model) "
                        "instead of training from scratch")
    p.add_argument("--stain-dropout", type=float, default=1.0,
                   help="cells: scale of the shares of simulated slices trained without "
                        "a cytoplasm and/or RNA stain (STAIN_DROPOUT; 0: none)")
    p.add_argument("--real-nuclei", type=int, default=200,
                   help="cells: DSB2018 training-source images mixed in (0: none; skipped "
                        "when ../shared/data is absent)")
    p.add_argument("--lr", type=float, help="learning rate (default: the profile's)")
    p.add_argument("--crop-size", type=int, default=0,
                   help="random training crops (px; default: the profile's)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--install", action="store_true",
                   help="copy improved models into src/cellspot/starter_models/")
    args = p.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available() if args.device is None else args.device.startswith("cuda")
    profile = dict(PROFILES[args.profile or ("gpu" if cuda else "cpu")])
    profile["lr"] = args.lr or profile["lr"]
    preprocess = default_preprocess()
    t0, c0 = time.time(), cpu_seconds()
    movies = training_movies(args.movies)
    sim_min = {"simulation_wall_min": round((time.time() - t0) / 60, 1),
               "simulation_cpu_min": round((cpu_seconds() - c0) / 60, 1)}
    log(f"training movies simulated in {sim_min['simulation_wall_min']} min")
    for model in args.models:
        built = train_one(model, args, profile, preprocess, movies, sim_min)
        if args.install:
            install(model, built["dir"])
    log(f"done in {(time.time() - t0) / 60:.1f} min, CPU {cpu_seconds() / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
