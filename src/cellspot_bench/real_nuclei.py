"""Real annotated nuclei of ``../shared/data`` for training recipes and benchmarks.

- DSB2018 (``nuclei2d_dsb2018``, CC0): 541 2D fluorescence nuclear stains of many sources. The
  set names no source; the image size stands in for it (each size group is one kind of
  acquisition), so :data:`DSB_TEST_SIZE` is held out as an unseen source.
- QCANet (``nuclei3d_qcanet``, BBBC050): a real 3D mouse embryo, 8 nuclei, z:y:x = 2.18:1:1.
  A test only: never trained on.

Images are given to the cells model as the workflow gives a nuclei-only movie: the nucleus
stain in the nucleus channel, the absent stains as zeros.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .metrics import MatchResult, match_instances

# Held-out acquisition source of DSB2018: the 520 x 696 px images (90 of 541).
DSB_TEST_SIZE = (520, 696)
QCANET_ANISOTROPY = (2.18, 1.0, 1.0)


def shared_data() -> Path:
    """``$CELLSPOT_SHARED/data``, else ``shared/data`` beside the repository."""
    root = os.environ.get("CELLSPOT_SHARED")
    return (Path(root) if root else Path(__file__).resolve().parents[3] / "shared") / "data"


def dsb_ids(split: str, data: Path | None = None) -> list[str]:
    """Fluorescence image ids of DSB2018, ``split`` "train" (other sources) or "test"."""
    d = (data or shared_data()) / "nuclei2d_dsb2018"
    with open(d / "index.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["modality"] == "fluorescence"]
    test = [(int(r["h"]), int(r["w"])) == DSB_TEST_SIZE for r in rows]
    return [r["id"] for r, t in zip(rows, test) if t == (split == "test")]


def nuclei_only_input(nucleus: np.ndarray, n_channels: int = 3) -> np.ndarray:
    """``(..., C)`` model input of a nucleus stain alone: the other channels zero."""
    nucleus = np.asarray(nucleus, np.float32)
    out = np.zeros(nucleus.shape + (n_channels,), np.float32)
    out[..., 0] = nucleus
    return out


def normalized_nuclei(image: np.ndarray, sigma_px: float = 1.0) -> np.ndarray:
    """The workflow's nucleus preprocessing (percentiles 1-99.8 to 0-1, light smoothing)."""
    from scipy.ndimage import gaussian_filter

    from cellspot.segment.coco import normalize_volume

    img = np.asarray(image, np.float32)
    if img.ndim == 3 and img.shape[-1] in (3, 4):  # an RGB(A) rendering of one stain
        img = img[..., :3].max(-1)
    sig = (0,) * (img.ndim - 2) + (sigma_px, sigma_px)
    return normalize_volume(gaussian_filter(img, sig))


def dsb_images(ids: Sequence[str], data: Path | None = None
               ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(id, normalised image (Y, X), instance labels (Y, X))`` of DSB2018 images."""
    import tifffile

    d = (data or shared_data()) / "nuclei2d_dsb2018"
    for i in ids:
        img = tifffile.imread(d / "images" / f"{i}.tif")
        yield i, normalized_nuclei(img), np.asarray(tifffile.imread(d / "masks" / f"{i}.tif"))


def qcanet(data: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(normalised image (Z, Y, X), instance labels)`` of the QCANet 8-cell embryo."""
    import tifffile

    d = (data or shared_data()) / "nuclei3d_qcanet"
    raw = tifffile.imread(d / "images_raw" / "8_cell_stage.tif")
    return normalized_nuclei(raw), np.asarray(
        tifffile.imread(d / "instances_derived" / "8_cell_stage.tif"))


GONUCLEAR_CROPS = ("1135_mini", "1136_mini")
GONUCLEAR_VOXEL = (0.284, 0.127, 0.127)


def gonuclear(crop: str, data: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(normalised image (Z, Y, X), instance labels)`` of a GoNuclear crop (Arabidopsis
    ovule, confocal; :data:`GONUCLEAR_VOXEL` µm)."""
    import tifffile

    d = (data or shared_data()) / "nuclei3d_gonuclear"
    return (normalized_nuclei(tifffile.imread(d / "images" / f"{crop}.tif")),
            np.asarray(tifffile.imread(d / "masks" / f"{crop}.tif")))


def _nuclei(stack: np.ndarray, table, threshold: float) -> np.ndarray:
    keep = table[(table["class"] == "nucleus") & (table["score"] >= threshold)]["instance"]
    return np.where(np.isin(stack, keep), stack, 0)


def ap50(m: MatchResult) -> float:
    """Instance AP at IoU 0.5 as the CTC/DSB define it: TP / (TP + FP + FN)."""
    return m.tp / max(m.tp + m.fp + m.fn, 1)


def _sum(ms: Sequence[MatchResult]) -> MatchResult:
    return MatchResult(sum(m.tp for m in ms), sum(m.fp for m in ms), sum(m.fn for m in ms))


def evaluate_dsb(segmenter, ids: Sequence[str], threshold: float = 0.5,
                 data: Path | None = None) -> dict:
    """Nucleus AP@0.5 of a cells model over DSB2018 images (matches summed over images)."""
    res = []
    for _, img, gt in dsb_images(ids, data):
        stacks, tables = segmenter.segment_slices(nuclei_only_input(img)[None])
        res.append(match_instances(gt, _nuclei(stacks["nucleus"][0], tables[0], threshold), 0.5))
    m = _sum(res)
    return {"images": len(res), **m.as_dict(), "ap50": round(ap50(m), 4)}


def evaluate_3d(segmenter, img: np.ndarray, gt: np.ndarray, anisotropy: Sequence[float],
                threshold: float = 0.5) -> dict:
    """Nucleus AP@0.5 of a cells model on a real 3D stack (nucleus stain alone), per slice and
    in 3D after the merge stage's stitching, with Otsu + connected components as the
    baseline. ``pred`` holds the stitched 3D nuclei (for pictures)."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    from cellspot.merge import stitch_slices

    stacks, tables = segmenter.segment_slices(nuclei_only_input(img))
    kept = np.stack([_nuclei(stacks["nucleus"][z], tables[z], threshold)
                     for z in range(img.shape[0])])
    fg = img > threshold_otsu(img)
    per_slice = _sum([match_instances(gt[z], kept[z], 0.5) for z in range(img.shape[0])])
    base_slice = _sum([match_instances(gt[z], label(fg[z]), 0.5) for z in range(img.shape[0])])
    pred = stitch_slices(kept, anisotropy=anisotropy)
    in_3d = match_instances(gt, pred, 0.5)
    base_3d = match_instances(gt, label(fg), 0.5)
    return {"ap50_slice": round(ap50(per_slice), 4), "ap50_3d": round(ap50(in_3d), 4),
            "otsu_cc_ap50_slice": round(ap50(base_slice), 4),
            "otsu_cc_ap50_3d": round(ap50(base_3d), 4),
            "slice": per_slice.as_dict(), "3d": in_3d.as_dict(), "pred": pred}


def evaluate_qcanet(segmenter, threshold: float = 0.5, data: Path | None = None) -> dict:
    """:func:`evaluate_3d` on the QCANet embryo (z:y:x = 2.18:1:1), without the labels."""
    img, gt = qcanet(data)
    res = evaluate_3d(segmenter, img, gt, QCANET_ANISOTROPY, threshold)
    res.pop("pred")
    return res
