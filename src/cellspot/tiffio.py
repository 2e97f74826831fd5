"""Lazy reading of TIFF / OME-TIFF movies as TCZYX, with their physical metadata.

Nothing here loads a whole movie: :class:`TiffMovie` reads planes on demand through tifffile's
Zarr view of the file, so a movie larger than memory can be converted block by block. Files are
opened read-only and never modified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import zarr

from .errors import InputError
from .omezarr import ImageMeta, OmeZarrError

__all__ = ["InputError", "TiffMovie", "open_movie", "count_timepoints", "SUPPORTED_AXES"]

log = logging.getLogger(__name__)

SUPPORTED_AXES = ("TCZYX", "TZYX", "CZYX", "ZYX", "CYX", "YX")
_CANONICAL = "TCZYX"
_LENGTH_TO_UM = {"pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "um": 1.0, "micron": 1.0,
                 "mm": 1e3, "cm": 1e4, "m": 1e6}
_TIME_TO_S = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0,
              "h": 3600.0}


@dataclass
class TiffMovie:
    """A TIFF movie opened lazily and presented as TCZYX.

    Attributes
    ----------
    path : Path
    axes : str
        The file's own axes (one of :data:`SUPPORTED_AXES`).
    shape : tuple of int
        TCZYX shape.
    dtype : numpy dtype
    meta : ImageMeta
    """

    path: Path
    axes: str
    shape: tuple[int, int, int, int, int]
    dtype: np.dtype
    meta: ImageMeta
    _tif: tifffile.TiffFile
    _data: zarr.Array

    def read(self, t: int, c: int, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0:z1`` of timepoint ``t`` and channel ``c`` as a (Z, Y, X) array."""
        index = []
        for ax in self.axes:
            index.append({"T": t, "C": c, "Z": slice(z0, z1)}.get(ax, slice(None)))
        try:
            block = np.asarray(self._data[tuple(index)])
        except Exception as exc:  # tifffile/zarr raise many types for damaged data
            raise InputError(f"{self.path}: cannot read t={t} c={c} z={z0}:{z1}: the file is "
                             f"truncated or corrupt ({type(exc).__name__}: {exc})") from exc
        if "Z" not in self.axes:
            block = block[None]
        return block

    def close(self) -> None:
        self._tif.close()

    def __enter__(self) -> "TiffMovie":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _unit(value, unit, table, what, path) -> float | None:
    if value is None:
        return None
    factor = table.get(str(unit))
    if factor is None:
        log.warning("%s: unknown %s unit %r; taking the value as is", path, what, unit)
        factor = 1.0
    return float(value) * factor


def _ome_meta(tif: tifffile.TiffFile, path: Path) -> dict:
    """Voxel size, time step and channel names from OME-XML or ImageJ metadata (None if absent)."""
    out: dict = {}
    if tif.is_ome and tif.ome_metadata:
        try:
            image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
        except Exception as exc:
            log.warning("%s: unreadable OME-XML (%s); ignoring it", path, exc)
            return out
        size = [_unit(pixels.get(f"PhysicalSize{a}"), pixels.get(f"PhysicalSize{a}Unit", "µm"),
                      _LENGTH_TO_UM, "length", path) for a in "ZYX"]
        if any(s is not None for s in size):
            out["voxel_size"] = tuple(size)
        dt = _unit(pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s"), _TIME_TO_S,
                   "time", path)
        if dt is not None:
            out["time_interval"] = dt
        channels = pixels.get("Channel", [])
        channels = channels if isinstance(channels, list) else [channels]
        names = [ch.get("Name") for ch in channels if isinstance(ch, dict)]
        if names and all(names):
            out["channel_names"] = tuple(str(n) for n in names)
    elif tif.is_imagej and tif.imagej_metadata:
        ij = tif.imagej_metadata
        page = tif.pages.first
        res = page.tags.get("XResolution")
        xy = None
        if res is not None and res.value[0]:
            xy = res.value[1] / res.value[0]
            xy = _unit(xy, ij.get("unit", "µm").replace("micron", "µm"), _LENGTH_TO_UM, "length",
                       path)
        out["voxel_size"] = (ij.get("spacing"), xy, xy)
        if ij.get("finterval"):  # ImageJ writes 0 for "not set"
            out["time_interval"] = float(ij["finterval"])
        if isinstance(ij.get("Labels"), list) and ij.get("channels"):
            out["channel_names"] = tuple(ij["Labels"][: ij["channels"]])
    return out


class _ErrorCollector(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _check_data_within_file(tif: tifffile.TiffFile, series, path: Path) -> None:
    """Every plane's bytes must lie inside the file: a cut-off copy fails here, not mid-way."""
    size = path.stat().st_size
    for page in series.pages:
        if page is None:
            raise InputError(f"{path}: the file is truncated or corrupt (a page is missing)")
        offsets, counts = page.dataoffsets, page.databytecounts
        if offsets and max(o + c for o, c in zip(offsets, counts)) > size:
            raise InputError(f"{path}: the file is truncated or corrupt (image data of page "
                             f"{page.index} ends past the end of the file, {size} bytes)")


def _file_axes(series: tifffile.TiffPageSeries) -> str | None:
    """The series' axes if the file states them (OME, ImageJ, tifffile 'shaped'), else None."""
    axes = series.axes.upper().replace("S", "C") if series.kind in ("ome", "imagej", "shaped") \
        else None
    if axes and set(axes) <= set(_CANONICAL) and len(set(axes)) == len(axes):
        return axes
    return None


def open_movie(
    path: str | Path,
    axes: str | None = None,
    channel_names: tuple[str, ...] | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    time_interval: float | None = None,
) -> TiffMovie:
    """Open a TIFF/OME-TIFF movie lazily.

    Parameters
    ----------
    path : path-like
    axes : str, optional
        Axes of the file (one of TCZYX, TZYX, CZYX, ZYX, CYX, YX). Used when the file does not state
        its axes (a plain TIFF); a file's OME/ImageJ axes take precedence. A 2D image (YX) needs
        no declaration.
    channel_names, voxel_size, time_interval : optional
        Fallbacks for metadata the file lacks; the file's OME metadata take precedence.

    Raises
    ------
    InputError
        Missing file, not a TIFF, corrupt, or dimensions that do not fit the axes.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    problems = _ErrorCollector()
    logging.getLogger("tifffile").addHandler(problems)
    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
        data = zarr.open(series.aszarr(), mode="r")
        _check_data_within_file(tif, series, path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
    finally:
        logging.getLogger("tifffile").removeHandler(problems)
    if problems.messages:
        # tifffile reads what it can of a damaged file and only logs the damage.
        tif.close()
        raise InputError(f"{path}: the file is truncated or corrupt "
                         f"(tifffile: {'; '.join(problems.messages[:3])})")

    declared = axes.upper() if axes else None
    if declared is not None and declared not in SUPPORTED_AXES:
        tif.close()
        raise InputError(f"{path}: axes {axes!r} not supported; use one of {SUPPORTED_AXES}")
    stated = _file_axes(series)
    if stated is not None and declared is not None and stated != declared:
        log.warning("%s: the file states axes %s; ignoring the declared %s", path, stated, declared)
    file_axes = stated or declared or ("YX" if data.ndim == 2 else None)
    if file_axes is None:
        tif.close()
        raise InputError(f"{path}: the file does not state its axes and none were declared for "
                         f"its shape {tuple(data.shape)}; set 'axes' in the samples sheet "
                         f"(one of {', '.join(SUPPORTED_AXES)})")
    if file_axes not in SUPPORTED_AXES:
        # e.g. OME 'TZCYX': reorderable, since indexing goes by axis name.
        if sorted(file_axes) not in [sorted(a) for a in SUPPORTED_AXES]:
            tif.close()
            raise InputError(f"{path}: axes {file_axes} not supported; use one of {SUPPORTED_AXES}")
    if len(file_axes) != data.ndim:
        tif.close()
        hint = ("; a plain multi-page TIFF cannot tell its pages' T from Z or C: save it as "
                "OME-TIFF or an ImageJ hyperstack") if data.ndim == 3 and len(file_axes) > 3 else ""
        raise InputError(f"{path}: the image has {data.ndim} dimensions (shape "
                         f"{tuple(data.shape)}) but axes {file_axes!r} declare "
                         f"{len(file_axes)}{hint}")
    dims = dict(zip(file_axes, data.shape))
    shape = tuple(int(dims.get(a, 1)) for a in _CANONICAL)

    found = _ome_meta(tif, path)
    n_c = shape[1]
    names = found.get("channel_names") or channel_names or tuple(f"c{i}" for i in range(n_c))
    if len(names) != n_c:
        log.warning("%s: %d channel names for %d channels; using c0..c%d", path, len(names), n_c,
                    n_c - 1)
        names = tuple(f"c{i}" for i in range(n_c))
    vs = [_stated(v, f"{ax} pixel size", path)
          for v, ax in zip(found.get("voxel_size") or (None, None, None), "zyx")]
    fallback = voxel_size or (1.0, 1.0, 1.0)
    for i, ax in enumerate("zyx"):
        if vs[i] is None:
            if voxel_size is None and dims.get(ax.upper(), 1) > 1:
                log.warning("%s: no physical %s pixel size in the file or the samples sheet; "
                            "using %g µm", path, ax, fallback[i])
            vs[i] = float(fallback[i])
    dt = _stated(found.get("time_interval"), "time interval", path)
    if dt is None:
        if time_interval is None and shape[0] > 1:
            log.warning("%s: no time interval in the file or the samples sheet; using 1 s "
                        "(speeds are then per frame)", path)
        dt = 1.0 if time_interval is None else time_interval
    try:
        meta = ImageMeta(channel_names=tuple(names), voxel_size=tuple(vs), time_interval=float(dt),
                         name=path.name.split(".")[0])
    except OmeZarrError as exc:
        tif.close()
        raise InputError(f"{path}: {exc}") from None
    return TiffMovie(path, file_axes, shape, np.dtype(data.dtype), meta, tif, data)


def _stated(value: float | None, what: str, path: Path) -> float | None:
    """A size the file states, or None where it states none or a meaningless one (0, < 0, NaN):
    the declared value is then used instead."""
    if value is None or (np.isfinite(value) and value > 0):
        return value
    log.warning("%s: the file states a %s of %r; ignoring it", path, what, value)
    return None


def count_timepoints(path: str | Path, axes: str | None = None,
                     voxel_size: tuple[float, float, float] | None = None) -> int:
    """Number of timepoints of a movie, read from its header alone (fast, for planning jobs).

    OME-TIFF and ImageJ files state it in their metadata; other files are opened lazily.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
                pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
                return int(pixels.get("SizeT", 1))
            if tif.is_imagej and tif.imagej_metadata:
                return int(tif.imagej_metadata.get("frames", 1))
    except (KeyError, ValueError, TypeError, tifffile.TiffFileError):
        pass  # fall through to the full (lazy) open, which reports problems clearly
    with open_movie(path, axes, voxel_size=voxel_size) as movie:
        return movie.shape[0]
