"""Batches: one movie each, listed in the samples sheet or found in an inbox folder.

A batch name is the key of every output path (``results/{batch}/``), so it must be a plain file
name. The samples sheet is a TSV with columns ``batch`` and ``path`` and, for files that do not
state their own metadata, optional ``axes``, ``channel_names`` (comma-separated),
``voxel_size`` (``z,y,x`` in µm) and ``time_interval`` (s), and for a simulated movie ``truth``
(its ground-truth folder, which the run is then checked against).

One bad batch never blocks the others: a row that does not parse, a movie that is not there and
two movies that map to one batch name are *rejected* (with the reason, which ``cellspot status``
and the nightly report show) and every other batch is processed. Only a sheet that cannot be read
at all stops the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import BatchError  # noqa: F401 - re-exported
from .omezarr import physical_problem

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
    if voxel is not None or dt is not None:
        problem = physical_problem(voxel or (1.0, 1.0, 1.0), 1.0 if dt is None else dt)
        if problem:
            raise BatchError(f"{where}: batch {name}: {problem}")
    names = opt("channel_names")
    return Batch(name=name, path=str(row["path"]).strip(), axes=opt("axes"),
                 channel_names=tuple(n.strip() for n in names.split(",")) if names else None,
                 voxel_size=voxel, time_interval=dt, truth=opt("truth"))


@dataclass(frozen=True)
class Rejected:
    """A batch that cannot be processed, and why (one line naming the file or the row)."""

    name: str
    reason: str


def read_samples(path: str | Path) -> list[Batch | Rejected]:
    """Read the samples sheet (TSV): one :class:`Batch` per row, or a :class:`Rejected` for a row
    that does not parse. A missing or malformed sheet is an error; an empty one gives no batches."""
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
    out: list[Batch | Rejected] = []
    for i, row in enumerate(table.to_dict("records")):
        try:
            out.append(_parse_row(row, f"{path} line {i + 2}"))
        except BatchError as exc:
            out.append(Rejected(str(row["batch"]).strip(), str(exc)))
    return out


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


@dataclass
class BatchPlan:
    """The batches of a run: those to process, by name, and those rejected, with the reason."""

    batches: dict[str, Batch] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


def discover_batches(samples: str | None, inbox: str | None, marker: str = "") -> BatchPlan:
    """All batches of a run: the samples sheet's and the inbox's.

    A batch whose movie is missing is rejected; so is a batch name given to two movies (both are
    left alone: which one the user meant cannot be told).
    """
    plan = BatchPlan()
    found = ((read_samples(samples) if samples else [])
             + (scan_inbox(inbox, marker) if inbox else []))
    paths: dict[str, list[str]] = {}
    for b in found:
        if isinstance(b, Rejected):
            plan.rejected[b.name] = b.reason
            continue
        paths.setdefault(b.name, []).append(b.path)
        if len(paths[b.name]) > 1:
            plan.batches.pop(b.name, None)
            plan.rejected[b.name] = (f"batch name {b.name!r} is given to {len(paths[b.name])} "
                                     f"movies ({', '.join(paths[b.name])}); rename all but one")
        elif b.name not in plan.rejected:
            if Path(b.path).is_file():
                plan.batches[b.name] = b
            else:
                plan.rejected[b.name] = f"{b.path}: movie not found (batch {b.name})"
    return plan
