"""Classical spot detection (Laplacian of Gaussian, Otsu threshold) and annotation-free
training data for the spot model.

- :func:`detect_spots_log`: the baseline detector the benchmarks compare Mask R-CNN with, and a
  pseudo-labeller.
- :func:`estimate_psf_sigma`: the point-spread function's Gaussian sigma, fitted on the
  brightest isolated spots of a user's own images.
- :func:`remove_spots`: a spot-free background of an image (spots replaced by the local
  background plus noise of the image's own level).
- :func:`render_spot_image`: spots rendered with the measured PSF, placed into that background:
  labelled training images for a user who has raw images only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage, optimize
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu


def log_response(image: np.ndarray, sigma: float) -> np.ndarray:
    """Scale-normalised negative LoG (bright blobs of ``sigma`` give a positive peak)."""
    return -(sigma ** 2) * ndimage.gaussian_laplace(np.asarray(image, np.float32), sigma)


def refine_centroids(image: np.ndarray, peaks: np.ndarray, radius: int = 2) -> np.ndarray:
    """Sub-pixel positions: intensity-weighted centroid (minus the window minimum) around peaks."""
    img = np.asarray(image, np.float64)
    out = np.asarray(peaks, float).copy()
    h, w = img.shape
    for i, (y, x) in enumerate(np.asarray(peaks, int)):
        y0, y1, x0, x1 = max(y - radius, 0), min(y + radius + 1, h), max(x - radius, 0), min(
            x + radius + 1, w)
        win = img[y0:y1, x0:x1]
        wgt = win - win.min()
        s = wgt.sum()
        if s > 0:
            yy, xx = np.mgrid[y0:y1, x0:x1]
            out[i] = (wgt * yy).sum() / s, (wgt * xx).sum() / s
    return out


def detect_spots_log(image: np.ndarray, sigma: float = 1.5, threshold: float | str = "otsu",
                     min_distance: int = 2, refine: bool = True) -> pd.DataFrame:
    """Detect bright spots in a 2D image: LoG filter, local maxima, automatic threshold.

    Parameters
    ----------
    image : (Y, X) array
    sigma : float
        LoG scale in pixels (about the PSF's Gaussian sigma).
    threshold : float or "otsu"
        Minimum LoG response of a spot; ``"otsu"`` takes Otsu's threshold of the responses at
        all positive local maxima (spots versus noise maxima).
    min_distance : int
        Minimum separation of two spots (px).
    refine : bool
        Sub-pixel positions by intensity-weighted centroid.

    Returns
    -------
    DataFrame with ``y, x`` (px), ``response`` (LoG) and ``threshold`` (the one used).
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise ValueError(f"detect_spots_log takes a 2D image, got shape {image.shape}")
    resp = log_response(image, sigma)
    peaks = peak_local_max(resp, min_distance=min_distance, threshold_abs=1e-12,
                           exclude_border=False)
    values = resp[tuple(peaks.T)] if len(peaks) else np.zeros(0)
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"threshold must be a number or 'otsu', got {threshold!r}")
        thr = float(threshold_otsu(values)) if len(np.unique(values)) > 1 else np.inf
    else:
        thr = float(threshold)
    keep = values >= thr
    peaks, values = peaks[keep], values[keep]
    pos = refine_centroids(image, peaks, max(1, int(round(sigma)))) if refine and len(peaks) \
        else peaks.astype(float)
    return pd.DataFrame({"y": pos[:, 0] if len(pos) else [], "x": pos[:, 1] if len(pos) else [],
                         "response": values, "threshold": thr})


def _gauss2d(coords, amp, y0, x0, sigma, bg):
    yy, xx = coords
    return (amp * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma ** 2)) + bg).ravel()


def estimate_psf_sigma(images, n_spots: int = 100, sigma0: float = 1.5, half: int = 5
                       ) -> tuple[float, pd.DataFrame]:
    """Gaussian sigma of the PSF from the brightest isolated spots of 2D images.

    A symmetric 2D Gaussian plus offset is fitted to a ``(2 half + 1)^2`` patch around each of
    the ``n_spots`` strongest LoG detections that have no other detection within ``2 half``;
    the median sigma of the good fits is returned.

    Returns
    -------
    sigma : float
    fits : DataFrame (amp, y, x, sigma, bg) of the fitted spots (amplitudes above background
        feed :func:`render_spot_image`).
    """
    rows = []
    for img in images:
        img = np.asarray(img, np.float64)
        det = detect_spots_log(img, sigma0, refine=False)
        if det.empty:
            continue
        p = det[["y", "x"]].to_numpy(int)
        iso = []  # no other detection within 2 half, and the patch inside the image
        for k, (y, x) in enumerate(p):
            others = np.delete(p, k, 0)
            nearest = np.min(np.hypot(*(others - [y, x]).T)) if len(others) else np.inf
            inside = half <= y < img.shape[0] - half and half <= x < img.shape[1] - half
            iso.append(nearest > 2 * half and inside)
        cand = det[np.array(iso, bool)].sort_values("response", ascending=False)
        yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
        for y, x in cand[["y", "x"]].to_numpy(int)[:n_spots]:
            patch = img[y - half:y + half + 1, x - half:x + half + 1]
            bg0 = np.median(np.r_[patch[0], patch[-1], patch[:, 0], patch[:, -1]])
            try:
                par, _ = optimize.curve_fit(_gauss2d, (yy, xx), patch.ravel(),
                                            p0=(patch.max() - bg0, 0, 0, sigma0, bg0),
                                            maxfev=2000)
            except (RuntimeError, optimize.OptimizeWarning):
                continue
            amp, dy, dx, s, bg = par
            if amp > 0 and 0.3 < abs(s) < half and abs(dy) < 1.5 and abs(dx) < 1.5:
                rows.append({"amp": amp, "y": y + dy, "x": x + dx, "sigma": abs(s), "bg": bg})
    fits = pd.DataFrame(rows, columns=["amp", "y", "x", "sigma", "bg"])
    if fits.empty:
        raise ValueError("no isolated spots found to measure the PSF")
    return float(fits["sigma"].median()), fits


def _points_mask(points: np.ndarray, shape) -> np.ndarray:
    m = np.zeros(shape, bool)
    if len(points):
        m[tuple(np.asarray(points, int).T)] = True
    return m


def noise_level(image: np.ndarray) -> float:
    """Robust standard deviation of the pixel noise (MAD of a Laplacian-like residual)."""
    img = np.asarray(image, np.float64)
    r = img - ndimage.uniform_filter(img, 3)
    return float(1.4826 * np.median(np.abs(r - np.median(r))) * 3 / np.sqrt(8))


def remove_spots(image: np.ndarray, sigma: float, threshold_scale: float = 0.5,
                 seed: int = 0) -> np.ndarray:
    """A spot-free version of a 2D image.

    Spots are found by LoG at half the Otsu threshold (so that faint ones go too), the pixels
    within ``3 sigma + 1`` of them are replaced by the mean of the unmasked surroundings
    (normalised convolution with a Gaussian of that radius) plus Gaussian noise at the image's
    own noise level.
    """
    img = np.asarray(image, np.float64)
    det = detect_spots_log(img, sigma, refine=False)
    thr = det["threshold"].iloc[0] if len(det) else np.inf
    det = detect_spots_log(img, sigma, threshold=thr * threshold_scale if np.isfinite(thr)
                           else np.inf, refine=False)
    mask = _points_mask(det[["y", "x"]].to_numpy(int), img.shape)
    r = 3 * sigma + 1
    mask = ndimage.distance_transform_edt(~mask) <= r
    keep = (~mask).astype(np.float64)
    num = ndimage.gaussian_filter(img * keep, r, mode="reflect")
    den = ndimage.gaussian_filter(keep, r, mode="reflect")
    fallback = np.median(img[~mask]) if (~mask).any() else np.median(img)
    bg = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fallback)
    rng = np.random.default_rng(seed)
    out = img.copy()
    out[mask] = bg[mask] + rng.normal(0, noise_level(img), int(mask.sum()))
    return out


def render_spot_image(background: np.ndarray, n_spots: int, sigma,
                      amplitudes: np.ndarray, gain: float | None = None,
                      min_separation: float = 0.0, amplitude_scale=(0.5, 1.0), seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Place ``n_spots`` Gaussian spots (PSF ``sigma``) at random sub-pixel positions.

    Parameters
    ----------
    background : (Y, X) array
        Spot-free image (:func:`remove_spots`).
    sigma : float or array
        PSF sigma (px); an array of the same length as ``amplitudes`` gives every spot the
        sigma drawn together with its amplitude (the PSF fits' ``sigma``), so that spot sizes
        vary as in the measured image (defocus, a projection).
    amplitudes : array
        Peak heights above background to draw from (e.g. the PSF fits' ``amp``).
    gain : float, optional
        Shot noise: the added signal gets Gaussian noise of variance ``gain * signal``
        (default: estimated as variance/mean of the background, at least 0).
    min_separation : float
        Minimum distance between spots (px); 0 allows any.
    amplitude_scale : (float, float)
        Each drawn amplitude is multiplied by a factor from this range: the PSF fits come
        from the brightest isolated spots, and the model must also learn the faint ones.

    Returns
    -------
    image : (Y, X) float64
    positions : (n, 2) float array of ``(y, x)``
    """
    rng = np.random.default_rng(seed)
    bg = np.asarray(background, np.float64)
    h, w = bg.shape
    pts: list[tuple[float, float]] = []
    tries = 0
    while len(pts) < n_spots and tries < 50 * max(n_spots, 1):
        tries += 1
        p = (rng.uniform(0, h - 1), rng.uniform(0, w - 1))
        if min_separation > 0 and pts and np.min(np.hypot(*(np.array(pts) - p).T)) < min_separation:
            continue
        pts.append(p)
    pos = np.array(pts, float).reshape(-1, 2)
    amplitudes = np.asarray(amplitudes, float)
    sigmas = np.broadcast_to(np.asarray(sigma, float), amplitudes.shape)
    pick = rng.integers(0, len(amplitudes), len(pos))
    amps = amplitudes[pick] * rng.uniform(*amplitude_scale, len(pos))
    signal = np.zeros_like(bg)
    for (y, x), a, sg in zip(pos, amps, sigmas[pick]):
        r = int(np.ceil(4 * sg))
        cy, cx = int(round(y)), int(round(x))
        y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, h), max(cx - r, 0), min(cx + r + 1, w)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        signal[y0:y1, x0:x1] += a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sg ** 2))
    if gain is None:
        m = float(np.median(bg))
        gain = max(float(np.var(bg - ndimage.median_filter(bg, 5))) / m, 0.0) if m > 0 else 0.0
    noise = rng.normal(0, 1, bg.shape) * np.sqrt(np.maximum(gain * signal, 0))
    return bg + signal + noise, pos


def synthetic_spot_slices(images, n_per_image: int | None = None, sigma: float | None = None,
                          n_copies: int = 4, seed: int = 0):
    """Annotation-free training images for the spot model from a user's raw 2D images.

    For each image: measure the PSF (unless ``sigma`` is given), remove its spots, and render
    ``n_copies`` new images with spots at known positions (as many as detected in the image by
    default, so the density matches). With a measured PSF every rendered spot takes the
    amplitude and sigma of one fitted spot (sigma outliers, e.g. unresolved pairs, left out),
    so that sizes vary as in the image; a given ``sigma`` renders all spots with it.

    Yields
    ------
    (image, positions, sigma) for every rendered image (``sigma``: the median PSF sigma).
    """
    images = [np.asarray(i, np.float64) for i in images]
    s_est, fits = estimate_psf_sigma(images, sigma0=sigma or 1.5)
    if sigma:
        spot_sigma = sigma
    else:
        sigma = s_est
        mad = 1.4826 * np.median(np.abs(fits["sigma"] - s_est))
        fits = fits[np.abs(fits["sigma"] - s_est) <= max(3 * mad, 0.05 * s_est)]
        spot_sigma = fits["sigma"].to_numpy()
    for k, img in enumerate(images):
        bg = remove_spots(img, sigma, seed=seed + k)
        n = n_per_image or max(1, len(detect_spots_log(img, sigma)))
        for c in range(n_copies):
            out, pos = render_spot_image(bg, n, spot_sigma, fits["amp"].to_numpy(),
                                         min_separation=2 * sigma, seed=seed + 1000 * k + c)
            yield out, pos, sigma
