"""RNA molecules per spot: unresolved neighbours and transcription sites.

Two RNAs closer than about two PSF sigmas are one spot to a detector, and a transcription
site holds several nascent RNAs in one bright spot. The molecules a detected spot stands for
are found as multi-emitter fitting does in localisation microscopy:

1. the region of a spot is the connected set of voxels brighter than the image background
   plus ``threshold`` times the median spot peak; a region no larger than its spots need
   (``dense_volume`` times the median single-spot region, per spot) holds just its spots;
2. the PSF (a 3D Gaussian) and the single-molecule amplitude are measured on the image, on
   isolated spots (:func:`measure_psf`);
3. in a larger region, Gaussians are fitted (least squares, shared background), one per
   detected spot, and one more emitter is added at the largest residual while that lowers
   the Bayesian information criterion and the new emitter is a molecule (amplitude at least
   ``min_amplitude`` of a single one, not on top of another);
4. a fitted spot brighter than ``site_amplitude`` single molecules is a transcription site
   holding ``round(amplitude / single amplitude)`` RNAs.

Each added emitter is counted with the detected spot nearest to it, so a spot's ``n_rna``
is at least 1 and per-cell sums are RNA counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import least_squares

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Psf:
    """A 3D Gaussian spot as seen in the image (px) and its single-molecule amplitude."""

    sigma: tuple[float, float, float]
    amplitude: float


def _gauss(grid, centre, sigma):
    return np.exp(-0.5 * sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, sigma)))


def _window(image, centre, radius):
    lo = np.maximum(np.floor(np.asarray(centre) - radius).astype(int), 0)
    hi = np.minimum(np.ceil(np.asarray(centre) + radius).astype(int) + 1, image.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grid = np.meshgrid(*(np.arange(a, b, dtype=float) for a, b in zip(lo, hi)), indexing="ij")
    return image[box].astype(float), grid


def measure_psf(image: np.ndarray, positions: np.ndarray, isolated: np.ndarray,
                n_max: int = 60) -> Psf | None:
    """PSF sigma (z, y, x px) and amplitude: medians of single-Gaussian fits to isolated spots."""
    idx = np.flatnonzero(isolated)[:n_max]
    if len(idx) < 5:
        return None
    fits = []
    for i in idx:
        data, grid = _window(image, positions[i], np.array([3.0, 4.0, 4.0]))
        if data.size < 27:
            continue

        def resid(p, data=data, grid=grid):
            return (p[0] + p[1] * _gauss(grid, p[2:5], (p[5], p[6], p[6])) - data).ravel()

        p0 = [float(np.median(data)), float(data.max() - np.median(data)), *positions[i], 1.0, 1.0]
        try:
            r = least_squares(resid, p0, bounds=([-np.inf, 0, -np.inf, -np.inf, -np.inf, 0.3, 0.3],
                                                 [np.inf, np.inf, np.inf, np.inf, np.inf, 4, 4]))
        except ValueError:
            continue
        if r.success:
            fits.append((r.x[5], r.x[6], r.x[1]))
    if len(fits) < 5:
        return None
    sz, sxy, amp = np.median(np.asarray(fits), axis=0)
    return Psf((float(sz), float(sxy), float(sxy)), float(amp))


def _fit(data, grid, centres, psf: Psf, background: float):
    """Least-squares fit of ``len(centres)`` Gaussians of the PSF plus a background.

    Returns the amplitudes, centres (px), residual sum of squares and the residual image
    (data minus model). The Jacobian is analytic: a region of k spots costs a few k-sized
    linear solves, not k^2 image evaluations.
    """
    k = len(centres)
    coords = np.stack([g.ravel() for g in grid], 1)            # (n, 3)
    sig2 = np.asarray(psf.sigma, float) ** 2
    flat = data.ravel()
    origin = coords[0]
    ij = np.clip(np.rint(np.asarray(centres) - origin).astype(int), 0,
                 np.array(data.shape) - 1)
    amp0 = np.maximum(data[tuple(ij.T)] - background, 0.1 * psf.amplitude)
    p0 = np.concatenate([[background], amp0, np.ravel(centres)])
    lo = np.concatenate([[-np.inf], np.zeros(k), np.ravel(centres) - 1.5])
    hi = np.concatenate([[np.inf], np.full(k, np.inf), np.ravel(centres) + 1.5])

    def parts(p):
        mu = p[1 + k:].reshape(k, 3)
        d = coords[None, :, :] - mu[:, None, :]               # (k, n, 3)
        g = np.exp(-0.5 * (d ** 2 / sig2).sum(-1))             # (k, n)
        return p[1:1 + k], d, g

    def resid(p):
        a, _, g = parts(p)
        return p[0] + a @ g - flat

    def jac(p):
        a, d, g = parts(p)
        j = np.empty((len(flat), 1 + 4 * k))
        j[:, 0] = 1.0
        j[:, 1:1 + k] = g.T
        dmu = (a[:, None, None] * g[:, :, None] * d / sig2)   # (k, n, 3)
        j[:, 1 + k:] = dmu.transpose(1, 0, 2).reshape(len(flat), 3 * k)
        return j

    # Amplitudes stay >= 0 and emitters within 1.5 px of their start; the Jacobian is small
    # (voxels x 1 + 4k), so exact trust-region steps are cheaper than iterative ones.
    r = least_squares(resid, np.clip(p0, lo + 1e-9, hi - 1e-9), jac=jac, bounds=(lo, hi),
                      tr_solver="exact", max_nfev=100)
    rss = float(np.sum(r.fun ** 2))
    return r.x[1:1 + k], r.x[1 + k:].reshape(k, 3), rss, -r.fun.reshape(data.shape)


def _bic(rss, n, k):
    return n * np.log(max(rss, 1e-300) / n) + (1 + 4 * k) * np.log(n)


def region_emitters(data, grid, spots_px: np.ndarray, psf: Psf, background: float,
                    mask: np.ndarray, min_amplitude: float = 0.5,
                    max_extra: int = 4, min_separation: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Emitters of one region beyond its detected spots, by BIC: their positions (px) and
    the fitted amplitudes of all emitters (the detected spots' first).

    ``mask`` is the region in the window: emitters are looked for, and must end, inside it
    (the window's edges hold the tails of neighbouring regions' spots).
    """
    n = data.size
    start = np.asarray(spots_px, float)
    if n < 2 * (1 + 4 * (len(start) + 1)):
        return np.zeros((0, 3)), np.full(len(start), psf.amplitude)
    amps, centres, rss, residual = _fit(data, grid, start, psf, background)
    origin = np.array([g.flat[0] for g in grid])
    for _ in range(max_extra):
        smooth = np.where(mask, ndi.gaussian_filter(residual, np.asarray(psf.sigma) / 2),
                          -np.inf)
        at = np.array(np.unravel_index(np.argmax(smooth), smooth.shape), float) + origin
        trial = np.vstack([centres, at])
        a2, c2, rss2, res2 = _fit(data, grid, trial, psf, background)
        sep = np.sqrt((((c2[-1] - c2[:-1]) / psf.sigma) ** 2).sum(axis=1)).min()
        inside = mask[tuple(np.clip(np.rint(c2[-1] - origin).astype(int), 0,
                                    np.array(mask.shape) - 1))]
        # every detected spot keeps an emitter on it (which one may swap with the new one)
        moved = np.sqrt(((start[:, None] - c2[None]) ** 2).sum(-1)).min(axis=1).max()
        if (_bic(rss2, n, len(trial)) >= _bic(rss, n, len(centres)) or not inside
                or a2.min() < min_amplitude * psf.amplitude or sep < min_separation
                or moved > 1.0 or n < 2 * (1 + 4 * (len(trial) + 1))):
            break
        amps, centres, rss, residual = a2, c2, rss2, res2
    return centres[len(start):], amps


def _may_hide(data, grid, spots_px, psf: Psf, background: float, mask,
              min_amplitude: float, site_amplitude: float) -> bool:
    """Whether a region can hold more than its detected spots: a spot bright enough to be a
    transcription site, or the image minus a PSF at each spot (scaled to the image there)
    leaves half a molecule's worth somewhere in the region. A cheap test that spares most
    regions the fit (a mislocalised single spot leaves about a fifth of its amplitude)."""
    origin = np.array([g.flat[0] for g in grid])
    ij = np.clip(np.rint(spots_px - origin).astype(int), 0, np.array(data.shape) - 1)
    amp = np.maximum(data[tuple(ij.T)] - background, 0)
    if amp.max() >= 0.8 * site_amplitude * psf.amplitude:
        return True
    model = background + sum(a * _gauss(grid, c, psf.sigma) for a, c in zip(amp, spots_px))
    rest = ndi.gaussian_filter(data - model, np.asarray(psf.sigma) / 2)
    return bool((rest[mask] >= 0.5 * min_amplitude * psf.amplitude).any())


def molecules_per_spot(image: np.ndarray, positions: np.ndarray, peaks: np.ndarray,
                       threshold: float = 0.25, dense_volume: float = 1.0,
                       min_amplitude: float = 0.5, max_extra: int = 4,
                       site_amplitude: float = 2.5, max_region_spots: int = 12,
                       min_reference: int = 10) -> tuple[np.ndarray, Psf | None]:
    """The number of RNA molecules each spot stands for (>= 1) and the PSF it was measured
    with (None when too few isolated spots to measure one: every spot is then one RNA).

    Parameters
    ----------
    image : (Z, Y, X) array
        The spot channel (preprocessed).
    positions : (N, 3) array
        Detected spot positions (px).
    peaks : (N,) array
        Background-subtracted peak of each spot (sets the region threshold).
    threshold, dense_volume, min_amplitude, max_extra, site_amplitude : float, ..., float
        See the module docstring.
    max_region_spots : int
        Regions holding more detected spots are not fitted (each spot counts as one): a
        crowded region costs a fit with four parameters per spot.
    min_reference : int
        Fewest isolated single-spot regions that measure the PSF and single molecule.
    """
    n = len(positions)
    out = np.ones(n, np.int64)
    if n == 0:
        return out, None
    image = np.asarray(image, np.float32)
    background = float(np.median(image))
    level = background + max(threshold * float(np.median(peaks)), 0.0)
    regions, n_regions = ndi.label(image > level)
    idx = np.clip(np.rint(positions).astype(np.int64), 0, np.array(image.shape) - 1)
    region = regions[tuple(idx.T)]
    per_region = np.bincount(region, minlength=n_regions + 1)
    per_region[0] = 0
    used = np.flatnonzero(per_region)
    volumes = np.zeros(n_regions + 1)
    if len(used):
        volumes[used] = ndi.sum_labels(np.ones(image.shape, np.float32), regions, used)
    single = per_region == 1
    if single.sum() < min_reference:
        log.info("only %d single-spot regions: every spot counts as one RNA", single.sum())
        return out, None
    v1 = float(np.median(volumes[single]))
    psf = measure_psf(image, positions, single[region] & (volumes[region] <= v1))
    if psf is None:
        return out, None
    boxes = ndi.find_objects(regions)
    dense = np.flatnonzero((volumes > dense_volume * v1 * np.maximum(per_region, 1))
                           & (per_region > 0) & (per_region <= max_region_spots))
    order = np.argsort(region, kind="stable")
    start = np.searchsorted(region[order], np.arange(n_regions + 2))
    for r in dense:
        members = order[start[r]:start[r + 1]]
        box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, m))
                    for s, m in zip(boxes[r - 1], image.shape))
        grid = np.meshgrid(*(np.arange(s.start, s.stop, dtype=float) for s in box),
                           indexing="ij")
        data, mask = image[box].astype(float), regions[box] == r
        if not _may_hide(data, grid, positions[members], psf, background, mask,
                         min_amplitude, site_amplitude):
            continue
        added, amps = region_emitters(data, grid, positions[members], psf, background, mask,
                                      min_amplitude, max_extra)
        # A detected spot far brighter than one molecule is a transcription site.
        bright = amps[:len(members)] / psf.amplitude
        out[members] = np.where(bright >= site_amplitude, np.floor(bright + 0.5), 1).astype(
            np.int64)
        for a in added:
            d = (((positions[members] - a) / np.asarray(psf.sigma)) ** 2).sum(axis=1)
            out[members[np.argmin(d)]] += 1
    return out, psf
