"""The file-level driver of rule ``merge`` and ``python -m cellspot.merge``."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..layout import in_batch
from ..omezarr import OmeZarrError, atomic_output, create_labels, open_array, read_meta
from ..segment.store import read_segmentation
from .settings import SEMANTIC_PROPERTIES, MergeSettings
from .timepoint import merge_timepoint

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- segmentation I/O


class SegmentationBlocks:
    """The per-slice segmentation of a batch, block stores of the segment stage, by timepoint.

    Each store is ``results/{batch}/segment/{model}/tAAAA-BBBB.zarr`` (layout in
    :mod:`cellspot.segment.store`): arrays ``cell``/``nucleus`` (model "cells") or ``spots``
    (model "spots"), ``(T_block, Z, Y, X)`` int32 with ids unique within a slice, and
    ``instances.parquet`` whose ``class == "spot"`` rows are the spot detections. Stores are
    opened lazily; a timepoint reads one slice stack per class.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.blocks = [(read_segmentation(p), Path(p)) for p in paths]
        self.shape = None
        for seg, p in self.blocks:
            for name, arr in seg.arrays.items():
                if arr.ndim != 4:
                    raise OmeZarrError(f"{p}/{name}: expected (T, Z, Y, X), got {arr.shape}")
                if self.shape is None:
                    self.shape = tuple(arr.shape[1:])
                elif tuple(arr.shape[1:]) != self.shape:
                    raise OmeZarrError(f"{p}/{name}: slices {arr.shape[1:]} differ from "
                                       f"{self.shape} of the other stores")

    @property
    def n_timepoints(self) -> int:
        return max((seg.t_stop for seg, _ in self.blocks), default=0)

    def uncovered(self, n_timepoints: int) -> dict[str, list[int]]:
        """Timepoints ``0..n_timepoints-1`` that no store of a class array covers, by array
        (arrays no store has are not listed)."""
        present = {name for seg, _ in self.blocks for name in seg.arrays}
        return {name: gaps for name in sorted(present)
                if (gaps := [t for t in range(n_timepoints) if self._block(t, name) is None])}

    def _block(self, t: int, array: str):
        for seg, p in self.blocks:
            if seg.t_start <= t < seg.t_stop and array in seg.arrays:
                return seg
        return None

    def labels(self, t: int, array: str) -> np.ndarray | None:
        """Per-slice instance stack ``(Z, Y, X)`` of class array ``array`` at ``t``, or None."""
        seg = self._block(t, array)
        return None if seg is None else np.asarray(seg.arrays[array][t - seg.t_start])

    def detections(self, t: int, cls: str = "spot") -> pd.DataFrame | None:
        """Rows of class ``cls`` at ``t`` of the instance tables (None: no store covers t)."""
        parts = [seg.table[(seg.table["t"] == t) & (seg.table["class"] == cls)]
                 for seg, _ in self.blocks if seg.t_start <= t < seg.t_stop]
        if not parts:
            return None
        return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- driver


LABEL_NAMES = ("cells", "nuclei", "semantic", "spots")
TABLE_NAMES = ("cells", "nuclei", "spots")


def run_merge(segmentation: Sequence[str | os.PathLike], image: str | os.PathLike,
              labels_out: dict[str, str | os.PathLike], tables_out: dict[str, str | os.PathLike],
              settings: MergeSettings | None = None) -> None:
    """Merge a batch: read the segmentation and the preprocessed image, write labels and tables.

    Parameters
    ----------
    segmentation : paths of the segment stage's block stores (both models; see
        :class:`SegmentationBlocks`)
    image : path of ``preprocessed.ome.zarr`` (TCZYX)
    labels_out : {"cells", "nuclei", "semantic", "spots"} -> label image path (``.zarr``)
    tables_out : {"cells", "nuclei", "spots"} -> parquet path

    A timepoint without objects gives empty labels and no rows; a timepoint that no store of a
    class covers is an error (the stores and the image are not of the same movie).
    """
    s = settings or MergeSettings()
    missing = (set(LABEL_NAMES) - set(labels_out)) | (set(TABLE_NAMES) - set(tables_out))
    if missing:
        raise ValueError(f"run_merge: no output path for {sorted(missing)}")
    meta = read_meta(image)
    img = open_array(image)
    if img.ndim != 5:
        raise OmeZarrError(f"{image}: expected a TCZYX image, got shape {img.shape}")
    meta.channel_index(s.spots.channel)  # fail early on a wrong channel name
    seg = SegmentationBlocks(segmentation)
    T = img.shape[0]
    shape = tuple(int(v) for v in img.shape[2:])
    if seg.shape is not None and seg.shape != shape:
        raise OmeZarrError(f"segmentation slices {seg.shape} do not match the image {shape} "
                           f"of {image}")
    if seg.n_timepoints > T:
        raise OmeZarrError(f"segmentation has {seg.n_timepoints} timepoints but {image} has {T}")
    gaps = seg.uncovered(T)
    if gaps:
        # e.g. a movie still being copied when the jobs were planned: fewer timepoints segmented
        name, missing = next(iter(gaps.items()))
        raise OmeZarrError(f"{image} has {T} timepoints but the segmentation ({name}) does not "
                           f"cover {len(missing)} of them (t = {missing[0]}..{missing[-1]}): the "
                           f"movie changed after the jobs were planned? Run the workflow again")
    tables: dict[str, list[pd.DataFrame]] = {k: [] for k in TABLE_NAMES}
    with contextlib.ExitStack() as stack:
        arrays = {}
        for name in LABEL_NAMES:
            tmp = stack.enter_context(atomic_output(labels_out[name]))
            dtype = np.uint8 if name == "semantic" else np.uint32
            props = SEMANTIC_PROPERTIES if name == "semantic" else None
            arrays[name] = create_labels(tmp, (T,) + shape, meta, name, dtype=dtype,
                                         properties=props)
        tmp_tables = {k: stack.enter_context(atomic_output(tables_out[k])) for k in TABLE_NAMES}
        for t in range(T):
            cells_2d, nuclei_2d = seg.labels(t, "cell"), seg.labels(t, "nucleus")
            det = seg.detections(t, "spot")
            if cells_2d is None and nuclei_2d is None and det is None:
                log.warning("timepoint %d has no segmentation: empty labels", t)
            frame = np.asarray(img[t], np.float32)
            res = merge_timepoint(cells_2d, nuclei_2d, det, frame, meta, s, shape)
            for name in LABEL_NAMES:
                arrays[name][t] = getattr(res, name)
            for name, tab in (("cells", res.cell_table), ("nuclei", res.nucleus_table),
                              ("spots", res.spot_table)):
                tab = tab.copy()
                tab.insert(0, "t", np.full(len(tab), t, np.int64))
                tables[name].append(tab)
            log.info("t=%d: %d cells, %d nuclei, %d spots", t, len(res.cell_table),
                     len(res.nucleus_table), len(res.spot_table))
        for name in TABLE_NAMES:
            nonempty = [tb for tb in tables[name] if len(tb)]
            df = pd.concat(nonempty, ignore_index=True) if nonempty else tables[name][0]
            df.to_parquet(tmp_tables[name], index=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m cellspot.merge SEGMENT_STORES... --image I --out DIR``.

    Writes ``DIR/labels/{cells,nuclei,semantic,spots}.zarr`` and
    ``DIR/tables/{cells,nuclei,spots}.parquet``; settings from the ``merge:`` section of a
    YAML config (``--config``), the stains from its ``channels:``.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cellspot.merge", description=main.__doc__)
    ap.add_argument("segmentation", nargs="+", help="block stores of the segment stage")
    ap.add_argument("--image", required=True, help="preprocessed.ome.zarr")
    ap.add_argument("--out", required=True, help="batch results folder")
    ap.add_argument("--config", help="config YAML with a merge: section")
    args = ap.parse_args(argv)
    section, channels = {}, {}
    if args.config:
        import yaml

        cfg = yaml.safe_load(Path(args.config).read_text()) or {}
        section = cfg.get("merge") or {}
        channels = cfg.get("channels") or {}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(args.out)
    run_merge(args.segmentation, args.image,
              {n: in_batch(out, "labels", name=n) for n in LABEL_NAMES},
              {n: in_batch(out, "table", name=n) for n in TABLE_NAMES},
              MergeSettings.from_config(section, channels))

