"""Intensity statistics of the whole movie (streaming histograms), percentile normalisation,
and one channel's normalise + filter + shift pass."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import dask
import dask.array as da
import numpy as np

from cellspot.register import (
    map_overlap_exact,
    shift_margin,
    shift_volume,
)

from .filters import ChannelSettings, PercentileNorm, apply_filters, filter_halo

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- intensity statistics


@dataclass(frozen=True)
class ChannelStats:
    """Whole-movie statistics of one channel (raw units)."""

    name: str
    low: float          # low percentile
    high: float         # high percentile
    vmin: float
    vmax: float
    n_voxels: int
    n_nonfinite: int    # NaN or infinite voxels
    n_saturated: int    # voxels at the dtype's maximum (integer data)

    @property
    def constant(self) -> bool:
        return not self.vmax > self.vmin


_N_FLOAT_BINS = 65536


def _int_hist(block: np.ndarray, offset: int, n_bins: int) -> np.ndarray:
    flat = block.ravel().astype(np.int64) - offset
    return np.bincount(flat, minlength=n_bins)


def _minmax(block: np.ndarray) -> np.ndarray:
    finite = np.isfinite(block)
    n_bad = block.size - int(finite.sum())
    if n_bad == block.size:
        return np.array([np.inf, -np.inf, n_bad])
    vals = block[finite]
    return np.array([vals.min(), vals.max(), n_bad], dtype=float)


def _float_hist(block: np.ndarray, lo: float, hi: float) -> np.ndarray:
    vals = block[np.isfinite(block)].astype(np.float64)
    idx = np.floor((vals - lo) / (hi - lo) * _N_FLOAT_BINS).astype(np.int64)
    np.clip(idx, 0, _N_FLOAT_BINS - 1, out=idx)
    return np.bincount(idx, minlength=_N_FLOAT_BINS)


def _tree_sum(parts: list):
    """Sum delayed arrays pairwise, so that only a few partial sums are alive at a time."""
    parts = list(parts)
    while len(parts) > 1:
        parts = [dask.delayed(np.add)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


def _block_batches(arr: da.Array, max_blocks: int = 256):
    """The array's blocks (as delayed objects) in batches of whole leading-axis slices.

    One graph per batch: the scheduler's memory for the graph stays bounded however long the
    movie is.
    """
    per_slice = int(np.prod(arr.numblocks[1:]))
    step = max(1, max_blocks // max(per_slice, 1))
    bounds = np.concatenate([[0], np.cumsum(arr.chunks[0])])
    for i in range(0, arr.numblocks[0], step):
        j = min(i + step, arr.numblocks[0])
        yield arr[int(bounds[i]):int(bounds[j])].to_delayed().ravel()


def _percentiles_from_counts(counts: np.ndarray, values: np.ndarray,
                             q: Sequence[float]) -> list[float]:
    """``numpy.percentile`` (linear) of the data whose histogram over ``values`` is ``counts``."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    out = []
    for p in q:
        rank = p / 100.0 * (n - 1)
        i = int(math.floor(rank))
        frac = rank - i
        v0 = values[np.searchsorted(cum, i, side="right")]
        v1 = values[np.searchsorted(cum, min(i + 1, n - 1), side="right")]
        out.append(float(v0 + frac * (v1 - v0)))
    return out


def channel_stats(channel: da.Array, name: str, low: float = 1.0,
                  high: float = 99.8) -> ChannelStats:
    """Percentiles and bad-value counts of one channel over the whole movie, streaming.

    Parameters
    ----------
    channel : dask array
        The channel (any shape, e.g. ``(T, Z, Y, X)``) backed by the chunks of the store.
    name : str
        Channel name, for messages.
    low, high : float
        Percentiles to compute.
    """
    dtype = channel.dtype
    if dtype.kind in "uib" and dtype.itemsize <= 2:
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        n_bins = int(info.max) - int(info.min) + 1
        counts = sum(_tree_sum([dask.delayed(_int_hist)(b, int(info.min), n_bins)
                                for b in blocks]).compute()
                     for blocks in _block_batches(channel))
        values = np.arange(int(info.min), int(info.max) + 1, dtype=np.float64)
        nz = np.flatnonzero(counts)
        lo_p, hi_p = _percentiles_from_counts(counts, values, (low, high))
        return ChannelStats(name, lo_p, hi_p, float(values[nz[0]]), float(values[nz[-1]]),
                            int(counts.sum()), 0, int(counts[-1]) if dtype.kind == "u" else 0)
    # floats and wide integers: min/max pass, then a fine histogram
    mm = np.concatenate([np.array(dask.compute(*[dask.delayed(_minmax)(b) for b in blocks]))
                         for blocks in _block_batches(channel)])
    vmin, vmax, n_bad = float(mm[:, 0].min()), float(mm[:, 1].max()), int(mm[:, 2].sum())
    n = int(channel.size)
    if n_bad == n:
        return ChannelStats(name, 0.0, 0.0, 0.0, 0.0, n, n_bad, 0)
    if not vmax > vmin:
        return ChannelStats(name, vmin, vmin, vmin, vmax, n, n_bad, 0)
    counts = sum(_tree_sum([dask.delayed(_float_hist)(b, vmin, vmax) for b in blocks]).compute()
                 for blocks in _block_batches(channel))
    centres = vmin + (np.arange(_N_FLOAT_BINS) + 0.5) * (vmax - vmin) / _N_FLOAT_BINS
    lo_p, hi_p = _percentiles_from_counts(counts, centres, (low, high))
    n_sat = 0
    if dtype.kind in "ui":
        n_sat = int(counts[-1]) if vmax == np.iinfo(dtype).max else 0
    return ChannelStats(name, lo_p, hi_p, vmin, vmax, n, n_bad, n_sat)


def blank_timepoints(movie: da.Array) -> np.ndarray:
    """``(T, C)`` booleans: where a channel of a ``tczyx`` movie is constant at a timepoint (a
    dropped or empty frame). Such a frame says nothing about the channel's intensities, and left
    in, its voxels would pull the whole movie's low percentile down to its value."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN frame: NaN, i.e. blank
        lo, hi = dask.compute(da.nanmin(movie, axis=(2, 3, 4)), da.nanmax(movie, axis=(2, 3, 4)))
    return ~(np.asarray(hi) > np.asarray(lo))


def warn_bad_values(stats: ChannelStats, source: str = "") -> None:
    """Log warnings for a constant channel, non-finite and saturated voxels."""
    where = f"{source}: " if source else ""
    if stats.n_nonfinite:
        log.warning("%schannel %r has %d NaN/infinite voxels (%.3g%%); they are replaced by its "
                    "low percentile", where, stats.name, stats.n_nonfinite,
                    100 * stats.n_nonfinite / stats.n_voxels)
    if stats.n_nonfinite == stats.n_voxels:
        log.warning("%schannel %r has no finite voxel; it is written as zeros", where, stats.name)
    elif stats.constant:
        log.warning("%schannel %r is constant (value %g): it carries no signal and is written as "
                    "zeros", where, stats.name, stats.vmin)
    elif not stats.high > stats.low:
        log.warning("%schannel %r: the normalisation percentiles are equal (%g); it is written "
                    "relative to that value without scaling", where, stats.name, stats.low)
    if stats.n_saturated:
        log.warning("%schannel %r has %d saturated voxels (%.3g%%) at the maximum of its type",
                    where, stats.name, stats.n_saturated, 100 * stats.n_saturated / stats.n_voxels)


def normalization_params(stats: ChannelStats,
                         norm: PercentileNorm | None) -> tuple[float, float, float]:
    """``(offset, scale, fill)``: ``out = (raw - offset) * scale``, non-finite raw -> ``fill``."""
    fill_raw = stats.low if norm is not None else stats.vmin
    if stats.n_nonfinite == stats.n_voxels or stats.constant:
        return fill_raw, 0.0, 0.0
    if norm is None:
        return 0.0, 1.0, fill_raw
    scale = 1.0 / (stats.high - stats.low) if stats.high > stats.low else 1.0
    return stats.low, scale, 0.0


def normalize_block(block: np.ndarray, offset: float, scale: float, fill: float) -> np.ndarray:
    """``(block - offset) * scale`` as float32, with non-finite voxels set to ``fill``."""
    out = (block.astype(np.float32) - np.float32(offset)) * np.float32(scale)
    if block.dtype.kind == "f":
        out[~np.isfinite(block)] = fill
    return out


def preprocess_channel(channel: np.ndarray, settings: ChannelSettings,
                       voxel_size: Sequence[float]) -> np.ndarray:
    """Normalise and filter one in-memory ``(T, Z, Y, X)`` channel as the stage does (no drift).

    The same percentiles of the whole channel and the same filters as :func:`preprocess_movie`,
    for arrays that fit in memory: training images made with it look like what inference sees.
    """
    channel = np.asarray(channel)
    norm = settings.normalize
    finite = channel[np.isfinite(channel)] if channel.dtype.kind == "f" else channel.ravel()
    if finite.size == 0:
        return np.zeros(channel.shape, np.float32)
    if norm is None:
        offset, scale, fill = 0.0, 1.0, float(finite.min())
    else:
        low, high = np.percentile(finite, [norm.low, norm.high])
        offset, fill = float(low), 0.0
        scale = 1.0 / (high - low) if high > low else 0.0
    out = np.empty(channel.shape, np.float32)
    for t in range(channel.shape[0]):
        out[t] = apply_filters(normalize_block(channel[t], offset, scale, fill),
                               settings.filters, voxel_size)
    return out


def _process_block(block, norm, filters, voxel_size, shifts, order, block_info=None):
    t0, t1 = block_info[0]["array-location"][0]
    out = np.empty(block.shape, dtype=np.float32)
    for i, t in enumerate(range(t0, t1)):
        vol = apply_filters(normalize_block(block[i], *norm), filters, voxel_size)
        out[i] = vol if shifts is None else shift_volume(vol, shifts[t], order)
    return out


def process_channel_dask(channel: da.Array, norm: tuple[float, float, float], filters: Sequence,
                         voxel_size: Sequence[float], shifts: np.ndarray | None = None,
                         order: int = 1) -> da.Array:
    """Normalise, filter and shift a ``(T, Z, Y, X)`` channel in one pass over its chunks.

    Equals ``shift_dask(filter_dask(normalised), ...)``, but one task per chunk reads a slab
    with the filter halo plus the shift halo, so no intermediate chunks are kept alive.

    Parameters
    ----------
    norm : (offset, scale, fill)
        From :func:`normalization_params`.
    shifts : (T, 3) array, optional
        Drift to undo per timepoint (``None``: no shift).
    """
    halo = np.array(filter_halo(filters, voxel_size))
    if shifts is not None:
        shifts = np.asarray(shifts, dtype=float)
        halo += np.ceil(np.abs(shifts).max(axis=0)).astype(int) + shift_margin(order)
    depth = {0: 0, 1: int(halo[0]), 2: int(halo[1]), 3: int(halo[2])}
    return map_overlap_exact(channel, _process_block, depth, norm=tuple(norm),
                             filters=list(filters), voxel_size=tuple(voxel_size), shifts=shifts,
                             order=order)


