"""OME-Zarr (OME-NGFF 0.4) images and label images.

Images are 5D ``tczyx``; label images are 4D ``tzyx``. Arrays are Zarr v2 format with ``/``
chunk keys, as NGFF 0.4 requires, so ``ome-zarr``, napari and Fiji's N5/Zarr readers open them.
Writers never hold a whole movie: they return a Zarr array to fill chunk by chunk.

Every writer here is meant to be used inside :func:`atomic_output`, so that a killed job leaves
no half-written store behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numcodecs
import numpy as np
import zarr

from .errors import OmeZarrError  # noqa: F401 - re-exported for stages

NGFF_VERSION = "0.4"
IMAGE_AXES = "tczyx"
LABEL_AXES = "tzyx"
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_AXIS_UNITS = {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}
# Physical sizes a light microscope can give, in µm: outside, the value's unit is wrong (e.g. m or
# nm taken as µm) and every volume, speed and distance would be off by orders of magnitude.
PLAUSIBLE_VOXEL_UM = (1e-4, 1e3)
# Colours (hex RGB) given to channels in order: nuclear stain blue, cytoplasm green, RNA magenta.
DEFAULT_COLORS = ("0000FF", "00FF00", "FF00FF", "FFFF00", "00FFFF", "FF0000")


@dataclass(frozen=True)
class ImageMeta:
    """Physical metadata of a ``tczyx`` movie.

    Attributes
    ----------
    channel_names : tuple of str
        One name per channel, in order.
    voxel_size : tuple of float
        ``(z, y, x)`` pixel size in micrometres.
    time_interval : float
        Seconds between timepoints.
    name : str
        Name of the image (e.g. the batch).
    """

    channel_names: tuple[str, ...]
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    time_interval: float = 1.0
    name: str = "image"
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        problem = physical_problem(self.voxel_size, self.time_interval)
        if problem:
            raise OmeZarrError(problem)

    def channel_index(self, name: str | int) -> int:
        """Index of a channel given by name or index, with a clear error when absent."""
        if isinstance(name, (int, np.integer)):
            if not 0 <= int(name) < len(self.channel_names):
                raise OmeZarrError(
                    f"channel index {name} out of range: the movie has channels "
                    f"{list(self.channel_names)}"
                )
            return int(name)
        if name not in self.channel_names:
            raise OmeZarrError(
                f"channel {name!r} not found: the movie has channels {list(self.channel_names)}"
            )
        return self.channel_names.index(name)


def physical_problem(voxel_size, time_interval) -> str:
    """What is wrong with a voxel size (z, y, x in µm) and time interval (s); '' if nothing.

    Each value must be a finite number > 0, and a voxel size within :data:`PLAUSIBLE_VOXEL_UM`.
    """
    lo, hi = PLAUSIBLE_VOXEL_UM
    try:
        vs = [float(v) for v in voxel_size]
    except (TypeError, ValueError):
        vs = []
    if len(vs) != 3:
        return f"voxel size {voxel_size!r} must be 3 numbers z, y, x in µm"
    if not all(math.isfinite(v) and v > 0 for v in vs):
        return f"voxel size {tuple(vs)} µm: every value must be a finite number > 0"
    if not all(lo <= v <= hi for v in vs):
        return (f"voxel size {tuple(vs)} µm is outside {lo:g}-{hi:g} µm: is its unit right "
                f"(values are in µm)?")
    try:
        dt = float(time_interval)
    except (TypeError, ValueError):
        return f"time interval {time_interval!r} must be a number of seconds"
    if not (math.isfinite(dt) and dt > 0):
        return f"time interval {dt:g} s: it must be a finite number of seconds > 0"
    return ""


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it onto ``path`` only on success.

    The temporary path lives in the same directory, so the final ``rename`` is atomic on POSIX
    file systems. On an exception the temporary file or folder is removed and ``path`` is left as
    it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One writer per output (Snakemake's lock), so another temporary sibling is a killed job's.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        _remove(stale)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a small text file atomically."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text)


def write_table(path: str | os.PathLike, df) -> None:
    """Write a table atomically, as Parquet or CSV by the path's suffix."""
    suffix = Path(path).suffix
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"{path}: a table is written as .parquet or .csv")
    with atomic_output(path) as tmp:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


# --------------------------------------------------------------------------- writing


def default_chunks(shape: Sequence[int], itemsize: int, target_mb: float = 8.0) -> tuple[int, ...]:
    """Chunks of one timepoint, one channel and a block of z-slices of about ``target_mb``.

    Parameters
    ----------
    shape : sequence of int
        ``(T, C, Z, Y, X)`` or ``(T, Z, Y, X)``.
    itemsize : int
        Bytes per voxel.
    target_mb : float
        Target chunk size in MiB (before compression).
    """
    *lead, z, y, x = shape
    plane = y * x * itemsize
    z_block = int(max(1, min(z, (target_mb * 2**20) // max(plane, 1))))
    return tuple([1] * len(lead) + [z_block, y, x])


def _compressor() -> numcodecs.abc.Codec:
    return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)


def _axes(axes: str) -> list[dict]:
    out = []
    for a in axes:
        d = {"name": a, "type": _AXIS_TYPES[a]}
        if a in _AXIS_UNITS:
            d["unit"] = _AXIS_UNITS[a]
        out.append(d)
    return out


def _scale(axes: str, meta: ImageMeta) -> list[float]:
    phys = {"t": meta.time_interval, "c": 1.0, "z": meta.voxel_size[0],
            "y": meta.voxel_size[1], "x": meta.voxel_size[2]}
    return [float(phys[a]) for a in axes]


def _multiscales(axes: str, meta: ImageMeta, name: str) -> list[dict]:
    return [{
        "version": NGFF_VERSION,
        "name": name,
        "axes": _axes(axes),
        "datasets": [{
            "path": "0",
            "coordinateTransformations": [{"type": "scale", "scale": _scale(axes, meta)}],
        }],
        "coordinateTransformations": [{"type": "identity"}],
    }]


def _create_array(group: zarr.Group, shape, dtype, chunks) -> zarr.Array:
    return group.create_array(
        "0",
        shape=tuple(int(s) for s in shape),
        chunks=tuple(int(c) for c in chunks),
        dtype=dtype,
        compressors=_compressor(),
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        overwrite=True,
    )


def create_image(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype,
    meta: ImageMeta,
    chunks: Sequence[int] | None = None,
    contrast_limits: Sequence[tuple[float, float]] | None = None,
) -> zarr.Array:
    """Create an empty NGFF 0.4 ``tczyx`` image and return its full-resolution array to fill.

    Parameters
    ----------
    path : path-like
        Store to create (a folder, conventionally ending in ``.ome.zarr``).
    shape : sequence of int
        ``(T, C, Z, Y, X)``.
    dtype : numpy dtype
    meta : ImageMeta
        Channel names, voxel size and time step.
    chunks : sequence of int, optional
        Defaults to :func:`default_chunks`.
    contrast_limits : sequence of (float, float), optional
        Display window per channel for viewers (``omero`` metadata).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 5:
        raise OmeZarrError(f"{path}: an image must be 5D (t, c, z, y, x), got shape {shape}")
    if shape[1] != len(meta.channel_names):
        raise OmeZarrError(
            f"{path}: {shape[1]} channels but {len(meta.channel_names)} channel names"
        )
    dtype = np.dtype(dtype)
    chunks = tuple(chunks) if chunks is not None else default_chunks(shape, dtype.itemsize)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = _create_array(group, shape, dtype, chunks)
    if contrast_limits is None:
        hi = float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0
        contrast_limits = [(0.0, hi)] * shape[1]
    group.attrs.update({
        "multiscales": _multiscales(IMAGE_AXES, meta, meta.name),
        "omero": {
            "name": meta.name,
            "version": NGFF_VERSION,
            "channels": [
                {
                    "label": str(n),
                    "color": DEFAULT_COLORS[i % len(DEFAULT_COLORS)],
                    "active": True,
                    "coefficient": 1.0,
                    "family": "linear",
                    "inverted": False,
                    "window": {"start": float(lo), "end": float(hi), "min": float(lo),
                               "max": float(hi)},
                }
                for i, (n, (lo, hi)) in enumerate(zip(meta.channel_names, contrast_limits))
            ],
            "rdefs": {"model": "color", "defaultT": 0, "defaultZ": shape[2] // 2},
        },
        "cellspot": {"time_interval": meta.time_interval, **meta.extra},
    })
    return arr


def set_contrast_limits(path: str | os.PathLike, limits: Sequence[tuple[float, float]]) -> None:
    """Update the per-channel display window of an image (e.g. after computing percentiles)."""
    group = zarr.open_group(str(path), mode="r+", zarr_format=2)
    omero = dict(group.attrs["omero"])
    for ch, (lo, hi) in zip(omero["channels"], limits):
        ch["window"] = {"start": float(lo), "end": float(hi), "min": float(lo), "max": float(hi)}
    group.attrs["omero"] = omero


def create_labels(
    path: str | os.PathLike,
    shape: Sequence[int],
    meta: ImageMeta,
    name: str,
    dtype="uint32",
    chunks: Sequence[int] | None = None,
    properties: Sequence[dict] | None = None,
) -> zarr.Array:
    """Create an empty standalone NGFF 0.4 label image (``tzyx``) and return its array to fill.

    The store is meant to be placed (or linked) at ``<image>.ome.zarr/labels/<name>``; its
    ``image-label.source.image`` points two levels up, to that image.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise OmeZarrError(f"{path}: a label image must be 4D (t, z, y, x), got shape {shape}")
    dtype = np.dtype(dtype)
    chunks = tuple(chunks) if chunks is not None else default_chunks(shape, dtype.itemsize)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = _create_array(group, shape, dtype, chunks)
    image_label = {"version": NGFF_VERSION, "source": {"image": "../../"}}
    if properties:
        image_label["properties"] = list(properties)
    group.attrs.update({
        "multiscales": _multiscales(LABEL_AXES, meta, name),
        "image-label": image_label,
    })
    return arr


def write_labels(path: str | os.PathLike, labels: np.ndarray, meta: ImageMeta, name: str,
                 **kwargs) -> None:
    """Write an in-memory ``tzyx`` label array atomically as a standalone label image."""
    with atomic_output(path) as tmp:
        arr = create_labels(tmp, labels.shape, meta, name, dtype=labels.dtype, **kwargs)
        arr[...] = labels


# --------------------------------------------------------------------------- reading


def _open_group(path: str | os.PathLike) -> zarr.Group:
    p = Path(path)
    if not p.exists():
        raise OmeZarrError(f"{p}: no such OME-Zarr store")
    try:
        return zarr.open_group(str(p), mode="r")
    except Exception as exc:  # zarr raises several types for a broken store
        raise OmeZarrError(f"{p}: not a readable Zarr group ({exc})") from exc


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding an NGFF image or label image (multiscales)."""
    attrs = Path(path) / ".zattrs"
    try:
        return Path(path).is_dir() and "multiscales" in json.loads(attrs.read_text())
    except (OSError, ValueError):
        return False


def read_meta(path: str | os.PathLike) -> ImageMeta:
    """Read the :class:`ImageMeta` of an NGFF image written by :func:`create_image`."""
    group = _open_group(path)
    attrs = group.attrs.asdict()
    try:
        ms = attrs["multiscales"][0]
        axes = "".join(a["name"] for a in ms["axes"])
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    except (KeyError, IndexError) as exc:
        raise OmeZarrError(f"{path}: no NGFF multiscales metadata") from exc
    phys = dict(zip(axes, scale))
    if "c" in axes:
        channels = attrs.get("omero", {}).get("channels", [])
        n_c = group["0"].shape[axes.index("c")]
        names = tuple(c.get("label", f"c{i}") for i, c in enumerate(channels)) or tuple(
            f"c{i}" for i in range(n_c))
    else:
        names = ()
    extra = dict(attrs.get("cellspot", {}))
    dt = float(extra.pop("time_interval", phys.get("t", 1.0)))
    try:
        return ImageMeta(
            channel_names=names,
            voxel_size=(float(phys.get("z", 1.0)), float(phys.get("y", 1.0)),
                        float(phys.get("x", 1.0))),
            time_interval=dt,
            name=ms.get("name", Path(path).name),
            extra=extra,
        )
    except OmeZarrError as exc:
        raise OmeZarrError(f"{path}: {exc}") from None


def open_array(path: str | os.PathLike, mode: str = "r") -> zarr.Array:
    """Open the full-resolution array (``0``) of an NGFF image or label image."""
    group = _open_group(path) if mode == "r" else zarr.open_group(str(path), mode=mode)
    try:
        return group["0"]
    except KeyError as exc:
        raise OmeZarrError(f"{path}: no full-resolution array '0'") from exc


def read_attrs(path: str | os.PathLike) -> dict:
    """All attributes of a Zarr group, as a plain dict."""
    return _open_group(path).attrs.asdict()


# --------------------------------------------------------------------------- the viewable dataset


def assemble_view(image: str | os.PathLike, labels: dict[str, str | os.PathLike],
                  out: str | os.PathLike) -> None:
    """Write the dataset a person opens in napari: ``image`` plus ``labels`` in one OME-Zarr.

    Nothing is copied: ``out/0`` and ``out/labels/<name>`` are relative symbolic links to the
    stage outputs, so each Snakemake rule keeps sole ownership of what it wrote.
    """
    image, out = Path(image), Path(out)
    with atomic_output(out) as tmp:
        tmp.mkdir()
        for meta_file in (".zattrs", ".zgroup"):
            shutil.copy(image / meta_file, tmp / meta_file)
        os.symlink(os.path.relpath(image / "0", out), tmp / "0")
        if labels:
            (tmp / "labels").mkdir()
            (tmp / "labels" / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
            (tmp / "labels" / ".zattrs").write_text(json.dumps({"labels": list(labels)}))
            for name, src in labels.items():
                os.symlink(os.path.relpath(Path(src), out / "labels"), tmp / "labels" / name)
