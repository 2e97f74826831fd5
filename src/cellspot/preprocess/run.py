"""The preprocess stage on OME-Zarr paths: settings, the dask scheduler, the driver and its
command line (``python -m cellspot.preprocess``)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import dask
import dask.array as da
import numpy as np
import pandas as pd
from pydantic import Field, ValidationError

from cellspot.errors import PreprocessError
from cellspot.layout import in_batch
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
    plot_drift,
    write_drift_csv,
)
from cellspot.resources import without_resources
from cellspot.stains import absent_stains

from .filters import ChannelSettings, StrictModel
from .intensity import (
    blank_timepoints,
    channel_stats,
    normalization_params,
    process_channel_dask,
    warn_bad_values,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- settings


class PreprocessSettings(StrictModel):
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
        absent = absent_stains(roles)
        if self.registration.enabled and self.registration.channel in absent:
            raise PreprocessError(
                f"preprocess.registration.channel is {self.registration.channel!r}, but "
                f"channels.{self.registration.channel} is null (the movie has no such stain): "
                "register on a stain it has")

        def name(key: str) -> str:
            v = roles.get(key, key)
            if isinstance(v, int) and not isinstance(v, bool):
                if channel_names is None or not 0 <= v < len(channel_names):
                    raise PreprocessError(
                        f"channel role {key!r} is index {v}, but the movie has channels "
                        f"{list(channel_names or [])}")
                return channel_names[v]
            return str(v)

        channels = {name(k): v for k, v in self.channels.items() if k not in absent}
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

    p = argparse.ArgumentParser(prog="python -m cellspot.preprocess",
                                description="Denoise, normalise and drift-correct an OME-Zarr "
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
        preprocess_from_config(a.movie, in_batch(out, "preprocessed"), config, a.threads,
                               in_batch(out, "drift_csv"), in_batch(out, "drift_png"))
    except (PreprocessError, OmeZarrError) as exc:
        log.error("%s", exc)
        return 2
    return 0




