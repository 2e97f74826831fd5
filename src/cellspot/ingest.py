"""Ingest: convert a TIFF/OME-TIFF movie into a chunked OME-Zarr (NGFF 0.4), streaming.

One block of z-slices of one channel of one timepoint is in memory at a time, so a movie larger
than RAM converts. The output is written to a temporary sibling and renamed into place, so a
killed conversion leaves nothing that looks complete; the input is opened read-only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .errors import InputError
from .omezarr import atomic_output, create_image, default_chunks, is_ome_zarr, set_contrast_limits
from .tiffio import open_movie

log = logging.getLogger(__name__)


def check_destination(src: str | Path, dst: str | Path, overwrite: bool = False) -> None:
    """Refuse a destination whose replacement would lose data.

    The output replaces ``dst`` as a whole, so ``dst`` must not be the movie itself, a folder
    holding it or the current folder, and an existing ``dst`` is replaced only with ``overwrite``
    and only if it is an OME-Zarr image (never an arbitrary folder or file).

    Raises
    ------
    InputError
        Naming the destination and why it is refused.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if dst == src or dst in src.parents:
        raise InputError(f"{dst}: the output would replace the movie {src}; choose another path")
    if dst == Path.cwd() or dst in Path.cwd().parents:
        raise InputError(f"{dst}: the output would replace the current folder; choose another path")
    if dst.exists() or dst.is_symlink():
        if not is_ome_zarr(dst):
            raise InputError(f"{dst}: exists and is not an OME-Zarr image; not replacing it "
                             f"(choose a new output path)")
        if not overwrite:
            raise InputError(f"{dst}: exists; pass --overwrite to replace it")


def ingest_movie(
    src: str | Path,
    dst: str | Path,
    axes: str | None = None,
    channel_names: tuple[str, ...] | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    time_interval: float | None = None,
    z_block: int | None = None,
    chunk_mb: float = 8.0,
    name: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Convert ``src`` (TIFF/OME-TIFF) into the OME-Zarr image ``dst``.

    Parameters
    ----------
    src, dst : path-like
        Input movie and output store (``*.ome.zarr``).
    axes, channel_names, voxel_size, time_interval : optional
        Declarations for what the file's metadata lack (see :func:`cellspot.tiffio.open_movie`).
    z_block : int, optional
        Z-slices per chunk; by default chosen so a chunk holds about ``chunk_mb`` MiB.
    name : str, optional
        Image name in the metadata (defaults to the file name).
    overwrite : bool
        Replace an existing OME-Zarr image at ``dst`` (see :func:`check_destination`).

    Returns
    -------
    dict
        Summary: shape, dtype, chunks, channel names, voxel size, time interval, seconds.
    """
    t0 = time.perf_counter()
    check_destination(src, dst, overwrite)
    with open_movie(src, axes, channel_names, voxel_size, time_interval) as movie:
        meta = movie.meta if name is None else type(movie.meta)(
            movie.meta.channel_names, movie.meta.voxel_size, movie.meta.time_interval, name)
        T, C, Z, Y, X = movie.shape
        chunks = list(default_chunks(movie.shape, movie.dtype.itemsize, chunk_mb))
        if z_block:
            chunks[2] = int(min(z_block, Z))
        zb = chunks[2]
        log.info("ingest %s (axes %s) -> %s: shape TCZYX %s %s, chunks %s, channels %s, "
                 "voxel %s µm, dt %g s", src, movie.axes, dst, movie.shape, movie.dtype,
                 tuple(chunks), list(meta.channel_names), meta.voxel_size, meta.time_interval)
        # Display windows from a bounded subsample: a few thousand voxels per block.
        samples: list[list[np.ndarray]] = [[] for _ in range(C)]
        with atomic_output(dst) as tmp:
            out = create_image(tmp, movie.shape, movie.dtype, meta, chunks=chunks)
            for t in range(T):
                for c in range(C):
                    for z0 in range(0, Z, zb):
                        block = movie.read(t, c, z0, min(z0 + zb, Z))
                        out[t, c, z0:z0 + block.shape[0]] = block
                        step = max(1, block.size // 4096)
                        # a copy, not a view: frees the block
                        samples[c].append(block.ravel()[::step].copy())
                log.info("ingest: timepoint %d/%d done (%.0f%%)", t + 1, T, 100 * (t + 1) / T)
            limits = []
            for c in range(C):
                v = np.concatenate(samples[c]).astype(np.float64)
                v = v[np.isfinite(v)]
                lo, hi = (np.percentile(v, [0.1, 99.9]) if v.size else (0.0, 1.0))
                limits.append((float(lo), float(hi if hi > lo else lo + 1)))
            set_contrast_limits(tmp, limits)
        summary = {
            "source": str(src), "output": str(dst), "source_axes": movie.axes,
            "shape_tczyx": list(movie.shape), "dtype": str(movie.dtype), "chunks": chunks,
            "channel_names": list(meta.channel_names), "voxel_size_um": list(meta.voxel_size),
            "time_interval_s": meta.time_interval, "seconds": round(time.perf_counter() - t0, 3),
        }
    log.info("ingest finished in %.1f s", summary["seconds"])
    return summary
