"""Accuracy of the merge stage: 3D instances from 2D slices, and 3D RNA spot localisation.

Part 1, stitching. Ground-truth 3D labels are cut into per-slice 2D instances (connected
components of each object's section, ids shuffled per slice), optionally perturbed as a 2D
segmenter errs (per 2D instance: dropped, cut in two, merged with a touching neighbour), then
stitched by ours (:func:`cellspot.merge.stitch_slices`, default settings) and by the Cellpose
rule (:func:`cellspot_bench.baselines.stitch_slices_cellpose`, greedy argmax IoU >= 0.25) in
the same run.
3D AP@0.5 and AP@0.75 (TP / (TP + FP + FN)) against the truth, mean over seeds. Data: the
synthetic movie (cells and nuclei, cellspot.simulate), the real 8-cell mouse embryo nuclei
(QCANet/BBBC050) and StarDist's 3D nuclei (../shared/data; skipped when absent).

Part 2, spots. Per-slice spot detections on the simulated RNA channel (a plain 2D detector:
Gaussian smoothing, local maxima, 3x3 centroid) are merged into 3D spots and matched to the
true positions (Hungarian, 1 µm); localisation error in µm for the sub-pixel methods, against
the best single detection (its slice as z) as the baseline. Also the share of matched spots
given the true cell and compartment.

    .venv/bin/python benchmarks/merge_accuracy.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from cellspot import merge
from cellspot.simulate import SimulationConfig, simulate_movie
from cellspot_bench import real_nuclei
from cellspot_bench.baselines import stitch_slices_cellpose
from cellspot_bench.corrupt import slice_labels
from cellspot_bench.metrics import average_precision_at, match_points

DATA = real_nuclei.shared_data()
NOISE = {
    "clean": {},
    "drop 5%": dict(p_drop=0.05),
    "split 5%": dict(p_split=0.05),
    "merge 5%": dict(p_merge=0.05),
    "all 5%": dict(p_drop=0.05, p_split=0.05, p_merge=0.05),
    "all 10%": dict(p_drop=0.1, p_split=0.1, p_merge=0.1),
}


def datasets(movie, quick):
    out = []
    T = 1 if quick else movie.cells.shape[0]
    for t in range(T):
        out.append((f"synthetic cells t{t}", movie.cells[t], movie.meta.voxel_size))
        out.append((f"synthetic nuclei t{t}", movie.nuclei[t], movie.meta.voxel_size))
    try:
        import tifffile
    except ImportError:  # pragma: no cover
        return out
    q = DATA / "nuclei3d_qcanet" / "instances_derived" / "8_cell_stage.tif"
    if q.exists():
        out.append(("real embryo nuclei (QCANet)", tifffile.imread(q), (2.18, 1.0, 1.0)))
    else:
        print(f"skipping real nuclei: {q} not found")
    s = DATA / "nuclei_stardist" / "mask3d.tif"
    if s.exists():
        out.append(("StarDist 3D nuclei", tifffile.imread(s), (1.0, 1.0, 1.0)))
    else:
        print(f"skipping StarDist nuclei: {s} not found")
    return out


def stitching(movie, seeds, quick):
    rows = []
    settings = merge.MergeSettings()
    for name, truth, vs in datasets(movie, quick):
        for noise, kw in NOISE.items():
            for seed in range(seeds):
                slices = slice_labels(truth, seed=seed, **kw)
                ours = merge.stitch_slices(
                    slices, settings.iou_threshold, settings.max_gap, vs,
                    fragment_containment=settings.fragment_containment,
                    merge_coverage=settings.merge_coverage, waist_ratio=settings.waist_ratio)
                base = stitch_slices_cellpose(slices)
                for method, pred in (("ours", ours), ("cellpose", base)):
                    ap = average_precision_at(truth, pred, (0.5, 0.75))
                    rows.append({"data": name.split(" t")[0] if name.startswith("synthetic")
                                 else name, "noise": noise, "seed": seed, "method": method,
                                 "AP50": ap[0.5], "AP75": ap[0.75], "n_pred": int(pred.max()),
                                 "n_true": len(np.unique(truth)) - 1})
    df = pd.DataFrame(rows)
    tab = df.pivot_table(index=["data", "noise"], columns="method", values=["AP50", "AP75"],
                         aggfunc="mean", sort=False)
    tab.columns = [f"{m} {a}" for a, m in tab.columns]
    tab = tab[["ours AP50", "cellpose AP50", "ours AP75", "cellpose AP75"]]
    print("\n3D instance AP (mean over seeds; ours vs Cellpose stitching on the same slices)")
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(tab.round(3).to_string())
    wins50 = (tab["ours AP50"] >= tab["cellpose AP50"] - 1e-9)
    wins75 = (tab["ours AP75"] >= tab["cellpose AP75"] - 1e-9)
    print(f"ours >= baseline: AP50 in {wins50.sum()}/{len(tab)} rows, AP75 in "
          f"{wins75.sum()}/{len(tab)} rows; mean AP50 {tab['ours AP50'].mean():.3f} vs "
          f"{tab['cellpose AP50'].mean():.3f}, mean AP75 {tab['ours AP75'].mean():.3f} vs "
          f"{tab['cellpose AP75'].mean():.3f}")
    return tab


def detect_2d(volume, sigma=1.0, k=6.0):
    """Per-slice spot detections: smoothed local maxima above median + k * MAD, 3x3 centroid."""
    rows = []
    for z, sl in enumerate(volume):
        sm = ndi.gaussian_filter(sl.astype(np.float64), sigma)
        bg = np.median(sm)
        mad = np.median(np.abs(sm - bg)) * 1.4826 + 1e-9
        peaks = (sm == ndi.maximum_filter(sm, size=3)) & (sm > bg + k * mad)
        ys, xs = np.nonzero(peaks)
        keep = (ys > 0) & (xs > 0) & (ys < sl.shape[0] - 1) & (xs < sl.shape[1] - 1)
        ys, xs = ys[keep], xs[keep]
        oy, ox = np.mgrid[-1:2, -1:2]
        w = np.stack([sm[ys + dy, xs + dx] for dy, dx in zip(oy.ravel(), ox.ravel())], 1) - bg
        w = np.clip(w, 0, None) + 1e-12
        y = ys + (w * oy.ravel()).sum(1) / w.sum(1)
        x = xs + (w * ox.ravel()).sum(1) / w.sum(1)
        area = (w > 0.5 * w.max(1, keepdims=True)).sum(1).astype(float)
        rows.append(pd.DataFrame({"z": z, "y": y, "x": x, "score": sm[ys, xs] - bg,
                                  "area": area}))
    return pd.concat(rows, ignore_index=True)


def spots(movie, quick):
    vs = np.asarray(movie.meta.voxel_size)
    rna_c = movie.meta.channel_index("rna")
    T = 1 if quick else movie.image.shape[0]
    res = {k: [] for k in ("gaussian", "centroid", "best detection")}
    n_truth = n_det = n_reach = 0
    comp_ok = cell_ok = n_cmp = 0
    counts = {}
    for t in range(T):
        img = movie.image[t, rna_c].astype(np.float32)
        truth = movie.spots[movie.spots.t == t].reset_index(drop=True)
        # The image is the raw frame: raw = sample + drift.
        d = movie.drift.set_index("t").loc[t, ["dz", "dy", "dx"]].to_numpy(float)
        tpos = truth[["z", "y", "x"]].to_numpy() + d
        det = detect_2d(img)
        # Upper bound of recall: true spots with any detection within 1 µm.
        near = cKDTree(det[["z", "y", "x"]].to_numpy(float) * vs).query(tpos * vs)[0] <= 1.0
        n_reach += int(near.sum())
        n_truth += len(truth)
        n_det += len(det)
        for method in ("gaussian", "centroid"):
            sp = merge.merge_spots(det, img, vs, settings=merge.SpotSettings(localisation=method))
            ti, pi = match_points(tpos, sp[["z", "y", "x"]].to_numpy(), 1.0, scale=vs)
            res[method].append((sp[["z", "y", "x"]].to_numpy()[pi] - tpos[ti]) * vs)
            counts.setdefault(method, [0, 0])
            counts[method][0] += len(ti)
            counts[method][1] += len(sp)
        # Baseline: each 3D spot is its best-scoring detection, at that detection's slice.
        members = merge.link_spot_detections(det, img, vs)
        best = det.assign(m=members).sort_values("score").groupby("m").tail(1)
        bpos = best[["z", "y", "x"]].to_numpy(float)
        ti, pi = match_points(tpos, bpos, 1.0, scale=vs)
        res["best detection"].append((bpos[pi] - tpos[ti]) * vs)
        counts["best detection"] = [counts.get("best detection", [0, 0])[0] + len(ti),
                                    counts.get("best detection", [0, 0])[1] + len(best)]
        if np.allclose(d, 0):
            # Cell and compartment with the stitched truth labels (sample = raw frame here).
            cells = merge.stitch_slices(slice_labels(movie.cells[t]))
            nuclei = merge.stitch_slices(slice_labels(movie.nuclei[t]))
            sp = merge.merge_spots(det, img, vs, cells=cells, nuclei=nuclei)
            ti, pi = match_points(tpos, sp[["z", "y", "x"]].to_numpy(), 1.0, scale=vs)
            # Map stitched ids to truth ids by overlap.
            pairs = pd.DataFrame({"p": cells.ravel(), "t": movie.cells[t].ravel()})
            pairs = pairs[pairs.p > 0].value_counts().reset_index()
            lut = pairs.drop_duplicates("p").set_index("p")["t"]
            pred_cell = lut.reindex(sp["cell_id"].to_numpy()[pi]).fillna(0).to_numpy()
            cell_ok += int((pred_cell == truth["cell_id"].to_numpy()[ti]).sum())
            comp_ok += int((sp["compartment"].to_numpy()[pi]
                            == truth["compartment"].to_numpy()[ti]).sum())
            n_cmp += len(ti)
    print(f"\n3D spots: {n_truth} true spots in {T} timepoints, {n_det} per-slice detections; "
          f"{n_reach / n_truth:.3f} of the true spots have a detection within 1 µm (the "
          f"detector's bound on recall)")
    print(f"{'method':16s} {'recall':>7s} {'precision':>9s} {'RMS z µm':>9s} {'RMS y µm':>9s} "
          f"{'RMS x µm':>9s} {'median 3D µm':>12s}")
    summary = {}
    for method, errs in res.items():
        e = np.concatenate(errs)
        rms = np.sqrt((e ** 2).mean(0))
        med = float(np.median(np.linalg.norm(e, axis=1)))
        tp, npred = counts[method]
        summary[method] = med
        print(f"{method:16s} {tp / n_truth:7.3f} {tp / max(npred, 1):9.3f} {rms[0]:9.3f} "
              f"{rms[1]:9.3f} {rms[2]:9.3f} {med:12.3f}")
    if n_cmp:
        print(f"cell and compartment of matched spots (t with zero drift, {n_cmp} spots): "
              f"cell {cell_ok / n_cmp:.3f}, compartment {comp_ok / n_cmp:.3f} correct")
    print(f"median 3D error: gaussian {summary['gaussian']:.3f} µm vs best detection "
          f"{summary['best detection']:.3f} µm "
          f"(ratio {summary['gaussian'] / summary['best detection']:.2f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one timepoint of the movie")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = SimulationConfig(n_timepoints=3, shape=(24, 256, 256), n_cells=20, n_divisions=1)
    movie = simulate_movie(cfg, seed=7)
    print(f"synthetic movie {movie.image.shape}, voxel {movie.meta.voxel_size} µm, "
          f"built in {time.perf_counter() - t0:.1f} s")
    stitching(movie, args.seeds, args.quick)
    spots(movie, args.quick)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
