"""The shipped starter models, end to end, on simulated movies nobody trained on.

For each movie the real workflow runs (Snakemake, local profile, ``config/demo.yaml``: the
starter models, nothing trained or tuned) and rule ``truth_check`` compares its own outputs
with the simulation's truth: spot F1 in 3D, cell and nucleus AP@0.5 in 3D, divisions, CTC TRA,
RNA per cell. Classical baselines on the same preprocessed movie in the same run: 3D LoG +
Otsu for the spots (scored like the workflow's), Otsu + watershed from nucleus seeds for cells.

Movies: ``demo`` (seed 0, what ``cellspot demo`` runs), ``crowded`` (more and faster cells, two
divisions), ``dim`` (dim spots on a brighter background, more RNA), ``small-cells`` (smaller
cells at a finer voxel size, other PSF). Seeds 0, 31, 32, 33: no test or training uses them.

    .venv/bin/python benchmarks/starter_models.py [--movies demo crowded] [--work /tmp/sb]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from cellspot.layout import in_batch
from workflow_run import ROOT, log, movie_parser, run_simulated

MOVIES = {
    "demo": ({}, 0),
    "crowded": ({"n_cells": 14, "shape": (16, 192, 192), "n_divisions": 2,
                 "cell_speed": 0.8}, 31),
    "dim": ({"spot_photons": (120.0, 250.0), "background_photons": 100.0,
             "spots_per_cell": (30, 50)}, 32),
    "small-cells": ({"voxel_size": (0.4, 0.16, 0.16), "cell_radius": (3.0, 2.5),
                     "n_cells": 10, "psf_sigma": (1.2, 1.3)}, 33),
}


def baseline_spots(rna: np.ndarray, sigma_px) -> pd.DataFrame:
    """3D LoG + Otsu on the preprocessed RNA channel of every timepoint (t, z, y, x)."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu

    rows = []
    for t, vol in enumerate(rna):
        resp = -ndi.gaussian_laplace(vol.astype(np.float32), sigma_px)
        peaks = peak_local_max(resp, min_distance=2, threshold_abs=1e-12, exclude_border=False)
        v = resp[tuple(peaks.T)]
        thr = threshold_otsu(v) if len(np.unique(v)) > 1 else np.inf
        rows += [(t, *p) for p in peaks[v >= thr].astype(float)]
    return pd.DataFrame(rows, columns=["t", "z", "y", "x"])


def baseline_cells(nuc: np.ndarray, cyto: np.ndarray) -> np.ndarray:
    """Otsu foreground of nucleus + cytoplasm stains, watershed from Otsu nucleus seeds."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label
    from skimage.segmentation import watershed

    out = np.zeros(nuc.shape, np.int32)
    for t in range(nuc.shape[0]):
        fg = (nuc[t] + cyto[t]) > threshold_otsu(nuc[t] + cyto[t])
        seeds = label(nuc[t] > threshold_otsu(nuc[t]))
        out[t] = watershed(-ndi.distance_transform_edt(fg), seeds, mask=fg)
    return out


def run_movie(name: str, work: Path) -> dict:
    from cellspot.omezarr import open_array, read_meta
    from cellspot_bench import truth_check

    settings, seed = MOVIES[name]
    run = run_simulated(name, settings, seed, work)
    res, movie = run.results, run.movie
    check = json.loads(in_batch(res, "truth_json").read_text())
    # baselines on the same preprocessed movie, scored with the same functions
    pre = in_batch(res, "preprocessed")
    meta, img = read_meta(pre), np.asarray(open_array(pre)[...])
    truth = truth_check.read_truth(run.truth)
    sz, sxy = movie.config.psf_sigma
    spots = baseline_spots(img[:, meta.channel_index("rna")], (sz, sxy, sxy))
    base_f1 = truth_check.spot_match(truth["spots"], spots, meta.voxel_size)["f1"]
    cells = baseline_cells(img[:, meta.channel_index("nucleus")],
                           img[:, meta.channel_index("cytoplasm")])
    base_ap = float(np.mean(truth_check.ap_per_frame(truth["cells"], cells)))
    return {"movie": name, "seed": seed, "wall_s": round(run.wall_s, 1), "check": check,
            "baseline": {"spot_f1_log_otsu_3d": base_f1, "cell_ap50_otsu_watershed": base_ap}}


def row(r: dict) -> dict:
    c = r["check"]
    rna = c["rna_per_cell"]
    return {"movie": r["movie"], "spot F1": c["spots"]["f1"],
            "spot F1 LoG+Otsu": r["baseline"]["spot_f1_log_otsu_3d"],
            "cell AP@0.5": c["cell_ap50"],
            "cell AP@0.5 Otsu+watershed": r["baseline"]["cell_ap50_otsu_watershed"],
            "nucleus AP@0.5": c["nucleus_ap50"],
            "cells found/true": f"{c['cells_per_frame']['found']:.1f}/"
                                f"{c['cells_per_frame']['true']:.1f}",
            "divisions found/true (false)": f"{c['divisions']['found']}/{c['divisions']['true']}"
                                            f" ({c['divisions']['false']})",
            "TRA": c["tracking"]["TRA"],
            "RNA/cell mean err": rna["mean_abs_error"],
            "RNA/cell within 10%": rna["within_10pct"],
            "workflow wall s": r["wall_s"]}


def main(argv=None) -> int:
    args = movie_parser(__doc__, MOVIES, "/tmp/cellspot-starter-bench").parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from cellspot.segment.starter import read_card

    for m in ("cells", "spots"):
        card = read_card(m)
        log(f"starter {m}: {card['training']['iterations']} iterations, "
            f"{card['training']['cpu_min']} CPU min, {card.get('checkpoint_mb')} MB, "
            f"card score {card['benchmark']['score']}")
    results = []
    for name in args.movies:
        r = run_movie(name, Path(args.work))
        log(f"{name}: " + json.dumps(row(r)))
        results.append(r)
    table = pd.DataFrame([row(r) for r in results])
    with pd.option_context("display.width", 250, "display.max_columns", 30,
                           "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
