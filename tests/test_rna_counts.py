"""RNA molecules per spot: unresolved pairs found by multi-emitter fitting, sites by amplitude."""

import numpy as np
import pandas as pd

from cellspot import merge
from cellspot.merge import molecules as rna_counts

SIGMA = (1.0, 1.0, 1.0)


def _render(shape, centres, amplitudes, rng, background=0.05, noise=0.02):
    grid = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    img = np.full(shape, background)
    for c, a in zip(centres, amplitudes):
        img += a * np.exp(-0.5 * sum(((g - v) / s) ** 2 for g, v, s in zip(grid, c, SIGMA)))
    return (img + rng.normal(0, noise, shape)).astype(np.float32)


def _scene(seed=0):
    """40 isolated spots, 8 unresolved pairs (1.8 sigma apart, detected once) and a
    transcription site of 6 molecules; returns the image, detected positions and truth."""
    rng = np.random.default_rng(seed)
    shape = (16, 96, 96)
    centres, amps, detected, truth = [], [], [], []
    sites = [(z, y, x) for z in (5, 10) for y in range(10, 90, 12) for x in range(10, 90, 12)]
    order = rng.permutation(len(sites))
    for k, i in enumerate(order[:49]):
        c = np.array(sites[i], float) + rng.uniform(-0.3, 0.3, 3)
        a = rng.uniform(0.8, 1.2)
        if k < 40:
            centres.append(c), amps.append(a), detected.append(c), truth.append(1)
        elif k < 48:
            d = rng.normal(size=3)
            d *= 1.8 / np.linalg.norm(d)
            centres += [c, c + d]
            amps += [a, rng.uniform(0.8, 1.2)]
            detected.append(c), truth.append(2)
        else:
            centres.append(c), amps.append(6.0), detected.append(c), truth.append(6)
    img = _render(shape, centres, amps, rng)
    return img, np.array(detected), np.array(truth)


def test_pairs_and_sites_are_counted():
    img, pos, truth = _scene()
    peaks = img[tuple(np.rint(pos).astype(int).T)] - np.median(img)
    n, psf = rna_counts.molecules_per_spot(img, pos, peaks)
    assert psf is not None and np.allclose(psf.sigma, SIGMA, atol=0.15)
    assert abs(psf.amplitude - 1.0) < 0.15
    assert (n[truth == 1] == 1).mean() >= 0.95          # singles stay single
    assert (n[truth == 2] == 2).mean() >= 0.75          # most pairs resolved
    assert abs(int(n[truth == 6][0]) - 6) <= 1          # the site by its amplitude
    assert abs(n.sum() - truth.sum()) <= 0.05 * truth.sum()


def test_too_few_isolated_spots_count_one_each():
    img, pos, _ = _scene()
    n, psf = rna_counts.molecules_per_spot(img, pos[:5], np.ones(5))
    assert psf is None and (n == 1).all()


def test_count_molecules_setting():
    img, pos, truth = _scene()
    spots = pd.DataFrame({"z": pos[:, 0], "y": pos[:, 1], "x": pos[:, 2],
                          "peak": img[tuple(np.rint(pos).astype(int).T)], "z_last": 0})
    fit = merge.count_molecules(spots, img)
    assert fit["n_rna"].sum() > len(spots) and list(fit.columns)[-1] == "n_rna"
    one = merge.count_molecules(spots, img, merge.SpotSettings(molecules="spots"))
    assert (one["n_rna"] == 1).all()
    assert (merge.count_molecules(spots, None)["n_rna"] == 1).all()
