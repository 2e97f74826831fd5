"""Denoising, percentile normalisation and drift correction of ``tczyx`` movies, chunk by chunk.

The filters are small pure functions on numpy volumes. :func:`filter_dask` runs a channel's chain
of filters over a dask array with ``map_overlap`` and a halo derived from each filter's
parameters (:func:`filter_halo`), so the chunked result equals the whole-volume result: at an
inner chunk border the halo holds real neighbours, and at the border of the volume there is no
halo (``boundary="none"``), so every filter sees the same edge and applies its own edge mode,
exactly as on the whole volume.

Intensities are normalised per channel with percentiles of the *whole movie* (all timepoints),
computed in a streaming pass (:func:`channel_stats`). Integer data of up to 16 bits use an exact
histogram of every value, so the percentiles equal ``numpy.percentile`` of the whole channel;
other data use a 65536-bin histogram between the channel's minimum and maximum (error at most
1/65536 of the range). Histograms are summed over chunks, so the result does not depend on the
chunking. Normalisation is affine and is applied *before* the filters: Gaussian smoothing and the
background filters commute with it, and it makes the non-local-means cut-off ``h`` a fraction
of the channel's intensity range whatever the camera.

:func:`preprocess_movie` is the stage's entry point on OME-Zarr paths: drift estimation
(:mod:`cellspot.register`) on the registration channel, then normalise + filter + shift for every
channel in one chunked pass (:func:`process_channel_dask`: each chunk reads a slab with the
filter halo plus the shift halo), written as a float32 OME-Zarr, plus the drift table and plot.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Iterator, Literal, Sequence, Union

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.ndimage as ndi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cellspot.errors import CellspotError
from cellspot.resources import without_resources
from cellspot.omezarr import (
    ImageMeta,
    OmeZarrError,
    atomic_output,
    create_image,
    open_array,
    read_meta,
    set_contrast_limits,
)
from cellspot.register import (
    RegistrationSettings,
    estimate_drift,
    map_overlap_exact,
    plot_drift,
    shift_margin,
    shift_volume,
    write_drift_csv,
)

log = logging.getLogger(__name__)

PositiveFloat = Annotated[float, Field(gt=0)]
# a length in micrometres: one value, or one per axis (z, y, x)
Length = Union[PositiveFloat, tuple[PositiveFloat, PositiveFloat, PositiveFloat]]


class PreprocessError(CellspotError):
    """The movie or the settings do not allow preprocessing (e.g. a channel is absent)."""


# --------------------------------------------------------------------------- pure filters


def _per_axis(value: float | Sequence[float], voxel_size: Sequence[float]) -> np.ndarray:
    """A length in micrometres (scalar or per axis) as pixels per axis ``(z, y, x)``."""
    um = np.broadcast_to(np.asarray(value, dtype=float), (3,))
    return um / np.asarray(voxel_size, dtype=float)


def ellipsoid_footprint(radius_px: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid with semi-axes ``radius_px`` (at least one voxel: the centre)."""
    half = [int(math.floor(r)) for r in radius_px]
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    dist = sum((g / max(r, 1e-9)) ** 2 for g, r in zip(grids, radius_px))
    return dist <= 1.0


def gaussian_smooth(image: np.ndarray, sigma_px: Sequence[float],
                    truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing with a per-axis ``sigma_px`` (edges: ``reflect``)."""
    return ndi.gaussian_filter(image, sigma=tuple(sigma_px), truncate=truncate, mode="reflect")


def nl_means(image: np.ndarray, patch_size: int, patch_distance: int, h: float,
             fast_mode: bool = True) -> np.ndarray:
    """Non-local means (scikit-image); ``h`` is in the image's intensity units."""
    from skimage.restoration import denoise_nl_means

    out = denoise_nl_means(image, patch_size=patch_size, patch_distance=patch_distance, h=h,
                           fast_mode=fast_mode, channel_axis=None)
    # scikit-image drops a trailing axis of length 1 (it reads it as 2D)
    return out.reshape(image.shape).astype(image.dtype, copy=False)


def white_tophat(image: np.ndarray, radius_px: Sequence[float]) -> np.ndarray:
    """Background subtraction by a white top-hat with an ellipsoidal flat footprint."""
    return ndi.white_tophat(image, footprint=ellipsoid_footprint(radius_px), mode="reflect")


def rolling_ball(image: np.ndarray, radius_px: Sequence[float], height: float) -> np.ndarray:
    """Background subtraction by scikit-image's rolling ball (ellipsoid kernel).

    ``height`` is the ball's extent along the intensity axis, in the image's intensity units.
    """
    from skimage.restoration import ellipsoid_kernel, rolling_ball as _rolling_ball

    shape = [2 * max(int(math.floor(r)), 1) + 1 for r in radius_px]
    kernel = ellipsoid_kernel(shape, height)
    # one OpenMP thread: dask already runs one block per thread
    background = _rolling_ball(image, kernel=kernel, workers=1)
    return image - background


# --------------------------------------------------------------------------- filter settings


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GaussianFilter(_Model):
    """Gaussian smoothing; ``sigma_um`` in micrometres (one value or ``(z, y, x)``)."""

    kind: Literal["gaussian"] = "gaussian"
    sigma_um: Length
    truncate: float = Field(4.0, gt=0)

    def halo(self, voxel_size: Sequence[float]) -> tuple[int, int, int]:
        # scipy's kernel radius is int(truncate * sigma + 0.5)
        return tuple(int(self.truncate * s + 0.5) for s in _per_axis(self.sigma_um, voxel_size))

    def apply(self, image: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
        return gaussian_smooth(image, _per_axis(self.sigma_um, voxel_size), self.truncate)


class NLMeansFilter(_Model):
    """Non-local means; patch sizes in pixels, ``h`` as a fraction of the normalised range."""

    kind: Literal["nl_means"] = "nl_means"
    patch_size: int = Field(3, ge=1)
    patch_distance: int = Field(3, ge=1)
    h: float = Field(0.05, gt=0)
    fast_mode: bool = True

    def halo(self, voxel_size: Sequence[float]) -> tuple[int, int, int]:
        # a voxel's weights read patches centred up to patch_distance away (+1: the fast mode's
        # integral image)
        r = self.patch_distance + self.patch_size // 2 + 1
        return (r, r, r)

    def apply(self, image: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
        return nl_means(image, self.patch_size, self.patch_distance, self.h, self.fast_mode)


class TopHatFilter(_Model):
    """White top-hat background subtraction; ``radius_um`` larger than the spots."""

    kind: Literal["tophat"] = "tophat"
    radius_um: Length

    def halo(self, voxel_size: Sequence[float]) -> tuple[int, int, int]:
        # opening = dilation of an erosion: two footprint radii
        return tuple(2 * int(math.floor(r)) for r in _per_axis(self.radius_um, voxel_size))

    def apply(self, image: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
        return white_tophat(image, _per_axis(self.radius_um, voxel_size))


class RollingBallFilter(_Model):
    """Rolling-ball background subtraction; ``height`` in normalised intensity units."""

    kind: Literal["rolling_ball"] = "rolling_ball"
    radius_um: Length
    height: float = Field(1.0, gt=0)

    def halo(self, voxel_size: Sequence[float]) -> tuple[int, int, int]:
        return tuple(2 * max(int(math.floor(r)), 1) for r in _per_axis(self.radius_um, voxel_size))

    def apply(self, image: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
        return rolling_ball(image, _per_axis(self.radius_um, voxel_size), self.height)


Filter = Annotated[
    Union[GaussianFilter, NLMeansFilter, TopHatFilter, RollingBallFilter],
    Field(discriminator="kind"),
]


class PercentileNorm(_Model):
    """Map the ``low`` percentile of the whole channel to 0 and the ``high`` one to 1."""

    low: float = Field(1.0, ge=0, le=100)
    high: float = Field(99.8, ge=0, le=100)

    @field_validator("high")
    @classmethod
    def _ordered(cls, v, info):
        if "low" in info.data and v <= info.data["low"]:
            raise ValueError("high percentile must be above the low one")
        return v


class ChannelSettings(_Model):
    """What is done to one channel: normalisation, then the filters in order."""

    normalize: PercentileNorm | None = Field(default_factory=PercentileNorm)
    filters: list[Filter] = Field(default_factory=list)


def apply_filters(image: np.ndarray, filters: Sequence, voxel_size: Sequence[float]) -> np.ndarray:
    """Apply a chain of filters to a 3D volume (float32 in, float32 out)."""
    out = image
    for f in filters:
        out = f.apply(out, voxel_size).astype(np.float32, copy=False)
    return out


def filter_halo(filters: Sequence, voxel_size: Sequence[float]) -> tuple[int, int, int]:
    """Halo ``(z, y, x)`` in voxels that makes a chunk of the filtered chain exact."""
    total = np.zeros(3, dtype=int)
    for f in filters:
        total += np.asarray(f.halo(voxel_size), dtype=int)
    return tuple(int(v) for v in total)


def _filter_block(block: np.ndarray, filters, voxel_size) -> np.ndarray:
    # a block is (..., z, y, x): filter every 3D volume of the leading axes on its own
    lead = block.shape[:-3]
    out = np.empty(block.shape, dtype=np.float32)
    for idx in np.ndindex(*lead):
        out[idx] = apply_filters(block[idx].astype(np.float32, copy=False), filters, voxel_size)
    return out


def filter_dask(arr: da.Array, filters: Sequence, voxel_size: Sequence[float]) -> da.Array:
    """Run a filter chain over the last three axes of a dask array, chunk by chunk.

    Leading axes (time) get no halo; the spatial halo is :func:`filter_halo`.
    """
    if not filters:
        return arr.astype(np.float32)
    hz, hy, hx = filter_halo(filters, voxel_size)
    depth = {i: 0 for i in range(arr.ndim - 3)}
    depth.update({arr.ndim - 3: hz, arr.ndim - 2: hy, arr.ndim - 1: hx})
    return map_overlap_exact(arr, _filter_block, depth, filters=list(filters),
                             voxel_size=tuple(voxel_size))


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


# --------------------------------------------------------------------------- settings


class PreprocessSettings(_Model):
    """Settings of the preprocessing stage (the ``preprocess:`` config section).

    ``channels`` is keyed by channel name (or by role; see :meth:`resolve_channels`). Channels of
    the movie not listed are normalised with the default percentiles and not filtered.
    """

    channels: dict[str, ChannelSettings] = Field(default_factory=dict)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    scheduler: Literal["threads", "distributed"] = "threads"

    @classmethod
    def from_config(cls, section: dict | None) -> "PreprocessSettings":
        """Settings from the ``preprocess:`` config section, minus the job's resources."""
        section = without_resources(section or {})
        try:
            return cls.model_validate(section)
        except ValidationError as exc:
            raise PreprocessError(f"invalid preprocess settings: {exc}") from exc

    def resolve_channels(self, roles: dict[str, str | int] | None,
                         channel_names: Sequence[str] | None = None) -> "PreprocessSettings":
        """Replace role keys (``nucleus``, ``cytoplasm``, ``rna``) by channel names.

        ``roles`` is the top-level ``channels:`` config (role -> channel name or 0-based index);
        ``channel_names`` (the movie's) turns indices into names.
        """
        roles = roles or {}

        def name(key: str) -> str:
            v = roles.get(key, key)
            if isinstance(v, int) and not isinstance(v, bool):
                if channel_names is None or not 0 <= v < len(channel_names):
                    raise PreprocessError(
                        f"channel role {key!r} is index {v}, but the movie has channels "
                        f"{list(channel_names or [])}")
                return channel_names[v]
            return str(v)

        channels = {name(k): v for k, v in self.channels.items()}
        reg = self.registration.model_copy(update={"channel": name(self.registration.channel)})
        return self.model_copy(update={"channels": channels, "registration": reg})


# --------------------------------------------------------------------------- scheduler


def limit_heap_growth(threshold: int = 1 << 16) -> bool:
    """Make glibc return freed chunk buffers to the system (call once per process).

    glibc raises its mmap threshold after large blocks are freed, so later chunk-sized buffers
    come from the heap and stay resident: peak RSS then grows with the number of buffers ever
    used, not with those alive. Fixing the thresholds keeps RSS close to the live data. Returns
    False where glibc is absent (no effect).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, threshold)) and bool(mallopt(m_trim_threshold, threshold))


@contextlib.contextmanager
def dask_scheduler(threads: int = 1, scheduler: str = "threads") -> Iterator[Callable[[], None]]:
    """Run dask computations inside the block with ``threads`` workers.

    ``threads``: dask's threaded scheduler (the filters release the GIL for most of their time).
    ``distributed``: a local cluster of ``threads`` single-threaded worker processes, for filters
    that hold the GIL.

    Yields ``settle()``: it stops the workers, waiting for the tasks still running. When one task
    fails dask raises at once while the others go on writing, so a caller about to remove a
    partial output calls it first (else a worker recreates files in the removed folder).
    """
    threads = max(int(threads), 1)
    if scheduler == "distributed":
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=threads, threads_per_worker=1, processes=True,
                          dashboard_address=None, memory_limit=0) as cluster, Client(cluster):
            yield cluster.close
    else:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(threads)
        settle = functools.partial(pool.shutdown, wait=True, cancel_futures=True)
        try:
            with dask.config.set(scheduler="threads", pool=pool):
                yield settle
        finally:
            settle()


# --------------------------------------------------------------------------- the stage


def check_channels(meta: ImageMeta, names: Sequence[str], source: str,
                   shape: Sequence[int] | None = None) -> None:
    """Raise :class:`PreprocessError` naming the file if a configured channel is absent; with
    the movie's ``shape`` (TCZYX) the message says what kind of image it is."""
    missing = [n for n in dict.fromkeys(names) if n not in meta.channel_names]
    if missing:
        kind = ""
        if shape is not None:
            T, C, Z = shape[:3]
            dims = "a 2D image" if Z == 1 else "a 3D stack"
            kind = (f" (shape TCZYX {tuple(shape)}: {dims}, {T} timepoint(s), {C} channel(s); "
                    f"name its channels in the samples sheet's channel_names, or map the "
                    f"stains it has in `channels:`)")
        raise PreprocessError(
            f"{source}: channel(s) {missing} named in the preprocess settings are not in the "
            f"movie, which has channels {list(meta.channel_names)}{kind}"
        )


def preprocess_movie(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: PreprocessSettings | dict | None = None,
    threads: int = 1,
    drift_csv: str | os.PathLike | None = None,
    drift_png: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Denoise, normalise and drift-correct an OME-Zarr movie into a float32 OME-Zarr.

    Memory stays bounded by a few chunks per thread: the movie is read chunk by chunk (a
    timepoint's registration channel at a time for the drift estimate).

    Parameters
    ----------
    in_path, out_path : path-like
        Input ``tczyx`` OME-Zarr (any numeric dtype); output store (written atomically).
    settings : PreprocessSettings or dict
        Channel keys must already be channel names (see
        :meth:`PreprocessSettings.resolve_channels`).
    threads : int
        Dask workers.
    drift_csv, drift_png : path-like, optional
        Where to write the drift table and plot (atomically).

    Returns
    -------
    pandas.DataFrame
        The drift table (``t, dz, dy, dx, quality, flagged``).
    """
    if not isinstance(settings, PreprocessSettings):
        settings = PreprocessSettings.from_config(settings)
    in_path = Path(in_path)
    meta = read_meta(in_path)
    raw = open_array(in_path)
    if raw.ndim != 5:
        raise OmeZarrError(f"{in_path}: expected a 5D tczyx image, got shape {raw.shape}")
    reg = settings.registration
    check_channels(meta, list(settings.channels) + ([reg.channel] if reg.enabled else []),
                   str(in_path), raw.shape)
    voxel = meta.voxel_size
    x = da.from_zarr(raw)
    n_t, n_c = raw.shape[:2]
    log.info("%s: shape %s, dtype %s, chunks %s, voxel size %s um", in_path, raw.shape,
             raw.dtype, raw.chunks, voxel)

    with dask_scheduler(threads, settings.scheduler) as settle:
        # 1. whole-movie intensity statistics per channel
        clock = time.perf_counter()
        params, record = [], {}
        blank = blank_timepoints(x) if n_t > 1 else np.zeros((n_t, n_c), bool)
        for c, name in enumerate(meta.channel_names):
            ch = settings.channels.get(name, ChannelSettings())
            norm = ch.normalize
            keep = np.flatnonzero(~blank[:, c])
            if 0 < len(keep) < n_t:
                log.warning("%s: channel %r is blank (constant) at timepoint(s) %s; they are left "
                            "out of its normalisation percentiles", in_path, name,
                            np.flatnonzero(blank[:, c]).tolist())
            channel = x[keep, c] if 0 < len(keep) < n_t else x[:, c]
            stats = channel_stats(channel, name, *(norm.low, norm.high) if norm else (1.0, 99.8))
            warn_bad_values(stats, str(in_path))
            params.append(normalization_params(stats, norm))
            record[name] = {"percentiles": [norm.low, norm.high] if norm else None,
                            "raw_low": stats.low, "raw_high": stats.high,
                            "offset": params[-1][0], "scale": params[-1][1],
                            "filters": [f.model_dump() for f in ch.filters]}
            log.info("channel %r: p_low %.6g, p_high %.6g, min %.6g, max %.6g", name, stats.low,
                     stats.high, stats.vmin, stats.vmax)

        log.info("intensity statistics: %.1f s", time.perf_counter() - clock)
        clock = time.perf_counter()
        # 2. drift of every timepoint on the registration channel
        if reg.enabled:
            c_reg = meta.channel_index(reg.channel)
            drift = estimate_drift(raw, c_reg, reg, fill_value=params[c_reg][0], threads=threads)
        else:
            drift = pd.DataFrame({"t": np.arange(n_t), "dz": 0.0, "dy": 0.0, "dx": 0.0,
                                  "quality": 1.0, "flagged": False})
        shifts = drift[["dz", "dy", "dx"]].to_numpy(dtype=float)

        log.info("drift estimation: %.1f s", time.perf_counter() - clock)
        clock = time.perf_counter()
        # 3. normalise + filter + shift every channel, chunk by chunk; one dask graph per batch
        # of timepoints, so the graph's own memory does not grow with the movie
        use_shift = reg.enabled and bool(np.any(shifts != 0))
        per_t = n_c * int(np.prod(x.numblocks[2:]))
        step = max(1, max(64, 8 * threads) // per_t)
        bounds = np.concatenate([[0], np.cumsum(x.chunks[0])]).astype(int)
        out_meta = ImageMeta(meta.channel_names, voxel, meta.time_interval, meta.name,
                             extra={**meta.extra, "preprocess": {"channels": record}})
        with atomic_output(out_path) as tmp:
            out = create_image(tmp, raw.shape, np.float32, out_meta, chunks=raw.chunks)
            try:
                for i in range(0, x.numblocks[0], step):
                    t0, t1 = bounds[i], bounds[min(i + step, x.numblocks[0])]
                    outs = [process_channel_dask(
                        x[t0:t1, c], params[c],
                        settings.channels.get(name, ChannelSettings()).filters, voxel,
                        shifts[t0:t1] if use_shift else None, reg.order)
                        for c, name in enumerate(meta.channel_names)]
                    da.store(da.stack(outs, axis=1).rechunk(raw.chunks), out,
                             regions=(slice(t0, t1),), lock=False)
            except BaseException:
                settle()  # no worker may write into the partial output once it is removed
                raise
            log.info("normalise, filter, shift and write: %.1f s (%.2f Mvoxel/s)",
                     time.perf_counter() - clock, raw.size / (time.perf_counter() - clock) / 1e6)
            set_contrast_limits(tmp, [(0.0, 1.0)] * n_c)

    if drift_csv is not None:
        write_drift_csv(drift, drift_csv)
    if drift_png is not None:
        plot_drift(drift, drift_png, title=f"drift of {meta.name}")
    return drift


def preprocess_from_config(in_path: str | os.PathLike, out_path: str | os.PathLike,
                           config: dict, threads: int | None = None,
                           drift_csv: str | os.PathLike | None = None,
                           drift_png: str | os.PathLike | None = None):
    """:func:`preprocess_movie` with the workflow's config (``preprocess:`` and ``channels:``).

    ``threads`` defaults to ``config["preprocess"]["threads"]``. Used by the rule's script and
    by ``python -m cellspot.preprocess``.
    """
    section = dict(config.get("preprocess") or {})
    meta = read_meta(in_path)
    settings = PreprocessSettings.from_config(section).resolve_channels(
        config.get("channels") or {}, meta.channel_names)
    threads = int(threads or section.get("threads") or 1)
    return preprocess_movie(in_path, out_path, settings, threads=threads, drift_csv=drift_csv,
                            drift_png=drift_png)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cellspot.preprocess RAW.ome.zarr OUTDIR [--config config.yaml]``."""
    import argparse

    import yaml

    p = argparse.ArgumentParser(description="Denoise, normalise and drift-correct an OME-Zarr "
                                "movie: OUTDIR/preprocessed.ome.zarr, drift.csv, drift.png.")
    p.add_argument("movie", help="input tczyx OME-Zarr (e.g. results/BATCH/raw.ome.zarr)")
    p.add_argument("outdir")
    p.add_argument("--config", default=None, help="workflow config (its preprocess: and "
                   "channels: sections); defaults to the built-in settings")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    limit_heap_growth()
    config = yaml.safe_load(Path(a.config).read_text()) if a.config else {}
    out = Path(a.outdir)
    try:
        preprocess_from_config(a.movie, out / "preprocessed.ome.zarr", config, a.threads,
                               out / "drift.csv", out / "drift.png")
    except (PreprocessError, OmeZarrError) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
