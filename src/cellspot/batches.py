"""Batches: one movie each, listed in the samples sheet or found in an inbox folder.

A batch name is the key of every output path (``results/{batch}/``), so it must be a plain file
name. The samples sheet is a TSV with columns ``batch`` and ``path`` and, for files that do not
state their own metadata, optional ``axes``, ``channel_names`` (comma-separated),
``voxel_size`` (``z,y,x`` in µm) and ``time_interval`` (s), and for a simulated movie ``truth``
(its ground-truth folder, which the run is then checked against).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import BatchError  # noqa: F401 - re-exported

BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MOVIE_SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff")
OPTIONAL_COLUMNS = ("axes", "channel_names", "voxel_size", "time_interval", "truth")


@dataclass(frozen=True)
class Batch:
    """One movie to process, with declarations for metadata its file may lack."""

    name: str
    path: str
    axes: str | None = None
    channel_names: tuple[str, ...] | None = None
    voxel_size: tuple[float, float, float] | None = None
    time_interval: float | None = None
    # a simulated movie's truth folder (`cellspot simulate`): the run is checked against it
    truth: str | None = None


def _parse_row(row: dict, where: str) -> Batch:
    name = str(row["batch"]).strip()
    if not BATCH_NAME.match(name):
        raise BatchError(f"{where}: batch name {name!r} must be letters, digits, '_', '.', '-'")

    def opt(key):
        v = row.get(key)
        return None if v is None or (isinstance(v, float) and pd.isna(v)) or str(v).strip() == "" \
            else str(v).strip()

    vs = opt("voxel_size")
    try:
        voxel = tuple(float(v) for v in vs.split(",")) if vs else None
        dt = float(opt("time_interval")) if opt("time_interval") else None
    except ValueError as exc:
        raise BatchError(f"{where}: batch {name}: voxel_size must be 'z,y,x' numbers and "
                         f"time_interval a number ({exc})") from exc
    if voxel is not None and len(voxel) != 3:
        raise BatchError(f"{where}: batch {name}: voxel_size needs 3 values z,y,x, got {vs!r}")
    names = opt("channel_names")
    return Batch(name=name, path=str(row["path"]).strip(), axes=opt("axes"),
                 channel_names=tuple(n.strip() for n in names.split(",")) if names else None,
                 voxel_size=voxel, time_interval=dt, truth=opt("truth"))


def read_samples(path: str | Path) -> list[Batch]:
    """Read the samples sheet (TSV). A missing sheet is an error; an empty one gives no batches."""
    path = Path(path)
    if not path.is_file():
        raise BatchError(f"{path}: samples sheet not found")
    table = pd.read_csv(path, sep="\t", dtype=str, comment="#", skip_blank_lines=True)
    missing = {"batch", "path"} - set(table.columns)
    if missing:
        raise BatchError(f"{path}: samples sheet lacks column(s) {sorted(missing)}; "
                         f"columns are batch, path, and optionally {', '.join(OPTIONAL_COLUMNS)}")
    unknown = set(table.columns) - {"batch", "path", *OPTIONAL_COLUMNS}
    if unknown:
        raise BatchError(f"{path}: unknown column(s) {sorted(unknown)}")
    return [_parse_row(r, f"{path} line {i + 2}") for i, r in enumerate(table.to_dict("records"))]


def batch_name_for(path: Path) -> str:
    """Batch name of a movie file: its name without the TIFF suffixes, made path-safe."""
    name = path.name
    for suffix in MOVIE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def scan_inbox(folder: str | Path, marker: str = "") -> list[Batch]:
    """Movies in an inbox folder, one batch each.

    Parameters
    ----------
    folder : path-like
        Folder with ``*.tif``/``*.tiff`` movies (not recursive).
    marker : str
        If set, a movie is taken only once a file of that suffix exists beside it
        (``movie.ome.tif`` + ``movie.ome.tif.done``): a movie still being copied is left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BatchError(f"{folder}: inbox folder not found")
    out = []
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.name.lower().endswith(MOVIE_SUFFIXES) and not f.name.startswith("."):
            if marker and not f.with_name(f.name + marker).exists():
                continue
            out.append(Batch(name=batch_name_for(f), path=str(f)))
    return out


def discover_batches(samples: str | None, inbox: str | None, marker: str = "") -> dict[str, Batch]:
    """All batches of a run: the samples sheet's and the inbox's, by name (names must be unique)."""
    batches: dict[str, Batch] = {}
    found = (read_samples(samples) if samples else []) + (scan_inbox(inbox, marker) if inbox else [])
    for b in found:
        if b.name in batches:
            raise BatchError(f"batch name {b.name!r} is used twice ({batches[b.name].path} and "
                             f"{b.path})")
        batches[b.name] = b
    return batches
