"""Drift estimation and correction of ``tczyx`` movies.

Drift is estimated on one channel by 3D phase correlation between each timepoint and the last
good one before it, and accumulated, so that every shift is relative to the first timepoint.
Volumes are binned (``downsample``, ``max_voxels``) and blurred; the phase correlation is
low-pass weighted (whitening alone lets noise swamp the peak). Sub-pixel precision comes either
from maximising the normalised cross-correlation of the overlap around the peak (``refine``, the
default: FFT correlation is biased by wrap-around when content enters and leaves a thin z-stack)
or from scikit-image's upsampled DFT. A timepoint whose match is poor (normalised
cross-correlation at the found shift below ``min_quality``, e.g. a frame with no signal) is
*flagged*: it keeps the cumulative shift of the last good frame instead of a garbage estimate,
and the next frame is matched against that last good frame.

Sign convention (as :mod:`cellspot.simulate`): the table holds ``d(t)`` with
``raw_t(p + d(t)) = raw_0(p)``, i.e. content seen at ``p`` in the first frame is at ``p + d`` at
``t``; the corrected frame is ``raw_t`` resampled at ``p + d(t)``.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Literal, Sequence

import dask.array as da
import numpy as np
import pandas as pd
import scipy.fft
import scipy.ndimage as ndi
from pydantic import BaseModel, ConfigDict, Field

from cellspot.errors import RegistrationError
from cellspot.omezarr import atomic_output

log = logging.getLogger(__name__)

DRIFT_COLUMNS = ["t", "dz", "dy", "dx", "quality", "flagged"]


class RegistrationSettings(BaseModel):
    """Drift estimation and correction settings (``preprocess.registration``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    channel: str = "nucleus"
    upsample_factor: int = Field(20, ge=1)
    downsample: tuple[int, int, int] = (1, 1, 1)
    max_voxels: int | None = Field(2**24, ge=1)
    blur_sigma_px: float = Field(1.0, ge=0)
    normalization: Literal["phase", "none"] = "phase"
    window: float = Field(0.25, ge=0, le=1)
    refine: bool = True
    min_quality: float = Field(0.2, ge=-1, le=1)
    order: int = Field(1, ge=0, le=5)


# --------------------------------------------------------------------------- estimation


def prepare_volume(volume: np.ndarray, fill_value: float = 0.0,
                   downsample: Sequence[int] = (1, 1, 1), sigma: float = 1.0) -> np.ndarray:
    """A 3D volume ready for matching: float32, non-finite -> ``fill_value``, binned, blurred."""
    vol = np.asarray(volume, dtype=np.float32)
    if vol.dtype.kind == "f":
        vol = np.where(np.isfinite(vol), vol, np.float32(fill_value))
    f = tuple(max(int(v), 1) for v in downsample)
    if any(v > 1 for v in f):
        crop = tuple(slice(0, (n // k) * k) for n, k in zip(vol.shape, f))
        vol = vol[crop]
        vol = vol.reshape(vol.shape[0] // f[0], f[0], vol.shape[1] // f[1], f[1],
                          vol.shape[2] // f[2], f[2]).mean(axis=(1, 3, 5))
    if sigma > 0:
        vol = ndi.gaussian_filter(vol, sigma)
    return vol - np.float32(np.median(vol))


def registration_binning(shape: Sequence[int], downsample: Sequence[int] = (1, 1, 1),
                         max_voxels: int | None = None) -> tuple[int, int, int]:
    """Binning per axis: ``downsample``, doubled on the longest binned axis until the binned
    volume has at most ``max_voxels`` voxels (bounds the memory of the drift estimate)."""
    f = [max(int(v), 1) for v in downsample]
    while max_voxels:
        binned = [n // k for n, k in zip(shape, f)]
        if int(np.prod(binned)) <= max_voxels or max(binned) < 8:
            break
        f[int(np.argmax(binned))] *= 2
    return tuple(f)


def load_binned(movie, t: int, channel: int, factor: Sequence[int], fill_value: float = 0.0,
                slab_voxels: int = 2**23) -> tuple[np.ndarray, bool]:
    """One timepoint of a channel as float32, binned by ``factor``, read in z-slabs.

    Non-finite voxels become ``fill_value``. Also returns whether the volume has any signal
    (finite voxels that are not all equal). Memory: the binned volume plus one slab.
    """
    n_z, n_y, n_x = movie.shape[2:]
    fz, fy, fx = (max(int(v), 1) for v in factor)
    step = max(fz, (slab_voxels // max(n_y * n_x, 1)) // fz * fz)
    parts, lo, hi = [], np.inf, -np.inf
    for z0 in range(0, (n_z // fz) * fz, step):
        z1 = min(z0 + step, (n_z // fz) * fz)
        slab = np.asarray(movie[t, channel, z0:z1, : (n_y // fy) * fy, : (n_x // fx) * fx])
        slab = slab.astype(np.float32)
        finite = np.isfinite(slab)
        if finite.any():
            lo, hi = min(lo, float(slab[finite].min())), max(hi, float(slab[finite].max()))
        if not finite.all():
            slab[~finite] = fill_value
        if (fz, fy, fx) != (1, 1, 1):
            slab = slab.reshape(slab.shape[0] // fz, fz, slab.shape[1] // fy, fy,
                                slab.shape[2] // fx, fx).mean(axis=(1, 3, 5), dtype=np.float32)
        parts.append(slab)
    return np.concatenate(parts, axis=0), bool(hi > lo)


def _tukey(shape: Sequence[int], alpha: float) -> np.ndarray:
    from scipy.signal.windows import tukey

    w = np.ones(shape, dtype=np.float32)
    for ax, n in enumerate(shape):
        s = [1] * len(shape)
        s[ax] = n
        w = w * tukey(n, alpha).astype(np.float32).reshape(s)
    return w


def overlap_ncc(ref: np.ndarray, mov: np.ndarray, shift: Sequence[float]) -> float:
    """Pearson correlation of ``ref`` and ``mov`` over their overlap at the (rounded) ``shift``.

    ``mov(p + shift) ~ ref(p)``. Returns 0 when either side is flat or the overlap is empty.
    Sums are accumulated in float64 one plane at a time (no float64 copy of the volumes).
    """
    rs, ms = [], []
    for n, d in zip(ref.shape, shift):
        k = int(round(float(d)))
        if abs(k) >= n:
            return 0.0
        rs.append(slice(0, n - k) if k >= 0 else slice(-k, n))
        ms.append(slice(k, n) if k >= 0 else slice(0, n + k))
    a_all, b_all = ref[tuple(rs)], mov[tuple(ms)]
    sums = np.zeros(5)
    for a, b in zip(a_all, b_all):
        a = a.astype(np.float64).ravel()
        b = b.astype(np.float64).ravel()
        # einsum, not BLAS: OpenBLAS threads stall on a busy node for vectors this short
        sums += (a.sum(), b.sum(), np.einsum("i,i->", a, a), np.einsum("i,i->", b, b),
                 np.einsum("i,i->", a, b))
    n = a_all.size
    sa, sb, saa, sbb, sab = sums
    cov = sab - sa * sb / n
    den = math.sqrt(max(saa - sa * sa / n, 0.0) * max(sbb - sb * sb / n, 0.0))
    return float(cov / den) if den > 0 else 0.0


def refine_shift(ref: np.ndarray, mov: np.ndarray, start: Sequence[float],
                 max_steps: int = 8) -> tuple[np.ndarray, float]:
    """Sub-pixel maximum of :func:`overlap_ncc` near ``start``, and the correlation there.

    Climbs to the best integer shift (face neighbours), then fits a parabola through it and
    its two neighbours on each axis. Correlating only the overlap avoids the wrap-around bias
    of FFT correlation, which is large when content enters and leaves a thin z-stack.
    """
    cache: dict[tuple, float] = {}

    def ncc(k: tuple) -> float:
        if k not in cache:
            cache[k] = overlap_ncc(ref, mov, k)
        return cache[k]

    axes = [ax for ax in range(ref.ndim) if ref.shape[ax] > 2]
    k = tuple(int(round(float(v))) for v in start)
    for _ in range(max_steps):
        best, best_c = k, ncc(k)
        for ax in axes:
            for step in (-1, 1):
                n = list(k)
                n[ax] += step
                c = ncc(tuple(n))
                if c > best_c:
                    best, best_c = tuple(n), c
        if best == k:
            break
        k = best
    c0 = ncc(k)
    out = np.array(k, dtype=float)
    for ax in axes:
        lo, hi = list(k), list(k)
        lo[ax] -= 1
        hi[ax] += 1
        cm, cp = ncc(tuple(lo)), ncc(tuple(hi))
        curv = cm - 2.0 * c0 + cp
        if curv < 0:
            out[ax] += float(np.clip(0.5 * (cm - cp) / curv, -0.5, 0.5))
    return out, c0


def _gaussian_transfer(shape: Sequence[int], sigma: float, real: bool = False) -> np.ndarray:
    """Fourier transform of a unit-sum Gaussian of width ``sigma`` px, on the ``fftn`` grid
    (or the ``rfftn`` grid, last axis halved, if ``real``)."""
    g = np.ones([1] * len(shape), dtype=np.float32)
    for ax, n in enumerate(shape):
        last = real and ax == len(shape) - 1
        f = scipy.fft.rfftfreq(n) if last else scipy.fft.fftfreq(n)
        s = [1] * len(shape)
        s[ax] = f.size
        g = g * np.exp(-2.0 * (np.pi * sigma * f) ** 2).astype(np.float32).reshape(s)
    return g


def volume_fft(volume: np.ndarray, window: float = 0.0, real: bool = True) -> np.ndarray:
    """FFT (``rfftn`` if ``real``) of a prepared volume, Tukey-tapered by ``window`` if > 0."""
    if window > 0:
        volume = volume * _tukey(volume.shape, window)
    return scipy.fft.rfftn(volume) if real else scipy.fft.fftn(volume)


def _weighted_product(ref_fft, mov_fft, shape, normalization, sigma, real):
    product = ref_fft * np.conj(mov_fft)
    if normalization == "phase":
        product /= np.maximum(np.abs(product), np.finfo(np.float32).tiny)
        if sigma > 0:
            g = _gaussian_transfer(shape, sigma, real)
            product *= g * g
    return product


def register_pair(ref: np.ndarray, mov: np.ndarray, upsample_factor: int = 20,
                  normalization: str = "phase", window: float = 0.25, sigma: float = 1.0,
                  ref_fft: np.ndarray | None = None, refine: bool = True
                  ) -> tuple[np.ndarray, float]:
    """Displacement ``d`` of ``mov`` relative to ``ref`` (``mov(p + d) ~ ref(p)``) and its quality.

    Both volumes come from :func:`prepare_volume` (blurred by ``sigma``). With ``"phase"`` the
    cross-power spectrum is whitened and then weighted by the squared Gaussian transfer function
    of ``sigma``: plain phase correlation lets noise at high frequencies, where the blurred
    signal is gone, swamp the peak. With ``refine`` the integer peak is polished by
    :func:`refine_shift` (the FFT is real, half the memory); otherwise scikit-image's upsampled
    DFT gives ``1/upsample_factor`` px. Quality is :func:`overlap_ncc` at ``d``.
    ``ref_fft`` (from :func:`volume_fft` with ``real=refine``) saves one FFT when chaining.
    """
    shape = ref.shape
    if ref_fft is None:
        ref_fft = volume_fft(ref, window, real=refine)
    product = _weighted_product(ref_fft, volume_fft(mov, window, real=refine), shape,
                                normalization, sigma, real=refine)
    if refine:
        corr = scipy.fft.irfftn(product, s=shape)
        del product
        peak = np.array(np.unravel_index(int(np.argmax(corr)), shape), dtype=float)
        del corr
        n = np.array(shape, dtype=float)
        peak[peak > n / 2] -= n[peak > n / 2]
        return refine_shift(ref, mov, -peak)
    from skimage.registration import phase_cross_correlation

    # skimage multiplies its two spectra (the second conjugated): hand it the product and ones
    shift, _, _ = phase_cross_correlation(
        product, np.ones_like(product), upsample_factor=upsample_factor, space="fourier",
        normalization=None)
    d = -np.asarray(shift, dtype=float)  # skimage returns the shift that moves mov onto ref
    return d, overlap_ncc(ref, mov, d)


def estimate_drift(movie, channel: int, settings: RegistrationSettings | None = None,
                   fill_value: float = 0.0, threads: int = 1) -> pd.DataFrame:
    """Cumulative drift of every timepoint relative to the first, one timepoint in memory at a time.

    Parameters
    ----------
    movie : array-like (zarr or numpy)
        ``(T, C, Z, Y, X)``.
    channel : int
        Index of the channel to register on.
    settings : RegistrationSettings
    fill_value : float
        Value given to non-finite voxels.
    threads : int
        FFT workers.

    Returns
    -------
    pandas.DataFrame
        ``t, dz, dy, dx, quality, flagged`` (pixels of the full-resolution array).
    """
    s = settings or RegistrationSettings()
    binning = registration_binning(movie.shape[2:], s.downsample, s.max_voxels)
    factor = np.array(binning, dtype=float)
    if binning != tuple(max(int(v), 1) for v in s.downsample):
        log.info("drift: volumes binned by %s (z, y, x) to stay under %d voxels", binning,
                 s.max_voxels)
    n_t = movie.shape[0]
    cum = np.zeros((n_t, 3))
    quality = np.ones(n_t)
    flagged = np.zeros(n_t, dtype=bool)

    def prep(t):
        vol, signal = load_binned(movie, t, channel, binning, fill_value)
        return prepare_volume(vol, fill_value, (1, 1, 1), s.blur_sigma_px), signal

    with scipy.fft.set_workers(max(int(threads), 1)):
        (ref, ref_ok), ref_t, ref_fft = prep(0), 0, None
        if not ref_ok:
            flagged[0], quality[0] = True, 0.0
            log.warning("drift: t=0 has no signal on the registration channel; the first frame "
                        "with signal becomes the reference")
        for t in range(1, n_t):
            mov, mov_ok = prep(t)
            if not mov_ok:
                flagged[t], quality[t], cum[t] = True, 0.0, cum[ref_t]
                log.warning("drift: t=%d has no signal on the registration channel; flagged, "
                            "keeps the shift of t=%d", t, ref_t)
                continue
            if not ref_ok:
                # no usable reference yet: this frame starts the chain
                ref, ref_ok, ref_t, ref_fft = mov, True, t, None
                cum[t] = cum[t - 1]
                continue
            if ref_fft is None:
                ref_fft = volume_fft(ref, s.window, real=s.refine)
            d, q = register_pair(ref, mov, s.upsample_factor, s.normalization, s.window,
                                 s.blur_sigma_px, ref_fft, s.refine)
            quality[t] = q
            if q < s.min_quality:
                flagged[t], cum[t] = True, cum[ref_t]
                log.warning("drift: t=%d matches t=%d poorly (quality %.3f < %.3f); flagged, "
                            "keeps the shift of t=%d", t, ref_t, q, s.min_quality, ref_t)
                continue
            cum[t] = cum[ref_t] + d * factor
            ref, ref_t, ref_fft = mov, t, None
    df = pd.DataFrame({"t": np.arange(n_t), "dz": cum[:, 0], "dy": cum[:, 1], "dx": cum[:, 2],
                       "quality": quality, "flagged": flagged})
    log.info("drift: max |d| (z, y, x) = %s px, %d flagged frame(s)",
             np.round(np.abs(cum).max(axis=0), 2).tolist(), int(flagged.sum()))
    return df


# --------------------------------------------------------------------------- correction


def shift_volume(volume: np.ndarray, drift: Sequence[float], order: int = 1) -> np.ndarray:
    """Resample a 3D volume at ``p + drift`` (undoes that drift); outside the field -> 0."""
    return ndi.shift(np.asarray(volume, dtype=np.float32), -np.asarray(drift, dtype=float),
                     order=order, mode="constant", cval=0.0, prefilter=order > 1)


def map_overlap_exact(arr: da.Array, func, depth: dict[int, int], **kwargs) -> da.Array:
    """``arr.map_overlap(func, depth, boundary="none")``, also when a halo exceeds the array.

    An axis whose halo is at least its length is made a single chunk (no halo needed then).
    """
    depth = dict(depth)
    single = {ax: -1 for ax, d in depth.items() if d > 0 and d >= arr.shape[ax]}
    if single:
        arr = arr.rechunk(single)
    for ax in list(depth):
        if arr.numblocks[ax] == 1:
            depth[ax] = 0
    return arr.map_overlap(func, depth=depth, boundary="none", dtype=np.float32, **kwargs)


def shift_margin(order: int) -> int:
    # spline prefiltering (order > 1) is global but decays as 0.268**n: 12 voxels < 1e-6
    return 1 if order <= 1 else 12


def _shift_block(block: np.ndarray, shifts: np.ndarray, order: int, block_info=None) -> np.ndarray:
    t0, t1 = block_info[0]["array-location"][0]
    out = np.empty(block.shape, dtype=np.float32)
    for i, t in enumerate(range(t0, t1)):
        out[i] = shift_volume(block[i], shifts[t], order)
    return out


def shift_dask(arr: da.Array, shifts: np.ndarray, order: int = 1) -> da.Array:
    """Undo per-timepoint drift of a ``(T, Z, Y, X)`` dask array, chunk by chunk.

    Output chunks equal the input's unless a halo exceeds an axis (then that axis is one chunk).

    The halo of each chunk covers the largest shift plus the interpolation support, so the
    result equals :func:`shift_volume` on whole volumes.
    """
    shifts = np.asarray(shifts, dtype=float)
    depth = {0: 0}
    for ax in range(3):
        need = int(math.ceil(np.abs(shifts[:, ax]).max())) + shift_margin(order)
        depth[ax + 1] = need
    return map_overlap_exact(arr, _shift_block, depth, shifts=shifts, order=order)


# --------------------------------------------------------------------------- outputs


def write_drift_csv(drift: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the drift table atomically."""
    with atomic_output(path) as tmp:
        drift[DRIFT_COLUMNS].to_csv(tmp, index=False, float_format="%.4f")


def read_drift_csv(path: str | os.PathLike,
                   columns: Sequence[str] = tuple(DRIFT_COLUMNS)) -> pd.DataFrame:
    """The drift table written by :func:`write_drift_csv`, checked for the ``columns`` the
    caller needs (a simulation's true drift has only ``t, dz, dy, dx``)."""
    try:
        drift = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise RegistrationError(f"{path}: not a readable drift table ({exc})") from exc
    missing = [c for c in columns if c not in drift.columns]
    if missing:
        raise RegistrationError(f"{path}: drift table lacks column(s) {missing}")
    return drift


def draw_drift(ax, drift: pd.DataFrame, voxel_size=None) -> int:
    """Cumulative drift per axis over time on ``ax``, flagged frames marked in red: in pixels,
    or in µm with ``voxel_size``. Returns the number of flagged frames. (The registration QC
    plot and the report's drift figure both draw it.)"""
    unit = "px" if voxel_size is None else "µm"
    scale = (1.0, 1.0, 1.0) if voxel_size is None else tuple(voxel_size)
    for col, s, color in zip(("dz", "dy", "dx"), scale, ("C0", "C1", "C2")):
        ax.plot(drift["t"], drift[col] * s, "o-", ms=3, color=color, label=col[1])
    flagged = (drift["t"][drift["flagged"].astype(bool)] if "flagged" in drift
               else drift["t"][:0])
    for t in flagged:
        ax.axvline(t, color="red", alpha=0.3, lw=3)
    if len(flagged):
        ax.plot([], [], color="red", alpha=0.3, lw=3, label="flagged")
    ax.set_ylabel(f"cumulative drift ({unit})")
    ax.legend(loc="best", fontsize=8, ncol=4)
    return len(flagged)


def plot_drift(drift: pd.DataFrame, path: str | os.PathLike, title: str = "drift") -> None:
    """Cumulative drift per axis and match quality over time, flagged frames marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True,
                                   gridspec_kw={"height_ratios": [2, 1]})
    n_bad = draw_drift(ax1, drift)
    for t in drift["t"][drift["flagged"].astype(bool)]:
        ax2.axvline(t, color="red", alpha=0.3, lw=3)
    ax1.set_title(title + (f" ({n_bad} flagged frame(s) in red)" if n_bad else ""))
    ax2.plot(drift["t"], drift["quality"], marker=".", color="k")
    ax2.set_ylabel("match quality")
    ax2.set_xlabel("timepoint")
    ax2.set_ylim(min(0.0, float(drift["quality"].min())), 1.05)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
