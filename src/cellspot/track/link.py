"""Linking points over time: btrack (:func:`link_btrack`) and its tiled form for large spot sets.

Everything btrack-specific sits here; btrack is used through its public API
(``BayesianTracker.tracks``)."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from .settings import POSITION, load_tracker_config

log = logging.getLogger(__name__)

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
            rows = []
            for trk in tracker.tracks:
                tid, root, gen = int(trk.ID), int(trk.root), int(trk.generation)
                parent = 0 if int(trk.parent) == tid else int(trk.parent)
                for ref, dummy, tt, z, y, x in zip(trk.refs, trk.dummy, trk.t, trk.z, trk.y,
                                                   trk.x):
                    if dummy:  # a point btrack interpolated across a missed detection
                        rows.append((tid, tt, z, y, x, -1, parent, root, gen))
                    else:  # ref is the object's ID: its row in the input
                        rows.append((tid, t[ref], *coords[ref], ref, parent, root, gen))
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
    tree = cKDTree(starts[POSITION].to_numpy())
    pairs = tree.query_ball_point(ends[POSITION].to_numpy(), r=max_distance)
    cand = []
    end_pos, start_pos = ends[POSITION].to_numpy(), starts[POSITION].to_numpy()
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


