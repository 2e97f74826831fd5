"""Object size: slices rescaled so that objects appear at the size a model was trained at.

A Mask R-CNN model finds objects over the range of sizes it was trained on. A movie imaged at
another magnification (or of larger or smaller cells) is resized per slice by
:func:`slice_scale` before the model and its instances are mapped back to full resolution
(:func:`labels_at`), as Cellpose does with its ``diameter``. With ``auto``,
:func:`estimate_diameter_px` measures the nuclei on the first timepoint's nucleus stain, and
slices are rescaled only when that lies outside the size range the model was trained on
(:func:`auto_scale`; the starter model's card, ``training_data.nucleus_diameter_px``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def slice_scale(diameter_um: float, pixel_um: float, model_diameter_px: float) -> float:
    """Resize factor that shows objects ``diameter_um`` across (pixels ``pixel_um``) at the
    ``model_diameter_px`` the model was trained at."""
    if diameter_um <= 0 or pixel_um <= 0 or model_diameter_px <= 0:
        raise ValueError(f"sizes must be positive: diameter {diameter_um} µm, pixel "
                         f"{pixel_um} µm, model diameter {model_diameter_px} px")
    return float(model_diameter_px / (diameter_um / pixel_um))


def rescale_slices(images: np.ndarray, scale: float) -> np.ndarray:
    """``(N, H, W, C)`` slices resized by ``scale`` in y and x (linear; smoothed first when
    shrinking, so that no detail aliases)."""
    from skimage.transform import resize

    n, h, w, c = images.shape
    shape = (n, max(1, round(h * scale)), max(1, round(w * scale)), c)
    return resize(images, shape, order=1, anti_aliasing=scale < 1, preserve_range=True
                  ).astype(np.float32)


def labels_at(labels: np.ndarray, scores: np.ndarray, shape: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """A label image (ids 1..) resized to ``shape`` by nearest neighbour, with the scores of
    the ids that keep a pixel (ids made consecutive again)."""
    h, w = labels.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(int), w - 1)
    out = labels[np.ix_(rows, cols)]
    present = np.bincount(out.ravel(), minlength=len(scores) + 1)[1:len(scores) + 1] > 0
    if present.all():
        return out, scores
    remap = np.zeros(len(scores) + 1, out.dtype)
    remap[1:][present] = np.arange(1, present.sum() + 1)
    return remap[out], scores[present]


def estimate_diameter_px(image: np.ndarray) -> float | None:
    """Typical diameter (px) of the objects of a nucleus stain (one 2D slice).

    Foreground by Otsu's threshold after light smoothing; the distance transform's local
    maxima are the radii of the largest discs inside the objects, touching ones included; the
    median of 2 r + 1. Measured 2026-12-02 against the annotations: 0.9 (0.73-1.09, p10-p90)
    of the true median diameter on DSB2018 training images, 0.8 on the held-out source, 0.96
    on the QCANet embryo; about 0.55 on the GoNuclear ovule crops (dense, textured nuclei).
    None for an image without foreground.
    """
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu

    img = ndimage.gaussian_filter(np.asarray(image, np.float32), 1.0)
    if img.ndim != 2 or np.ptp(img) <= 0:
        return None
    dist = ndimage.distance_transform_edt(img > threshold_otsu(img))
    peaks = peak_local_max(dist, min_distance=2, threshold_abs=1.0, exclude_border=False)
    if len(peaks) == 0:
        return None
    return float(2.0 * np.median(dist[tuple(peaks.T)]) + 1.0)


def auto_scale(diameter_px: float | None, trained: dict) -> float:
    """Resize factor for objects ``diameter_px`` across: 1 inside the model's trained range
    (``trained``: ``low``, ``median``, ``high`` px), else the factor that brings them to its
    median."""
    if diameter_px is None or trained["low"] <= diameter_px <= trained["high"]:
        return 1.0
    return float(trained["median"] / diameter_px)
