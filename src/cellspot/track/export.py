"""Tracks written out: relabelled label images, the CTC format, napari tracks, Parquet."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import ctc
from ..omezarr import atomic_output
from .settings import POSITION

# --------------------------------------------------------------------------- label images


def relabel_by_track(labels, tracks: pd.DataFrame, out=None, dtype=np.uint32):
    """Label volumes in which every cell carries its track id at every timepoint.

    Parameters
    ----------
    labels : (T, Z, Y, X) array-like (NumPy or Zarr)
        The per-timepoint labels the tracks' ``label`` column refers to.
    tracks : DataFrame
        Tracks table; objects on no track become 0.
    out : (T, Z, Y, X) array-like, optional
        Where to write (e.g. a Zarr array from ``create_labels``); one timepoint at a time.

    Returns
    -------
    The relabelled array (``out`` if given).
    """
    if out is None:
        out = np.zeros(labels.shape, dtype=dtype)
    real = tracks[tracks["label"] > 0]
    by_t = {t: g for t, g in real.groupby("t")}
    for t in range(labels.shape[0]):
        g = by_t.get(t)
        frame = np.asarray(labels[t])
        if g is None:
            out[t] = np.zeros(frame.shape, dtype=out.dtype)
        else:
            out[t] = ctc.relabel_frame(frame, (g["label"].to_numpy(), g["track_id"].to_numpy()),
                                       dtype=out.dtype)
    return out


def write_ctc(outdir: str | os.PathLike, labels, tracks: pd.DataFrame) -> pd.DataFrame:
    """Write tracks as a CTC result folder (``res_track.txt`` and ``mask###.tif``).

    Tracks with gaps are split into CTC tracks linked as parent and child, as the format
    requires. Returns the CTC track table (``label, begin, end, parent``).
    """
    lbep, ctc_label = ctc.tracks_to_lbep(tracks)
    keyed = tracks.assign(ctc=ctc_label)
    keyed = keyed[keyed["ctc"] > 0]
    by_t = {t: g for t, g in keyed.groupby("t")}

    def masks():
        for t in range(labels.shape[0]):
            g = by_t.get(t)
            frame = np.asarray(labels[t])
            if g is None:
                yield np.zeros(frame.shape, dtype=np.uint32)
            else:
                yield ctc.relabel_frame(frame, (g["label"].to_numpy(), g["ctc"].to_numpy()),
                                        dtype=np.uint32)

    ctc.write_ctc_result(outdir, masks(), lbep, n_frames=labels.shape[0])
    return lbep


def tracks_to_napari(tracks: pd.DataFrame) -> tuple[np.ndarray, dict[int, list[int]], dict]:
    """``(data, graph, properties)`` for ``napari.Viewer.add_tracks``.

    ``data`` is ``(N, 5)``: ``track_id, t, z, y, x`` (pixels); ``graph`` maps a daughter track
    to its mother, ``{track_id: [parent_id]}``.
    """
    tr = tracks.sort_values(["track_id", "t"], kind="stable")
    data = tr[["track_id", "t", *POSITION]].to_numpy(np.float64)
    par = tr.groupby("track_id")["parent"].first()
    graph = {int(k): [int(v)] for k, v in par.items() if v > 0}
    props = {c: tr[c].to_numpy() for c in ("generation", "root", "dummy") if c in tr}
    return data, graph, props


def write_napari_tracks(path: str | os.PathLike, tracks: pd.DataFrame,
                        graph_path: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write ``<path>`` (CSV ``track_id,t,z,y,x,...``) and the division graph ``graph_path``
    (default ``<stem>.graph.json``) atomically.

    Load in napari with::

        df = pandas.read_csv("cells.tracks.csv")
        graph = {int(k): v for k, v in json.load(open("cells.tracks.graph.json")).items()}
        viewer.add_tracks(df[["track_id", "t", "z", "y", "x"]].to_numpy(), graph=graph,
                          properties=df[["generation", "root"]], scale=(dt, dz, dy, dx))
    """
    path = Path(path)
    data, graph, _ = tracks_to_napari(tracks)
    tr = tracks.sort_values(["track_id", "t"], kind="stable")
    cols = ["track_id", "t", *POSITION] + [c for c in ("label", "parent", "root", "generation",
                                                    "dummy") if c in tr]
    graph_path = (Path(graph_path) if graph_path is not None
                  else path.with_name(path.name.removesuffix(".csv") + ".graph.json"))
    with atomic_output(path) as tmp:
        tr[cols].to_csv(tmp, index=False)
    with atomic_output(graph_path) as tmp:
        Path(tmp).write_text(json.dumps({str(k): v for k, v in graph.items()}))
    return path, graph_path




