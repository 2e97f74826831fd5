"""Object size: nuclei far from the size the cells model was trained at are rescaled."""

import numpy as np
import pytest
from scipy import ndimage

from cellspot.segment.scale import (
    auto_scale,
    estimate_diameter_px,
    labels_at,
    rescale_slices,
    slice_scale,
)

TRAINED = {"low": 10.0, "median": 15.0, "high": 45.0}


def _discs(d: float, seed: int = 0) -> np.ndarray:
    """Bright discs of diameter ``d`` px (touching ones too) on a noisy background."""
    rng = np.random.default_rng(seed)
    n = int(np.clip(40 * (30 / d) ** 2, 3, 60))
    side = max(256, int(d * 8))
    img = np.zeros((side, side))
    yy, xx = np.mgrid[:side, :side]
    for _ in range(n):
        cy, cx = rng.uniform(d, side - d, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (d / 2) ** 2] = rng.uniform(0.5, 1)
    return ndimage.gaussian_filter(img, 1) + rng.normal(0, 0.05, img.shape)


@pytest.mark.parametrize("d", [8, 20, 45, 110])
def test_diameter_estimate_within_15_percent(d):
    assert estimate_diameter_px(_discs(d)) == pytest.approx(d, rel=0.15)
    assert estimate_diameter_px(np.zeros((64, 64))) is None


def test_scale_only_outside_the_trained_range():
    assert auto_scale(12.0, TRAINED) == 1.0 and auto_scale(None, TRAINED) == 1.0
    assert auto_scale(90.0, TRAINED) == pytest.approx(1 / 6)
    assert auto_scale(5.0, TRAINED) == pytest.approx(3.0)
    assert slice_scale(10.0, 0.2, 15.0) == pytest.approx(0.3)   # 50 px nuclei -> 15 px
    with pytest.raises(ValueError, match="positive"):
        slice_scale(0.0, 0.2, 15.0)


def test_labels_map_back_to_full_resolution():
    img = np.zeros((1, 60, 90, 2), np.float32)
    small = rescale_slices(img, 1 / 3)
    assert small.shape == (1, 20, 30, 2) and small.dtype == np.float32
    lab = np.zeros((20, 30), np.int32)
    lab[2:8, 3:9] = 1
    lab[10, 20] = 2               # one pixel: still there at 3x, 9 pixels
    lab[15:18, 5:7] = 3
    full, scores = labels_at(lab, np.array([0.9, 0.8, 0.7]), (60, 90))
    assert full.shape == (60, 90) and (full == 2).sum() == 9
    assert (full == 1).sum() == 36 * 9 and scores.tolist() == [0.9, 0.8, 0.7]
    # shrinking drops an instance left without a pixel, and its score
    big = np.zeros((60, 90), np.int32)
    big[0:30, 0:30] = 1
    big[40, 41] = 2
    big[45:60, 60:90] = 3
    out, sc = labels_at(big, np.array([0.9, 0.8, 0.7]), (20, 30))
    assert set(np.unique(out)) == {0, 1, 2} and sc.tolist() == [0.9, 0.7]


@pytest.mark.slow
def test_nuclei_six_times_the_trained_size_are_found_when_rescaled():
    """The shipped cells model misses nuclei ~90 px across; measured and rescaled, it finds
    them at full resolution."""
    from cellspot.segment import coco
    from cellspot.segment.infer import Segmenter
    from cellspot.segment.starter import starter_files, trained_diameter
    from cellspot.simulate import SimulationConfig, simulate_movie
    from cellspot_bench.metrics import match_instances

    movie = simulate_movie(SimulationConfig(n_timepoints=1, shape=(8, 96, 96), n_cells=5,
                                            n_divisions=0), seed=4)
    img, labels = coco.simulation_volumes(movie, "cells", ["nucleus", "cytoplasm", "rna"],
                                          preprocess={})
    x = ndimage.zoom(np.moveaxis(img[0, :, 4], 0, -1), (6, 6, 1), order=1)
    truth = ndimage.zoom(labels["nucleus"][0, 4], (6, 6), order=0)
    files = starter_files("cells")
    seg = Segmenter(files["config"], files["checkpoint"], score_threshold=0.5)
    found = {}
    trained = trained_diameter("cells") or TRAINED
    for name, scale in (("as is", 1.0),
                        ("rescaled", auto_scale(estimate_diameter_px(x[..., 0]), trained))):
        seg.scale = scale
        stacks, _ = seg.segment_slices(x[None])
        assert stacks["nucleus"].shape == (1,) + truth.shape
        found[name] = match_instances(truth, stacks["nucleus"][0], 0.5)
    assert found["rescaled"].tp >= 4 and found["rescaled"].tp > found["as is"].tp + 2, found
