"""Tracking cells (with divisions) and RNA spots over time with btrack.

Positions in the object tables are pixels ``(z, y, x)``; btrack works in micrometres (the
voxel size scales each axis), so that search radii and motion-model noise in the JSON
configurations under ``config/btrack/`` are physical and isotropic.

A *tracks table* has one row per object per timepoint on a track:

``track_id, t, z, y, x, label, parent, root, generation, dummy`` + the objects' features,

where ``label`` is the object's label at ``t`` in the input label image (0 for a point that
btrack interpolated across a missed detection, ``dummy=True``), ``parent`` is the track id of
the mother cell (0 for none), ``root`` the first ancestor and ``generation`` the number of
divisions since the root. A cell keeps its ``track_id`` across gaps; each daughter of a
division gets a new one. The object features on interpolated points are missing (NaN; 0 for
integer columns such as ``cell_id``).

Divisions: btrack's branching hypotheses only consider a track that its frame-to-frame step
ended, and they are strongly favoured for a METAPHASE mother and ANAPHASE daughters (states
that btrack expects from a classifier). :func:`division_states` supplies those states from
geometry (a cell replaced by two smaller cells on opposite sides of it).

Features: btrack compares feature vectors by cosine similarity (the ``VISUAL`` update, off in
the default configuration); standardised features need at least two columns to mean anything.

Spots: btrack's belief matrix is dense even in its APPROXIMATE mode, so its time grows with
the square of the objects per frame; :func:`link_tiled` cuts large spot sets into tiles.

Everything btrack-specific sits in :func:`link_btrack`; the rest works on DataFrames and
arrays.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from . import ctc
from .omezarr import atomic_output
from .resources import without_resources

log = logging.getLogger(__name__)

TRACK_COLUMNS = ["track_id", "t", "z", "y", "x", "label", "parent", "root", "generation",
                 "dummy"]
_POS = ["z", "y", "x"]


class TrackSettings(BaseModel):
    """Settings of the tracking stage (the ``track:`` section of the workflow config)."""

    model_config = ConfigDict(extra="forbid")

    cell_config: str = Field("config/btrack/cell_config.json",
                             description="btrack TrackerConfig JSON for cells")
    spot_config: str = Field("config/btrack/spot_config.json",
                             description="btrack TrackerConfig JSON for RNA spots")
    cell_features: list[str] = Field(
        default_factory=lambda: ["volume_um3"],
        description="columns of cells.parquet given to btrack as features; a name ending in "
                    "'*' selects every column with that prefix (e.g. 'mean_*')")
    spot_features: list[str] = Field(default_factory=lambda: ["intensity"])
    track_spots: bool = Field(True, description="also track RNA spots")
    spot_frame: Literal["cell", "sample"] = Field(
        "cell", description="track spots after removing their cell's motion ('cell') or as "
                            "they are ('sample')")
    spot_tile_size: int = Field(1500, ge=100, description="most spots per frame tracked at "
                                "once; more are split into stitched (y, x) tiles")
    detect_divisions: bool = Field(True, description="mark likely divisions for btrack")
    division_max_volume_ratio: float = Field(0.9, gt=0, description="a daughter is smaller "
                                             "than this fraction of its mother")

    @classmethod
    def from_config(cls, section: dict | None) -> "TrackSettings":
        """Settings from the workflow's ``track:`` section (resource keys are ignored)."""
        section = without_resources(section or {})
        return cls(**section)


# --------------------------------------------------------------------------- configuration


def load_tracker_config(config):
    """A validated btrack ``TrackerConfig`` from a JSON path, a dict or a ``TrackerConfig``.

    Besides btrack's own format, ``update_method`` may be given by name (``"EXACT"``,
    ``"APPROXIMATE"``), which keeps the JSON files readable.
    """
    from btrack import constants
    from btrack.config import TrackerConfig

    if isinstance(config, TrackerConfig):
        return config.model_copy(deep=True)
    source = "configuration"
    if not isinstance(config, dict):
        path = Path(config)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such btrack configuration file")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        source = str(path)
    config = dict(config)
    if isinstance(config.get("update_method"), str):
        try:
            config["update_method"] = constants.BayesianUpdates[config["update_method"].upper()]
        except KeyError as exc:
            raise ValueError(f"{source}: update_method must be one of "
                             f"{[m.name for m in constants.BayesianUpdates]}") from exc
    if "TrackerConfig" in config:
        raise ValueError(f"{source}: legacy btrack format; use the TrackerConfig fields")
    try:
        cfg = TrackerConfig(**config)
    except Exception as exc:  # pydantic validation error: say which file
        raise ValueError(f"{source}: not a valid btrack configuration ({exc})") from exc
    if cfg.motion_model is None:
        raise ValueError(f"{source}: a btrack configuration needs a motion_model")
    return cfg


def select_features(df: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """Expand ``prefix*`` patterns to column names; raise naming any missing column."""
    out = []
    for n in names:
        if n.endswith("*"):
            out += [c for c in df.columns if c.startswith(n[:-1])]
        elif n in df.columns:
            out.append(n)
        else:
            raise KeyError(f"feature column {n!r} not in the object table "
                           f"(columns: {list(df.columns)})")
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- btrack glue


def link_btrack(coords: np.ndarray, t: np.ndarray, config, features: np.ndarray | None = None,
                volume: Sequence[float] | None = None, optimise: bool | None = None,
                states: np.ndarray | None = None) -> pd.DataFrame:
    """Link points over time with btrack.

    Parameters
    ----------
    coords : (N, 3) array
        ``(z, y, x)`` positions in the units of the configuration (micrometres).
    t : (N,) array of int
        Timepoint of each point.
    config : TrackerConfig, dict or path
        btrack configuration (motion model, hypothesis model, update method...).
    features : (N, F) array, optional
        Object features, used by btrack's VISUAL update (cosine similarity) when the
        configuration asks for it. Standardise them first.
    volume : (z, y, x) extent, optional
        Size of the imaged volume in the same units, for btrack's border hypotheses.
    optimise : bool, optional
        Run the global optimisation (gap closing, divisions); defaults to the configuration's
        ``enable_optimisation``.
    states : (N,) array of int, optional
        btrack ``States`` of the objects (see :func:`division_states`).

    Returns
    -------
    DataFrame
        One row per track point: ``track_id, t, z, y, x, obj`` (row of the input, -1 for a
        point btrack interpolated), ``parent, root, generation``. Points that the optimiser
        judged false positives are left out.
    """
    from btrack import BayesianTracker
    from btrack.btypes import PyTrackObject

    cfg = load_tracker_config(config)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(t, dtype=np.int64)
    empty = pd.DataFrame({"track_id": np.zeros(0, np.int64), "t": np.zeros(0, np.int64),
                          "z": [], "y": [], "x": [], "obj": np.zeros(0, np.int64),
                          "parent": np.zeros(0, np.int64), "root": np.zeros(0, np.int64),
                          "generation": np.zeros(0, np.int64)})
    if len(coords) == 0:
        return empty
    if t.min() < 0:
        raise ValueError("timepoints must be >= 0")
    if len(np.unique(t)) == 1:
        # btrack refuses a single frame (NO_USEABLE_FRAMES); each object is its own track.
        n = len(coords)
        ids = np.arange(1, n + 1)
        return pd.DataFrame({"track_id": ids, "t": t, "z": coords[:, 0], "y": coords[:, 1],
                             "x": coords[:, 2], "obj": np.arange(n), "parent": 0,
                             "root": ids, "generation": 0})
    names = [f"f{i}" for i in range(features.shape[1])] if features is not None else []
    cfg.features = names
    if volume is not None:
        # btrack's volume is ((x0, x1), (y0, y1), (z0, z1)); pad so that objects on the edge
        # are inside.
        vz, vy, vx = (float(v) for v in volume)
        cfg.volume = ((-1.0, vx + 1.0), (-1.0, vy + 1.0), (-1.0, vz + 1.0))
    do_opt = cfg.enable_optimisation if optimise is None else optimise

    objects = []
    for i in range(len(coords)):
        o = PyTrackObject()
        o.ID, o.t = i, int(t[i])
        o.z, o.y, o.x = coords[i]
        if states is not None:
            o.label = int(states[i])
        if names:
            o.properties = dict(zip(names, features[i]))
        objects.append(o)

    # btrack logs every step at INFO level through its own handler; keep its warnings only.
    btrack_log = logging.getLogger("btrack")
    level = btrack_log.level
    btrack_log.setLevel(logging.WARNING)
    try:
        with BayesianTracker(verbose=False) as tracker:
            tracker.configure(cfg)
            tracker.append(objects)
            tracker.track(step_size=100)
            if do_opt and cfg.hypothesis_model is not None:
                tracker.optimise()
            lib, engine = tracker._lib, tracker._engine
            rows = []
            for i in range(tracker.n_tracks):
                n = lib.track_length(engine, i)
                refs = np.zeros((n,), dtype=np.int32)
                lib.get_refs(engine, refs, i)
                tid = int(lib.get_ID(engine, i))
                parent = int(lib.get_parent(engine, i))
                root = int(lib.get_root(engine, i))
                gen = int(lib.get_generation(engine, i))
                parent = 0 if parent == tid else parent
                for r in refs:
                    if r >= 0:
                        rows.append((tid, t[r], *coords[r], r, parent, root, gen))
                    else:
                        d = lib.get_dummy(engine, int(r))
                        rows.append((tid, d.t, d.z, d.y, d.x, -1, parent, root, gen))
    finally:
        btrack_log.setLevel(level)
    if not rows:
        return empty
    out = pd.DataFrame(rows, columns=["track_id", "t", "z", "y", "x", "obj", "parent", "root",
                                      "generation"])
    out = out.astype({c: np.int64 for c in ("track_id", "t", "obj", "parent", "root",
                                            "generation")})
    # Trailing dummies (a track kept alive past its last detection) carry no information.
    last_real = out[out.obj >= 0].groupby("track_id")["t"].max()
    out = out[out["t"] <= out["track_id"].map(last_real).fillna(-1).to_numpy()]
    return out.sort_values(["track_id", "t"], kind="stable").reset_index(drop=True)


def link_tiled(coords: np.ndarray, t: np.ndarray, config, features: np.ndarray | None = None,
               volume: Sequence[float] | None = None, tile_size: int = 1500) -> pd.DataFrame:
    """:func:`link_btrack` on ``(y, x)`` tiles of at most about ``tile_size`` points per frame.

    Tiles are tracked one after the other; then a track that ends next to a tile border is
    joined to a track that starts in a neighbouring tile within the configuration's
    ``max_search_radius`` and ``motion_model.max_lost`` frames (closest pairs first). Suited to
    objects without divisions (spots).
    """
    cfg = load_tracker_config(config)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(t, dtype=np.int64)
    per_frame = np.bincount(t).max() if len(t) else 0
    n_tiles = int(np.ceil(per_frame / max(tile_size, 1)))
    if n_tiles <= 1:
        return link_btrack(coords, t, cfg, features, volume)
    lo, hi = coords[:, 1:].min(axis=0), coords[:, 1:].max(axis=0) + 1e-9
    span = hi - lo
    ny = max(1, int(round(np.sqrt(n_tiles * span[0] / max(span[1], 1e-9)))))
    nx = int(np.ceil(n_tiles / ny))
    # Quantile edges give tiles with equal numbers of points even if density varies.
    ey = np.quantile(coords[:, 1], np.linspace(0, 1, ny + 1)[1:-1])
    ex = np.quantile(coords[:, 2], np.linspace(0, 1, nx + 1)[1:-1])
    tile = np.searchsorted(ey, coords[:, 1]) * nx + np.searchsorted(ex, coords[:, 2])
    parts, offset = [], 0
    for k in np.unique(tile):
        idx = np.flatnonzero(tile == k)
        p = link_btrack(coords[idx], t[idx], cfg,
                        None if features is None else features[idx], volume)
        p["obj"] = np.where(p["obj"] >= 0, idx[np.maximum(p["obj"].to_numpy(), 0)], -1)
        for c in ("track_id", "parent", "root"):
            p[c] = np.where(p[c] > 0, p[c] + offset, 0)
        offset = int(p["track_id"].max()) if len(p) else offset
        p["tile"] = k
        parts.append(p)
    points = pd.concat(parts, ignore_index=True)
    points = _stitch(points, cfg.max_search_radius, cfg.motion_model.max_lost, int(t.max()))
    log.info("linked %d points in %d tiles of about %d per frame", len(coords), len(parts),
             int(np.ceil(per_frame / len(parts))))
    return points.drop(columns="tile")


def _stitch(points: pd.DataFrame, max_distance: float, max_gap: int, t_last: int
            ) -> pd.DataFrame:
    """Join tracks that end in one tile to tracks that start in another (see link_tiled)."""
    from scipy.spatial import cKDTree

    real = points[points["obj"] >= 0]
    g = real.sort_values("t").groupby("track_id")
    first, last = g.first(), g.last()
    ends = last[last["t"] < t_last]
    starts = first[first["t"] > 0]
    if len(ends) == 0 or len(starts) == 0:
        return points
    tree = cKDTree(starts[_POS].to_numpy())
    pairs = tree.query_ball_point(ends[_POS].to_numpy(), r=max_distance)
    cand = []
    end_pos, start_pos = ends[_POS].to_numpy(), starts[_POS].to_numpy()
    for i, js in enumerate(pairs):
        for j in js:
            gap = starts["t"].iloc[j] - ends["t"].iloc[i]
            if 1 <= gap <= max_gap + 1 and starts["tile"].iloc[j] != ends["tile"].iloc[i]:
                cand.append((np.linalg.norm(end_pos[i] - start_pos[j]), i, j))
    used_e, used_s, rename = set(), set(), {}
    for _, i, j in sorted(cand):
        if i in used_e or j in used_s:
            continue
        used_e.add(i)
        used_s.add(j)
        rename[int(starts.index[j])] = int(ends.index[i])
    if not rename:
        return points

    def resolve(k):  # follow chains a <- b <- c
        seen = set()
        while k in rename and k not in seen:
            seen.add(k)
            k = rename[k]
        return k

    mapping = {k: resolve(k) for k in rename}
    points = points.copy()
    points["track_id"] = points["track_id"].map(lambda k: mapping.get(k, k))
    points["root"] = points["track_id"]
    return points.sort_values(["track_id", "t"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- tables


def _standardise(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    sd = a.std(axis=0)
    return np.nan_to_num((a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0))


def _check_objects(objects: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [c for c in ("t", "label", *_POS) if c not in objects.columns]
    if missing:
        raise KeyError(f"{what} table lacks columns {missing} (has {list(objects.columns)})")
    if objects.duplicated(["t", "label"]).any():
        raise ValueError(f"{what} table has repeated (t, label) pairs")
    return objects.reset_index(drop=True)


def _points_to_tracks(points: pd.DataFrame, objects: pd.DataFrame,
                      voxel_size: Sequence[float], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Tracks table (pixels) from linked points (micrometres) and the object table."""
    vs = np.asarray(voxel_size, dtype=np.float64)
    out = points[["track_id", "t", "parent", "root", "generation"]].copy()
    out[_POS] = points[_POS].to_numpy() / vs
    obj = points["obj"].to_numpy()
    real = obj >= 0
    out["label"] = 0
    out.loc[real, "label"] = objects["label"].to_numpy()[obj[real]]
    out["dummy"] = ~real
    take = np.where(real, obj, 0)
    for c in objects.columns:
        if c in ("t", "label", *_POS) or c in TRACK_COLUMNS:
            continue
        vals = objects[c].to_numpy()
        if not len(out):
            out[c] = vals[:0]
        elif vals.dtype.kind in "iub":  # keep integer ids (cell_id...) integer: 0 on gaps
            out[c] = np.where(real, vals[take], np.zeros((), dtype=vals.dtype))
        else:
            out[c] = pd.Series(vals[take]).where(real).to_numpy()
    for c in extra:
        out[c] = points[c].to_numpy()
    out["label"] = out["label"].astype(np.int64)
    return out.reset_index(drop=True)


def empty_tracks(objects: pd.DataFrame | None = None) -> pd.DataFrame:
    """An empty tracks table with the standard columns (and the objects' extra columns)."""
    cols = list(TRACK_COLUMNS)
    if objects is not None:
        cols += [c for c in objects.columns if c not in cols]
    return pd.DataFrame({c: pd.Series(dtype=np.int64 if c in ("track_id", "t", "label",
                                                               "parent", "root", "generation")
                                      else (bool if c == "dummy" else np.float64))
                         for c in cols})


def objects_from_labels(labels, voxel_size: Sequence[float] = (1.0, 1.0, 1.0)) -> pd.DataFrame:
    """Object table ``t, label, z, y, x, volume_vox, volume_um3`` of a ``(T, Z, Y, X)`` label
    movie (centroids in pixels); used for ground-truth detections and as a fallback."""
    from skimage.measure import regionprops_table

    frames = []
    for t in range(labels.shape[0]):
        frame = np.asarray(labels[t])
        p = regionprops_table(frame, properties=("label", "centroid", "area"))
        df = pd.DataFrame({"t": np.full(len(p["label"]), t, dtype=np.int64),
                           "label": p["label"].astype(np.int64),
                           "z": p["centroid-0"], "y": p["centroid-1"], "x": p["centroid-2"],
                           "volume_vox": p["area"].astype(np.int64)})
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["t", "label", "z", "y", "x", "volume_vox"])
    out["volume_um3"] = out["volume_vox"] * float(np.prod(voxel_size))
    return out


def division_states(objects: pd.DataFrame, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                    max_distance: float | None = None, volume: str | None = "volume_um3",
                    max_volume_ratio: float = 0.9, max_cosine: float = 0.3,
                    midpoint_tolerance: float = 0.5) -> np.ndarray:
    """Mitotic states of cells guessed from geometry, for btrack's division model.

    btrack forbids linking a METAPHASE track to an ANAPHASE object and strongly favours a
    division hypothesis from METAPHASE to two ANAPHASE children; it expects these states
    from a classifier. Without one, a division shows as a cell ``o`` at ``t-1`` replaced at
    ``t`` by two cells ``a, b`` on opposite sides of it: the midpoint of ``a`` and ``b`` lies
    near ``o`` (within ``midpoint_tolerance`` times ``max_distance``), both lie within
    ``max_distance`` of ``o``, the cosine of the angle ``a - o, b - o`` is below
    ``max_cosine``, ``a`` and ``b`` do not both have their own close predecessor at ``t-1``
    and, if ``volume`` is a column, each daughter is smaller than ``max_volume_ratio`` times
    ``o`` while together they hold 0.5 to 2 times its volume.
    Candidate triplets are taken best midpoint first, each object at most once; then ``o`` is
    METAPHASE and ``a``, ``b`` ANAPHASE.

    Parameters
    ----------
    max_distance : float, optional
        Micrometres; by default 1.5 times the equivalent-sphere radius of ``o`` (or 5 µm
        without a volume column).

    Returns
    -------
    ndarray of int
        btrack ``States`` values (0 interphase, 2 metaphase, 3 anaphase), one per row.
    """
    from scipy.spatial import cKDTree

    states = np.zeros(len(objects), dtype=np.int64)
    if len(objects) == 0:
        return states
    vs = np.asarray(voxel_size, dtype=np.float64)
    pos = objects[_POS].to_numpy(np.float64) * vs
    t = objects["t"].to_numpy()
    vol = (objects[volume].to_numpy(np.float64) if volume and volume in objects.columns
           else None)
    if max_distance is not None:
        reach = np.full(len(objects), float(max_distance))
    elif vol is not None:
        reach = 1.5 * np.cbrt(3.0 * np.maximum(vol, 0) / (4.0 * np.pi))
    else:
        reach = np.full(len(objects), 5.0)
    frames = {k: np.flatnonzero(t == k) for k in np.unique(t)}
    for k in sorted(frames):
        if k - 1 not in frames or len(frames[k]) < 2:
            continue
        prev, cur = frames[k - 1], frames[k]
        prev_tree = cKDTree(pos[prev])
        pairs = cKDTree(pos[cur]).query_pairs(r=2.0 * float(reach[prev].max()),
                                              output_type="ndarray")
        cand = []
        for ia, ib in pairs:
            a, b = cur[ia], cur[ib]
            mid = 0.5 * (pos[a] + pos[b])
            d_mid, io = prev_tree.query(mid)
            o = prev[io]
            if d_mid > midpoint_tolerance * reach[o]:
                continue
            va, vb = pos[a] - pos[o], pos[b] - pos[o]
            na, nb = np.linalg.norm(va), np.linalg.norm(vb)
            if max(na, nb) > reach[o] or na == 0 or nb == 0:
                continue
            if float(va @ vb) / (na * nb) > max_cosine:
                continue
            # two cells that were already there (each with its own close predecessor)
            (da, pa), (db, pb) = prev_tree.query(pos[a]), prev_tree.query(pos[b])
            if pa != pb and max(da, db) < midpoint_tolerance * reach[o]:
                continue
            if vol is not None and (max(vol[a], vol[b]) > max_volume_ratio * vol[o]
                                    or not 0.5 <= (vol[a] + vol[b]) / vol[o] <= 2.0):
                continue
            cand.append((d_mid, o, a, b))
        used: set[int] = set()
        for _, o, a, b in sorted(cand):
            if {o, a, b} & used:
                continue
            used |= {o, a, b}
            states[o], states[a], states[b] = 2, 3, 3
    return states


def track_cells(cells: pd.DataFrame, config, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                features: Sequence[str] = ("volume_um3",),
                shape: Sequence[int] | None = None, divisions: bool = True,
                division_options: dict | None = None) -> pd.DataFrame:
    """Track cells, with divisions, from a per-timepoint object table.

    Parameters
    ----------
    cells : DataFrame
        One row per cell per timepoint: ``t, label, z, y, x`` (pixels) and features.
    config : TrackerConfig, dict or path
        btrack configuration for cells (``config/btrack/cell_config.json``).
    voxel_size : (z, y, x) micrometres
    features : sequence of str
        Feature columns (``prefix*`` allowed), standardised and handed to btrack; absent
        columns raise ``KeyError``.
    shape : (Z, Y, X), optional
        Image size in pixels, for btrack's border hypotheses (defaults to the objects' extent).
    divisions : bool
        Mark likely divisions for btrack (:func:`division_states`); without it btrack's
        branching hypotheses only see tracks that its frame-to-frame step already ended.
    division_options : dict, optional
        Keyword arguments of :func:`division_states`.

    Returns
    -------
    DataFrame
        The tracks table (see the module docstring).
    """
    cells = _check_objects(cells, "cell")
    if len(cells) == 0:
        log.warning("no cells to track: writing empty tracks")
        return empty_tracks(cells)
    feats = select_features(cells, features)
    vs = np.asarray(voxel_size, dtype=np.float64)
    coords = cells[_POS].to_numpy(np.float64) * vs
    extent = (np.asarray(shape) * vs) if shape is not None else coords.max(axis=0) + 1.0
    fmat = _standardise(cells[feats].to_numpy()) if feats else None
    n_t = cells["t"].nunique()
    if n_t == 1:
        log.warning("cells exist at a single timepoint only: every track has length 1")
    states = (division_states(cells, vs, **(division_options or {})) if divisions else None)
    if states is not None:
        log.info("cells: %d division candidates", int((states == 2).sum()))
    points = link_btrack(coords, cells["t"].to_numpy(), config, fmat, extent, states=states)
    out = _points_to_tracks(points, cells, vs)
    log.info("cells: %d objects in %d timepoints -> %d tracks, %d divisions, %d gap points",
             len(cells), n_t, out["track_id"].nunique(),
             int((out.groupby("track_id")["parent"].first() > 0).sum() // 2),
             int(out["dummy"].sum()))
    return out


def lineage_offsets(cell_tracks: pd.DataFrame) -> pd.DataFrame:
    """Displacement of every cell since its lineage began, in pixels, divisions excluded.

    Within a track the offset is the cell's displacement since the track's first point; a
    daughter starts from its mother's last offset, because a dividing cell splits in place:
    the jump from the mother's centroid to a daughter's is not motion of what the cell holds.
    Subtracting the offset from a spot's position puts the spot in a frame that moves with
    its cell (and with the daughter it ends up in).

    Returns
    -------
    DataFrame
        Columns ``t, label, dz, dy, dx`` for every non-interpolated track point.
    """
    cols = ["t", "label", "dz", "dy", "dx"]
    if len(cell_tracks) == 0:
        return pd.DataFrame(columns=cols)
    tr = cell_tracks.sort_values(["track_id", "t"], kind="stable")
    first = tr.groupby("track_id")[_POS].first()
    last = tr.groupby("track_id")[_POS].last()
    parent = tr.groupby("track_id")["parent"].first()
    # offset of each track at its start: its mother's offset at the mother's end (recursive)
    start_off: dict[int, np.ndarray] = {}

    def start_of(k, depth=0):
        if k in start_off:
            return start_off[k]
        p = int(parent.get(k, 0))
        if p and p in first.index and depth < 10_000:
            off = start_of(p, depth + 1) + last.loc[p].to_numpy() - first.loc[p].to_numpy()
        else:
            off = np.zeros(3)
        start_off[k] = off
        return off

    base = np.stack([start_of(int(k)) for k in tr["track_id"]]) if len(tr) else np.zeros((0, 3))
    d = base + tr[_POS].to_numpy() - first.reindex(tr["track_id"]).to_numpy()
    real = ~tr["dummy"].astype(bool).to_numpy()
    return pd.DataFrame({"t": tr["t"].to_numpy()[real], "label": tr["label"].to_numpy()[real],
                         "dz": d[real, 0], "dy": d[real, 1], "dx": d[real, 2]})


def track_spots(spots: pd.DataFrame, config, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                cell_tracks: pd.DataFrame | None = None, features: Sequence[str] = (),
                shape: Sequence[int] | None = None, tile_size: int = 1500) -> pd.DataFrame:
    """Track RNA spots (diffusive motion, births and deaths).

    Parameters
    ----------
    spots : DataFrame
        ``t, label, z, y, x`` (pixels), optionally ``cell_id`` (label of the cell holding the
        spot at ``t``, 0 for none) and features.
    config : TrackerConfig, dict or path
        btrack configuration for spots (``config/btrack/spot_config.json``).
    cell_tracks : DataFrame, optional
        Tracks table of the cells. When given, spots are linked in the frame of their cell's
        motion (see :func:`lineage_offsets`); spots outside any tracked cell are linked as
        they are.
    tile_size : int
        Most spots per frame btrack links at once. btrack's belief matrix is dense (objects x
        tracks, even in its APPROXIMATE mode), so its time grows with the square of the spots
        per frame; larger sets are cut into tiles in ``(y, x)`` that are tracked separately
        and stitched where tracks cross tile borders (:func:`link_tiled`).

    Returns
    -------
    DataFrame
        Tracks table of the spots (``parent`` is 0: spots do not divide), with a column
        ``cell_track_id`` (the track of the cell holding the spot, 0 for none) when
        ``cell_tracks`` is given.
    """
    spots = _check_objects(spots, "spot")
    if len(spots) == 0:
        log.warning("no spots to track: writing empty tracks")
        return empty_tracks(spots)
    vs = np.asarray(voxel_size, dtype=np.float64)
    pos = spots[_POS].to_numpy(np.float64)
    offset = np.zeros_like(pos)
    extra = []
    cell_track = np.zeros(len(spots), dtype=np.int64)
    if cell_tracks is not None and "cell_id" in spots.columns and len(cell_tracks):
        offs = lineage_offsets(cell_tracks)
        key = pd.MultiIndex.from_arrays([spots["t"].to_numpy(), spots["cell_id"].to_numpy()])
        table = offs.set_index(["t", "label"])
        found = table.reindex(key)
        offset = np.nan_to_num(found[["dz", "dy", "dx"]].to_numpy(np.float64))
        real = cell_tracks[~cell_tracks["dummy"].astype(bool)]
        ct = real.set_index(["t", "label"])["track_id"].reindex(key)
        cell_track = ct.fillna(0).to_numpy(np.int64)
        log.info("spots: %.0f%% linked in their cell's moving frame",
                 100 * np.mean(~found["dz"].isna().to_numpy()))
    elif cell_tracks is not None and "cell_id" not in spots.columns:
        log.warning("spots: no cell_id column; linking positions as they are")
    coords = (pos - offset) * vs
    extent = (np.asarray(shape) * vs) if shape is not None else None
    feats = select_features(spots, features)
    fmat = _standardise(spots[feats].to_numpy()) if feats else None
    points = link_tiled(coords, spots["t"].to_numpy(), config, fmat, extent,
                        tile_size=tile_size)
    # Back to the sample frame: real points take their own offset, interpolated ones the
    # offset of the track's previous real point.
    obj = points["obj"].to_numpy()
    off = np.full((len(points), 3), np.nan)
    off[obj >= 0] = offset[obj[obj >= 0]] * vs
    off = pd.DataFrame(off).groupby(points["track_id"].to_numpy()).ffill().to_numpy()
    points[_POS] = points[_POS].to_numpy() + np.nan_to_num(off)
    if cell_tracks is not None:
        points["cell_track_id"] = np.where(obj >= 0, cell_track[np.maximum(obj, 0)], 0)
        extra = ["cell_track_id"]
    out = _points_to_tracks(points, spots, vs, extra)
    log.info("spots: %d objects in %d timepoints -> %d tracks", len(spots),
             spots["t"].nunique(), out["track_id"].nunique())
    return out


def track_laptrack(objects: pd.DataFrame, voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                   max_distance: float = 5.0, gap_frames: int = 2,
                   divisions: bool = True) -> pd.DataFrame:
    """Baseline: frame-to-frame linear-assignment linking (laptrack), same output as btrack.

    ``max_distance`` (micrometres) bounds links, gap closing and division links.
    """
    from laptrack import LapTrack

    objects = _check_objects(objects, "object")
    if len(objects) == 0:
        return empty_tracks(objects)
    vs = np.asarray(voxel_size, dtype=np.float64)
    df = pd.DataFrame(objects[_POS].to_numpy(np.float64) * vs, columns=_POS)
    df["frame"] = objects["t"].to_numpy()
    lt = LapTrack(cutoff=max_distance ** 2, gap_closing_cutoff=max_distance ** 2,
                  gap_closing_max_frame_count=gap_frames,
                  splitting_cutoff=max_distance ** 2 if divisions else False)
    track_df, split_df, _ = lt.predict_dataframe(df, coordinate_cols=_POS, frame_col="frame",
                                                 only_coordinate_cols=False)
    idx = track_df["index"].to_numpy() if "index" in track_df else track_df.index.to_numpy()
    tid = track_df["track_id"].to_numpy(np.int64) + 1
    parent = dict(zip(split_df.get("child_track_id", pd.Series(dtype=int)) + 1,
                      split_df.get("parent_track_id", pd.Series(dtype=int)) + 1))
    points = pd.DataFrame({"track_id": tid, "t": df["frame"].to_numpy()[idx], "obj": idx})
    points[_POS] = df[_POS].to_numpy()[idx]
    points["parent"] = [parent.get(int(k), 0) for k in tid]
    root, gen = {}, {}
    for k in np.unique(tid):
        r, g, seen = int(k), 0, set()
        while parent.get(r, 0) and r not in seen:
            seen.add(r)
            r, g = parent[r], g + 1
        root[int(k)], gen[int(k)] = r, g
    points["root"] = [root[int(k)] for k in tid]
    points["generation"] = [gen[int(k)] for k in tid]
    points = points.sort_values(["track_id", "t"]).reset_index(drop=True)
    return _points_to_tracks(points, objects, vs)


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
    data = tr[["track_id", "t", *_POS]].to_numpy(np.float64)
    par = tr.groupby("track_id")["parent"].first()
    graph = {int(k): [int(v)] for k, v in par.items() if v > 0}
    props = {c: tr[c].to_numpy() for c in ("generation", "root", "dummy") if c in tr}
    return data, graph, props


def write_napari_tracks(path: str | os.PathLike, tracks: pd.DataFrame) -> tuple[Path, Path]:
    """Write ``<path>`` (CSV ``track_id,t,z,y,x,...``) and ``<stem>.graph.json`` atomically.

    Load in napari with::

        df = pandas.read_csv("cells.tracks.csv")
        graph = {int(k): v for k, v in json.load(open("cells.tracks.graph.json")).items()}
        viewer.add_tracks(df[["track_id", "t", "z", "y", "x"]].to_numpy(), graph=graph,
                          properties=df[["generation", "root"]], scale=(dt, dz, dy, dx))
    """
    path = Path(path)
    data, graph, _ = tracks_to_napari(tracks)
    tr = tracks.sort_values(["track_id", "t"], kind="stable")
    cols = ["track_id", "t", *_POS] + [c for c in ("label", "parent", "root", "generation",
                                                    "dummy") if c in tr]
    graph_path = path.with_name(path.name.removesuffix(".csv") + ".graph.json")
    with atomic_output(path) as tmp:
        tr[cols].to_csv(tmp, index=False)
    with atomic_output(graph_path) as tmp:
        Path(tmp).write_text(json.dumps({str(k): v for k, v in graph.items()}))
    return path, graph_path


def write_table(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write a Parquet table atomically."""
    with atomic_output(path) as tmp:
        df.to_parquet(tmp, index=False)


# --------------------------------------------------------------------------- one batch


def describe_timepoints(objects: pd.DataFrame, n_frames: int, what: str) -> list[str]:
    """Notes on degenerate input (single timepoint, empty timepoints, everything vanishing)."""
    notes = []
    counts = np.bincount(objects["t"].to_numpy(np.int64), minlength=n_frames)[:n_frames] \
        if len(objects) else np.zeros(n_frames, dtype=np.int64)
    if n_frames == 1:
        notes.append(f"{what}: the movie has a single timepoint; tracks have length 1")
    empty = np.flatnonzero(counts == 0)
    if len(empty) == n_frames:
        notes.append(f"{what}: no objects at any timepoint; outputs are empty")
    elif len(empty):
        notes.append(f"{what}: no objects at timepoints {empty.tolist()}")
        last = np.flatnonzero(counts > 0).max()
        if last < n_frames - 1:
            notes.append(f"{what}: all objects vanish after timepoint {int(last)}")
    return notes


def track_batch(cells_table: str | os.PathLike, cell_labels: str | os.PathLike,
                outputs: dict[str, str | os.PathLike], settings: TrackSettings | None = None,
                spots_table: str | os.PathLike | None = None) -> dict:
    """Track one batch and write every output atomically.

    Parameters
    ----------
    cells_table, spots_table : path
        ``tables/cells.parquet`` and ``tables/spots.parquet`` of the merge stage.
    cell_labels : path
        ``labels/cells.zarr`` (TZYX NGFF label image) the cell table's labels refer to.
    outputs : dict
        Paths for ``cell_tracks`` (Parquet), ``spot_tracks`` (Parquet), ``tracked_labels``
        (NGFF labels), ``ctc`` (folder), ``napari`` (CSV; its ``.graph.json`` is written
        next to it).

    Returns
    -------
    dict
        Counts and the notes logged about degenerate input.
    """
    from .omezarr import create_labels, open_array, read_meta

    settings = settings or TrackSettings()
    labels = open_array(cell_labels)
    meta = read_meta(cell_labels)
    if labels.ndim != 4:
        raise ValueError(f"{cell_labels}: expected TZYX labels, got shape {labels.shape}")
    n_t = labels.shape[0]
    cells = pd.read_parquet(cells_table)
    if len(cells) and (cells["t"].max() >= n_t or cells["t"].min() < 0):
        raise ValueError(f"{cells_table}: timepoints {cells['t'].min()}..{cells['t'].max()} "
                         f"outside the {n_t} timepoints of {cell_labels}")
    notes = describe_timepoints(cells, n_t, "cells")
    for n in notes:
        log.warning(n)
    vs = meta.voxel_size
    feats = [f for f in settings.cell_features if f.endswith("*") or f in cells.columns]
    if len(feats) < len(settings.cell_features):
        log.warning("cell features missing from %s: %s", cells_table,
                    sorted(set(settings.cell_features) - set(feats)))
    cell_tracks = track_cells(
        cells, settings.cell_config, vs, feats, shape=labels.shape[1:],
        divisions=settings.detect_divisions,
        division_options={"max_volume_ratio": settings.division_max_volume_ratio})

    spot_tracks = None
    if settings.track_spots and spots_table is not None:
        spots = pd.read_parquet(spots_table)
        snotes = describe_timepoints(spots, n_t, "spots")
        for n in snotes:
            log.warning(n)
        notes += snotes
        sfeats = [f for f in settings.spot_features if f.endswith("*") or f in spots.columns]
        spot_tracks = track_spots(
            spots, settings.spot_config, vs,
            cell_tracks if settings.spot_frame == "cell" else None, sfeats,
            shape=labels.shape[1:], tile_size=settings.spot_tile_size)

    write_table(outputs["cell_tracks"], cell_tracks)
    if "spot_tracks" in outputs:
        write_table(outputs["spot_tracks"],
                    spot_tracks if spot_tracks is not None else empty_tracks())
    if "tracked_labels" in outputs:
        with atomic_output(outputs["tracked_labels"]) as tmp:
            arr = create_labels(tmp, labels.shape, meta, "cells_tracked", dtype="uint32",
                                chunks=labels.chunks)
            relabel_by_track(labels, cell_tracks, out=arr)
    lbep = write_ctc(outputs["ctc"], labels, cell_tracks) if "ctc" in outputs else None
    if "napari" in outputs:
        write_napari_tracks(outputs["napari"], cell_tracks)
    summary = {
        "timepoints": n_t,
        "cells": len(cells),
        "cell_tracks": int(cell_tracks["track_id"].nunique()),
        "divisions": int((cell_tracks.groupby("track_id")["parent"].first() > 0).sum() // 2)
        if len(cell_tracks) else 0,
        "ctc_tracks": None if lbep is None else len(lbep),
        "spot_tracks": None if spot_tracks is None else int(spot_tracks["track_id"].nunique()),
        "notes": notes,
    }
    log.info("tracking summary: %s", summary)
    return summary
