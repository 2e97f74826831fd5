"""The tables that pass between stages: columns, dtypes and the empty table, written once.

A writer conforms its table to the spec (:meth:`TableSpec.conform`: the spec's columns first,
in order, at their dtypes, then any extra columns), writes :meth:`TableSpec.empty` when there is
nothing to write, and a reader checks what it needs (:meth:`TableSpec.check`), so an empty
movie and a full one give tables of the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from .errors import CellspotError


class TableError(CellspotError):
    """A table lacks columns a stage needs."""


@dataclass(frozen=True)
class TableSpec:
    """The columns (name -> pandas dtype) every table of one kind has, in order."""

    name: str
    dtypes: Mapping[str, str]

    @property
    def columns(self) -> list[str]:
        return list(self.dtypes)

    def empty(self, extra: Mapping[str, str] | None = None) -> pd.DataFrame:
        """The table with no rows (and the ``extra`` columns, name -> dtype, after)."""
        cols = {**self.dtypes, **(extra or {})}
        return pd.DataFrame({k: pd.Series([], dtype=v) for k, v in cols.items()})

    def conform(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with the spec's columns first, at their dtypes; other columns kept after."""
        self.check(df)
        rest = [c for c in df.columns if c not in self.dtypes]
        return df[self.columns + rest].astype(dict(self.dtypes))

    def check(self, df: pd.DataFrame, source: str = "",
              required: Sequence[str] | None = None) -> None:
        """Raise :class:`TableError` naming the table and the ``required`` columns (default:
        all of the spec's) it lacks."""
        missing = [c for c in (self.columns if required is None else required)
                   if c not in df.columns]
        if missing:
            where = f"{source}: " if source else ""
            raise TableError(f"{where}{self.name} table lacks column(s) {missing}; it has "
                             f"{list(df.columns)}")


# Per-slice instances of the segment stage (instances.parquet inside a block store).
INSTANCES = TableSpec("instances", {
    "t": "int32", "z": "int32", "class": "object", "instance": "int32", "score": "float32",
    "y0": "int32", "x0": "int32", "y1": "int32", "x1": "int32", "area": "int64",
    "y": "float64", "x": "float64"})

# 3D objects of one timepoint (merge; cells and nuclei add n_nuclei / cell_id and mean_<channel>).
OBJECTS = TableSpec("objects", {
    "label": "int64", "z": "float64", "y": "float64", "x": "float64", "volume_vox": "int64",
    "volume_um3": "float64",
    **{f"bbox_{a}{e}": "int64" for e in "01" for a in "zyx"}})

# 3D RNA spots of one timepoint (merge).
SPOTS = TableSpec("spots", {
    "label": "int64", "z": "float64", "y": "float64", "x": "float64", "intensity": "float64",
    "peak": "float64", "score": "float64", "n_slices": "int64", "z_first": "int64",
    "z_last": "int64", "n_rna": "int64", "cell_id": "int64", "compartment": "object",
    "distance_to_nucleus_um": "float64"})

# Tracks (track): one row per object per timepoint on a track, + the objects' features.
TRACKS = TableSpec("tracks", {
    "track_id": "int64", "t": "int64", "z": "float64", "y": "float64", "x": "float64",
    "label": "int64", "parent": "int64", "root": "int64", "generation": "int64",
    "dummy": "bool"})
