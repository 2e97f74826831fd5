"""Accuracy of the Mask R-CNN segmentation against a classical baseline measured in the same run.

Parts (each trains its own model on the CPU, or GPU if present, within a time budget):

1. ``spots``: spot model trained on a synthetic movie (seed 11), score threshold chosen on a
   validation movie (seed 12), evaluated on a held-out movie (seed 13): per-slice spot
   precision/recall/F1 at 3 px (Hungarian), truth = spots within 0.5 slice of the slice. The
   baseline is LoG + Otsu (sigma = the simulated PSF) on the same slices.
2. ``smfish``: the real smFISH image (../shared/data/smfish2d_instapipeline, 700 crop), spot model
   trained *without annotations* (spots rendered with the PSF measured on the image itself,
   placed into its spot-free background), F1 at 3 px after the documented (-2, -2) px offset of
   the annotations; LoG + Otsu and LoG at the best threshold (chosen with the answers) alongside.
3. ``cells``: cells model trained on a synthetic movie (seed 21), evaluated on another (seed 23):
   COCO segm mAP (pycocotools), per-class IoU and global accuracy of the semantic map derived
   from the instances; then nucleus AP@0.5 (TP/(TP+FP+FN), per slice) on the real 3D nuclei
   (../shared/data/nuclei3d_qcanet), with the nucleus stain in the nucleus channel and the other
   channels empty. Baseline for nuclei: Otsu threshold + connected components per slice.

Usage::

    python benchmarks/segment_accuracy.py --parts spots smfish cells --minutes 12 10 12 \
        --work /tmp/segbench
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellspot.segment import coco, spots_classic, training_data
from cellspot_bench import real_nuclei
from cellspot_bench.metrics import MatchResult, spot_f1

DATA = real_nuclei.shared_data()


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def _f1(truth, pred, d=3.0):
    """spot_f1 that also takes an empty truth or prediction (metrics.match_points cannot
    reshape an empty (0, 2) array)."""
    truth, pred = np.asarray(truth, float).reshape(-1, 2), np.asarray(pred, float).reshape(-1, 2)
    if len(truth) == 0 or len(pred) == 0:
        return MatchResult(0, len(pred), len(truth))
    return spot_f1(truth, pred, d)


def _sum(results):
    return MatchResult(sum(r.tp for r in results), sum(r.fp for r in results),
                       sum(r.fn for r in results))


def train_budgeted(model, coco_dir, out, minutes, probe_iters=4, narrow=True, **kw):
    """Train for about ``minutes``: measure s/iteration first, set max_iters from it.

    ``narrow``: the low-capacity variant (ResNet base 32 channels, FPN/heads 64) that a CPU can
    train in minutes.
    """
    from cellspot.segment.train import train_model
    from cellspot_bench.models import narrow_overrides

    if narrow:
        kw["overrides"] = narrow_overrides()
    from cellspot.segment.train import _scalars

    t0 = time.time()
    train_model(model, coco_dir, out / "probe", max_iters=probe_iters, checkpoint_interval=1000,
                val_interval=0, log_interval=1, **kw)
    rows, _ = _scalars(out / "probe" / "work")
    times = [r["time"] for r in rows if "time" in r][1:]
    per_iter = float(np.median(times)) if times else (time.time() - t0) / probe_iters
    iters = max(20, int(minutes * 60 / (per_iter * 1.1)))
    log(f"{model}: {per_iter:.2f} s/iteration (probe) -> {iters} iterations")
    t0 = time.time()
    paths = train_model(model, coco_dir, out / "model", max_iters=iters,
                        checkpoint_interval=max(50, iters // 4), val_interval=0,
                        log_interval=max(1, iters // 50), time_limit_s=minutes * 60 * 1.3, **kw)
    log(f"{model}: trained in {time.time() - t0:.0f} s, loss curves {paths['loss_png']}")
    return paths


def movie_slices(movie, channels):
    """Normalised (T, Z, Y, X, C) input slices of a simulated movie (like preprocessing)."""
    img = np.asarray(movie.image, np.float32)[:, [movie.meta.channel_index(c) for c in channels]]
    img = np.stack([coco.normalize_volume(img[:, c]) for c in range(img.shape[1])], -1)
    return img  # (T, Z, Y, X, C)


def truth_spots(movie, t, z):
    s = movie.spots[movie.spots["t"] == t]
    d = movie.drift.set_index("t").loc[t]
    zz = s["z"] + d["dz"]
    sel = np.abs(zz - z) <= 0.5
    return np.stack([s["y"][sel] + d["dy"], s["x"][sel] + d["dx"]], 1)


# --------------------------------------------------------------------------- spots (synthetic)


def part_spots(work, minutes, sim_kw, threads, narrow=True):
    from cellspot.segment.infer import Segmenter
    from cellspot.simulate import SimulationConfig, simulate_movie

    work = work / "spots"
    cfg = SimulationConfig(**sim_kw)
    train_movie = simulate_movie(cfg, seed=11)
    coco.coco_from_simulation(train_movie, "spots", work / "coco", ["rna"], val_fraction=0.0,
                              keep_empty=0.1)
    paths = train_budgeted("spots", work / "coco", work, minutes, narrow=narrow, threads=threads,
                           batch_size=4, lr=4e-4)
    seg = Segmenter(paths["config"], paths["checkpoint"], score_threshold=0.05, batch_size=4)
    sigma = cfg.psf_sigma[1]

    def evaluate(movie, thresholds):
        x = movie_slices(movie, ["rna"])
        per_thr = {th: [] for th in thresholds}
        log_res, n = [], 0
        for t in range(x.shape[0]):
            stacks, tables = seg.segment_slices(x[t])
            for z, tab in enumerate(tables):
                truth = truth_spots(movie, t, z)
                for th in thresholds:
                    sel = tab[tab["score"] >= th]
                    per_thr[th].append(_f1(truth, sel[["y", "x"]].to_numpy()))
                det = spots_classic.detect_spots_log(x[t, z, ..., 0], sigma)
                log_res.append(_f1(truth, det[["y", "x"]].to_numpy()))
                n += 1
        return {th: _sum(r) for th, r in per_thr.items()}, _sum(log_res), n

    thresholds = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    val, _, _ = evaluate(simulate_movie(SimulationConfig(**{**sim_kw, "n_timepoints": 2}),
                                        seed=12), thresholds)
    best = max(thresholds, key=lambda th: val[th].f1)
    log(f"spots: threshold chosen on the validation movie: {best} (F1 {val[best].f1:.3f})")
    test, log_test, n = evaluate(simulate_movie(cfg, seed=13), [best, 0.5])
    res = {"slices": n, "threshold": best, "maskrcnn": test[best].as_dict(),
           "maskrcnn_at_0.5": test[0.5].as_dict(), "log_otsu": log_test.as_dict()}
    print_row("synthetic held-out (seed 13), spots, F1 @3 px", test[best], log_test)
    return res


# --------------------------------------------------------------------------- smFISH (real)


def part_smfish(work, minutes, threads, model_dir=None, narrow=True, seed=5):
    """``model_dir``: evaluate that trained model (config.py, checkpoint.pth), do not train;
    ``seed``: of the rendered training images (a repeat with another seed shows the spread)."""
    from skimage.io import imread

    from cellspot.segment.infer import Segmenter

    d = DATA / "smfish2d_instapipeline"
    if not d.is_dir():
        log("smfish: data not found, skipped")
        return None
    work = work / "smfish"
    img = np.asarray(imread(d / "image_700.png"), np.float64)
    img = img[..., 0] if img.ndim == 3 else img
    ann = pd.read_csv(d / "700.csv")
    truth = ann[["row", "col"]].to_numpy(float) - 2.0  # documented annotation offset
    f = work / "image_700.tif"
    f.parent.mkdir(parents=True, exist_ok=True)
    import tifffile

    tifffile.imwrite(f, img.astype(np.float32))
    if model_dir:
        paths = _model_paths(model_dir)
    else:
        # No annotations used: PSF measured on the image, spots rendered into its background.
        training_data.build_training_coco("spots", {"source": "psf_synthetic", "images": [str(f)],
                                           "n_copies": 24, "val_fraction": 0.0, "seed": seed},
                                 work / "coco", ["rna"])
        paths = train_budgeted("spots", work / "coco", work, minutes, narrow=narrow,
                               threads=threads, batch_size=4, lr=4e-4, crop_size=128)
    sigma, _ = spots_classic.estimate_psf_sigma([img])
    x = coco.normalize_volume(img)[None, ..., None].astype(np.float32)
    # threshold chosen on the synthetic (rendered) training images' statistics is not
    # available here; report the default 0.5 and the curve, without and with TTA.
    curves = {}
    for tta in (False, True):
        seg = Segmenter(paths["config"], paths["checkpoint"], score_threshold=0.05,
                        batch_size=1, tile_size=512, tile_overlap=32, tta=tta)
        tab = seg.segment_slices(x)[1][0]
        curves[tta] = {th: spot_f1(truth, tab[tab["score"] >= th][["y", "x"]].to_numpy(), 3.0)
                       for th in (0.1, 0.3, 0.5, 0.7, 0.9)}
    curve = curves[False]
    det = spots_classic.detect_spots_log(img, sigma)
    log_otsu = spot_f1(truth, det[["y", "x"]].to_numpy(), 3.0)
    # LoG at the best threshold chosen with the answers (an upper bound for that detector)
    allp = spots_classic.detect_spots_log(img, sigma, threshold=1e-9)
    best_log = max((spot_f1(truth, allp[allp["response"] >= th][["y", "x"]].to_numpy(), 3.0)
                    for th in np.quantile(allp["response"], np.linspace(0.5, 0.999, 300))),
                   key=lambda m: m.f1)
    log(f"smfish: PSF sigma {sigma:.2f} px; Mask R-CNN F1 by score threshold: "
        + ", ".join(f"{k}: {v.f1:.3f}" for k, v in curve.items()))
    print_row("real smFISH (700 crop), F1 @3 px, no annotations", curve[0.5], log_otsu)
    log("smfish: with test-time augmentation (8 rotations/reflections fused), F1 by score "
        "threshold: " + ", ".join(f"{k}: {v.f1:.3f}" for k, v in curves[True].items()))
    print_row("real smFISH, Mask R-CNN with TTA", curves[True][0.5], log_otsu)
    log(f"smfish: LoG at the best threshold (chosen with the answers): F1 {best_log.f1:.3f}")
    return {"sigma": sigma, "maskrcnn_at_0.5": curve[0.5].as_dict(),
            "maskrcnn_tta_at_0.5": curves[True][0.5].as_dict(),
            "maskrcnn_tta_curve": {k: v.f1 for k, v in curves[True].items()},
            "maskrcnn_curve": {k: v.f1 for k, v in curve.items()},
            "log_otsu": log_otsu.as_dict(), "log_best_threshold": best_log.as_dict()}


# --------------------------------------------------------------------------- cells


def _coco_segm_map(truth_slices, pred_slices):
    """COCO segm mAP of predicted label slices (with scores) against truth label slices."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    cats = ["nucleus", "cell"]
    images, anns, dets = [], [], []
    for k, (tr, (pr, tabs)) in enumerate(zip(truth_slices, pred_slices)):
        images.append({"id": k + 1, "height": tr["nucleus"].shape[0],
                       "width": tr["nucleus"].shape[1], "file_name": f"{k}"})
        for ci, c in enumerate(cats):
            anns += coco.label_annotations(tr[c], ci + 1, k + 1, first_id=len(anns) + 1)
            t = tabs[tabs["class"] == c]
            for row in t.itertuples():
                dets.append({"image_id": k + 1, "category_id": ci + 1, "score": float(row.score),
                             "segmentation": coco.encode_mask(pr[c] == row.instance)})
    gt_doc = {"images": images, "annotations": anns,
              "categories": [{"id": i + 1, "name": c} for i, c in enumerate(cats)]}
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = gt_doc
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dets:
            return 0.0, {c: 0.0 for c in cats}
        dt = gt.loadRes(dets)
        out = {}
        for ci, c in enumerate(cats + ["all"]):
            ev = COCOeval(gt, dt, "segm")
            if c != "all":
                ev.params.catIds = [ci + 1]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[c] = float(ev.stats[0])
    return out.pop("all"), out


def _semantic_scores(conf):
    iou = {n: float(conf[i, i] / max(conf[i].sum() + conf[:, i].sum() - conf[i, i], 1))
           for i, n in enumerate(["background", "cytoplasm", "nucleus"])}
    return iou, float(np.trace(conf) / conf.sum())


def part_cells(work, minutes, sim_kw, threads, narrow=True):
    """Cells model: COCO segm mAP and the semantic map derived from its instances."""
    from cellspot.merge import semantic_map
    from cellspot.segment.infer import Segmenter
    from cellspot.segment.models import default_config_path
    from cellspot.simulate import SimulationConfig, simulate_movie

    work = work / "cells"
    cfg = SimulationConfig(**sim_kw)
    channels = ["nucleus", "cytoplasm", "rna"]
    coco.coco_from_simulation(simulate_movie(cfg, seed=21), "cells", work / "coco", channels,
                              val_fraction=0.0, keep_empty=0.1)
    paths = train_budgeted("cells", work / "coco", work, minutes, narrow=narrow, threads=threads,
                           batch_size=2, lr=2e-4, config_path=default_config_path("cells"))
    seg = Segmenter(paths["config"], paths["checkpoint"], score_threshold=0.05, batch_size=4)
    movie = simulate_movie(cfg, seed=23)
    x = movie_slices(movie, channels)
    shifts = movie.drift.set_index("t")[["dz", "dy", "dx"]]
    truth_sl, pred_sl = [], []
    conf = np.zeros((3, 3), np.int64)
    for t in range(x.shape[0]):
        sh = shifts.loc[t].to_numpy(float)
        nuc = coco._shift_labels(np.asarray(movie.nuclei[t]), sh)
        cel = coco._shift_labels(np.asarray(movie.cells[t]), sh)
        stacks, tables = seg.segment_slices(x[t])
        for z in range(x.shape[1]):
            tr = {"nucleus": nuc[z], "cell": cel[z]}
            if not (nuc[z].any() or cel[z].any()):
                continue
            truth_sl.append(tr)
            pr = {"nucleus": stacks["nucleus"][z], "cell": stacks["cell"][z]}
            tab = tables[z][tables[z]["score"] >= 0.5]
            pred_sl.append((pr, tables[z]))
            st = semantic_map(tr["cell"], tr["nucleus"])
            keep = {c: np.isin(pr[c], tab[tab["class"] == c]["instance"]) * pr[c]
                    for c in pr}
            sp = semantic_map(keep["cell"], keep["nucleus"])
            conf += np.bincount(st.ravel() * 3 + sp.ravel(), minlength=9).reshape(3, 3)
    segm_map, per_class = _coco_segm_map(truth_sl, pred_sl)
    iou, acc = _semantic_scores(conf)
    log(f"cells: held-out (seed 23) COCO segm mAP {segm_map:.3f} "
        f"(nucleus {per_class['nucleus']:.3f}, "
        f"cell {per_class['cell']:.3f}); semantic map derived from the instances: IoU " +
        ", ".join(f"{k} {v:.3f}" for k, v in iou.items()) + f"; global accuracy {acc:.3f}")
    res = {"segm_mAP": segm_map, "segm_mAP_per_class": per_class,
           "semantic_iou": iou, "semantic_accuracy": acc}
    res["nuclei3d"] = part_nuclei3d(seg)
    return res


def part_nuclei3d(seg):
    """The cells model on the real QCANet embryo (nucleus stain alone), per slice and in 3D
    after the merge stage's stitching (:func:`cellspot_bench.real_nuclei.evaluate_qcanet`)."""
    if not (DATA / "nuclei3d_qcanet").is_dir():
        log("nuclei3d: data not found, skipped")
        return None
    res = real_nuclei.evaluate_qcanet(seg, 0.5, DATA)
    log(f"nuclei3d (real): nucleus AP@0.5 per slice {res['ap50_slice']:.3f} (Otsu + connected "
        f"components {res['otsu_cc_ap50_slice']:.3f}); in 3D after the merge stage "
        f"{res['ap50_3d']:.3f} ({res['otsu_cc_ap50_3d']:.3f})")
    return res


def _model_paths(model_dir):
    """The files of a model folder written by training (``models/<model>/``)."""
    d = Path(model_dir)
    return {"config": d / "config.py", "checkpoint": d / "checkpoint.pth"}


def _trained(model_dir):
    from cellspot.segment.infer import Segmenter

    if not model_dir:
        raise SystemExit("part nuclei3d needs --cells-model")
    paths = _model_paths(model_dir)
    return Segmenter(paths["config"], paths["checkpoint"], score_threshold=0.05, batch_size=4)


def print_row(what, m, baseline):
    log(f"{what}: Mask R-CNN P {m.precision:.3f} R {m.recall:.3f} F1 {m.f1:.3f} | "
        f"LoG+Otsu P {baseline.precision:.3f} R {baseline.recall:.3f} F1 {baseline.f1:.3f} | "
        f"ratio {m.f1 / max(baseline.f1, 1e-9):.3f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["spots", "smfish", "cells"])
    ap.add_argument("--minutes", nargs="+", type=float, default=[12, 10, 12],
                    help="training budget per part, in the order of --parts")
    ap.add_argument("--work", default="/tmp/cellspot_segbench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128, help="simulated field (px)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--spots-model", default=None,
                    help="part smfish: folder of a trained spot model to evaluate without "
                         "training")
    ap.add_argument("--cells-model", default=None,
                    help="part nuclei3d: folder of a trained cells model (config.py, "
                         "checkpoint.pth) to evaluate without training")
    ap.add_argument("--seed", type=int, default=5,
                    help="part smfish: seed of the rendered (annotation-free) training images")
    ap.add_argument("--full-width", action="store_true",
                    help="train the configs' full-width networks, not the narrow CPU variant")
    args = ap.parse_args(argv)
    narrow = not args.full_width
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    sim_kw = {"n_timepoints": 4, "shape": (12, args.size, args.size),
              "n_cells": max(3, int(8 * (args.size / 160) ** 2))}
    log(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads {args.threads}, "
        f"simulation {sim_kw}")
    minutes = dict(zip(args.parts, args.minutes + [args.minutes[-1]] * len(args.parts)))
    results = {}
    for part in args.parts:
        fn = {"spots": lambda: part_spots(work, minutes["spots"], sim_kw, args.threads, narrow),
              "smfish": lambda: part_smfish(work, minutes["smfish"], args.threads,
                                            args.spots_model, narrow, args.seed),
              "cells": lambda: part_cells(work, minutes["cells"], sim_kw, args.threads,
                                          narrow=narrow),
              "nuclei3d": lambda: part_nuclei3d(_trained(args.cells_model))}[part]
        results[part] = fn()
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    print(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    sys.exit(main())
