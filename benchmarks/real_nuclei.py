"""Benchmark: the cells model on real nuclei it was never trained on, against a baseline model
and Otsu + connected components in the same run, with pictures of what it gets wrong.

Sets (``../shared/data``; ``cellspot_bench.real_nuclei``), each given as a nuclei-only movie
(the nucleus stain, the other channels zero):

- DSB2018, the held-out source (520 x 696 px images; never in the recipe's training data):
  nucleus AP@0.5 per image, matches summed;
- QCANet 8-cell mouse embryo (3D, z:y:x 2.18:1:1; a test only): AP@0.5 per slice and in 3D
  after the merge stage's stitching;
- GoNuclear Arabidopsis ovule crops (3D confocal, 0.284 / 0.127 µm): the same.

Usage::

    .venv/bin/python benchmarks/real_nuclei.py                       # the shipped model
    .venv/bin/python benchmarks/real_nuclei.py --model build/starter_models/cells \\
        --baseline builtin --out benchmarks/results/real_nuclei.json --png real_nuclei.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cellspot_bench import real_nuclei as rn  # noqa: E402


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def segmenter(model: str):
    from cellspot.segment.infer import Segmenter
    from cellspot.segment.starter import is_builtin, starter_files

    d = starter_files("cells") if is_builtin(model) else {
        "config": Path(model) / "config.py", "checkpoint": Path(model) / "checkpoint.pth"}
    return Segmenter(d["config"], d["checkpoint"], score_threshold=0.5, batch_size=4)


def evaluate(seg, n_dsb: int) -> tuple[dict, dict]:
    """Figures of one model, and its 3D predictions (for pictures)."""
    out, preds = {}, {}
    out["DSB2018 unseen source"] = rn.evaluate_dsb(seg, rn.dsb_ids("test")[:n_dsb])
    vs = np.asarray(rn.GONUCLEAR_VOXEL)
    stacks = [("QCANet embryo", rn.qcanet(), rn.QCANET_ANISOTROPY)] + [
        (f"GoNuclear {c}", rn.gonuclear(c), tuple(vs / vs[-1])) for c in rn.GONUCLEAR_CROPS]
    for name, (img, gt), anisotropy in stacks:
        res = rn.evaluate_3d(seg, img, gt, anisotropy)
        preds[name] = (img, gt, res.pop("pred"))
        out[name] = res
    return out, preds


def picture(preds: dict[str, dict], path: Path) -> None:
    """Middle slice of each 3D set: truth outlines (green) and each model's in 3D after
    stitching (magenta)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    models = list(preds)
    crops = list(preds[models[0]])
    fig, axes = plt.subplots(len(models), len(crops), figsize=(4 * len(crops), 4 * len(models)),
                             squeeze=False)
    for i, m in enumerate(models):
        for j, c in enumerate(crops):
            img, gt, pred = preds[m][c]
            z = int(np.argmax((gt > 0).sum((1, 2))))  # the slice with most nuclei
            rgb = np.repeat(np.clip(img[z], 0, 1)[..., None], 3, -1) * 0.8
            rgb[find_boundaries(gt[z])] = (0.1, 0.9, 0.1)
            rgb[find_boundaries(pred[z])] = (0.9, 0.1, 0.9)
            axes[i, j].imshow(rgb)
            axes[i, j].set_title(f"{m}: {c}, z={z}", fontsize=9)
            axes[i, j].axis("off")
    fig.suptitle("truth green, model magenta")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="builtin", help="model folder, or builtin")
    ap.add_argument("--baseline", default=None, help="a second model in the same run")
    ap.add_argument("--dsb-images", type=int, default=90)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--png", help="write the picture here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    figures, preds = {}, {}
    for name in [args.model] + ([args.baseline] if args.baseline else []):
        t0 = time.time()
        figures[name], preds[name] = evaluate(segmenter(name), args.dsb_images)
        log(f"{name}: {time.time() - t0:.0f} s")
    sets = list(figures[args.model])
    print(f"\n| set | {' | '.join(figures)} | Otsu + connected components |")
    print("|---|" + "---|" * (len(figures) + 1))
    for s in sets:
        if "ap50" in figures[args.model][s]:
            cells = [f"{figures[m][s]['ap50']:.3f}" for m in figures]
            base = "-"
        else:
            cells = [f"{figures[m][s]['ap50_slice']:.3f} / {figures[m][s]['ap50_3d']:.3f}"
                     for m in figures]
            b = figures[args.model][s]
            base = f"{b['otsu_cc_ap50_slice']:.3f} / {b['otsu_cc_ap50_3d']:.3f}"
        print(f"| {s} (AP@0.5{'' if base == '-' else ' per slice / 3D'}) | "
              f"{' | '.join(cells)} | {base} |")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1, default=float))
    if args.png:
        picture(preds, Path(args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
