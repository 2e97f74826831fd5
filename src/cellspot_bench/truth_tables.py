"""Stage input tables built from a simulated movie's ground truth, as merge and track would.

This lets the report's statistics be checked against known answers independently of the
segmentation and tracking stages: cells and nuclei are measured on the truth label images
(centroids, volumes), RNA spots get their cell and compartment by looking up the labels at
their (optionally jittered) positions, and tracks are the truth identities and lineage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from cellspot import omezarr
from cellspot.distance import signed_distance
from cellspot.layout import in_batch
from cellspot.simulate import value_at

BBOX = [f"bbox_{a}{e}" for e in "01" for a in "zyx"]  # half-open, as merge's tables


def _objects(labels: np.ndarray, voxel_size) -> pd.DataFrame:
    rows = []
    voxel_um3 = float(np.prod(voxel_size))
    for t in range(labels.shape[0]):
        ids = np.unique(labels[t])
        ids = ids[ids > 0]
        if len(ids) == 0:
            continue
        com = np.asarray(ndi.center_of_mass(np.ones(labels[t].shape), labels[t], ids))
        vol = ndi.sum_labels(np.ones(labels[t].shape), labels[t], ids)
        boxes = ndi.find_objects(labels[t])
        for i, c, v in zip(ids, com.reshape(-1, 3), vol):
            box = boxes[int(i) - 1]
            rows.append((t, int(i), *c, int(v), v * voxel_um3, *(s.start for s in box),
                         *(s.stop for s in box)))
    return pd.DataFrame(rows, columns=["t", "label", "z", "y", "x", "volume_vox", "volume_um3",
                                       *BBOX])


def tables_from_truth(movie, position_noise_px: float = 0.0,
                      seed: int = 0) -> dict[str, pd.DataFrame]:
    """The report's input tables (cells, nuclei, spots, cell_tracks, spot_tracks) from truth.

    Parameters
    ----------
    movie : cellspot.simulate.SimulatedMovie
    position_noise_px : float
        Gaussian localisation error added to every RNA position (per axis, pixels), so that
        spots near a boundary can be assigned to the wrong compartment or cell, as a detector
        would.
    seed : int
    """
    vs = tuple(movie.meta.voxel_size)
    cells = _objects(movie.cells, vs)
    cells["n_nuclei"] = 0
    nuclei = _objects(movie.nuclei, vs)
    nuclei["cell_id"] = 0
    for t in range(movie.cells.shape[0]):
        sel = nuclei["t"] == t
        nuclei.loc[sel, "cell_id"] = value_at(movie.cells[t], nuclei.loc[sel, ["z", "y", "x"]]
                                             .to_numpy()).astype(int)
    counts = nuclei[nuclei["cell_id"] > 0].groupby(["t", "cell_id"]).size()
    cells["n_nuclei"] = [int(counts.get((t, c), 0)) for t, c in zip(cells["t"], cells["label"])]

    rng = np.random.default_rng(seed)
    sp = movie.spots.sort_values(["t", "spot_id"]).reset_index(drop=True)
    pos = sp[["z", "y", "x"]].to_numpy(float)
    pos = pos + rng.normal(0, position_noise_px, pos.shape) if position_noise_px else pos
    pos = np.clip(pos, 0, np.array(movie.cells.shape[1:]) - 1)
    spots = pd.DataFrame({"t": sp["t"].astype(int), "label": sp.groupby("t").cumcount() + 1,
                          "z": pos[:, 0], "y": pos[:, 1], "x": pos[:, 2],
                          "intensity": sp["intensity"]})
    spots["cell_id"] = 0
    spots["compartment"] = "outside"
    spots["distance_to_nucleus_um"] = np.nan
    for t in range(movie.cells.shape[0]):
        sel = (spots["t"] == t).to_numpy()
        if not sel.any():
            continue
        p = pos[sel]
        cid = value_at(movie.cells[t], p).astype(int)
        nuc = value_at(movie.nuclei[t], p) > 0
        spots.loc[sel, "cell_id"] = cid
        spots.loc[sel, "compartment"] = np.where(cid == 0, "outside",
                                                 np.where(nuc, "nucleus", "cytoplasm"))
        spots.loc[sel, "distance_to_nucleus_um"] = value_at(
            signed_distance(movie.nuclei[t], vs), p)

    lin = movie.lineage.set_index("cell_id")
    root, gen = {}, {}
    for cid in lin.index:
        r, g = cid, 0
        while lin.loc[r, "parent_id"] > 0:
            r, g = int(lin.loc[r, "parent_id"]), g + 1
        root[cid], gen[cid] = int(r), g
    cell_tracks = cells[["t", "label", "z", "y", "x"]].copy()
    cell_tracks.insert(0, "track_id", cell_tracks["label"])
    cell_tracks["parent"] = [int(lin.loc[c, "parent_id"]) for c in cell_tracks["label"]]
    cell_tracks["root"] = [root[c] for c in cell_tracks["label"]]
    cell_tracks["generation"] = [gen[c] for c in cell_tracks["label"]]

    spot_tracks = spots[["t", "z", "y", "x", "label", "cell_id", "compartment"]].copy()
    spot_tracks.insert(0, "track_id", sp["spot_id"].astype(int).to_numpy())
    return {"cells": cells, "nuclei": nuclei, "spots": spots, "cell_tracks": cell_tracks,
            "spot_tracks": spot_tracks}


def truth_cell_speeds(movie, seed: int) -> pd.DataFrame:
    """Per cell track: the true mean speed (µm/s) from the simulated cell centres.

    The simulator does not return its centre trajectories, so they are regenerated: the cell
    states are the first thing drawn from the movie's random generator, so re-running that
    step with the seed given to ``simulate_movie`` reproduces them exactly (checked against
    the lineage).
    """
    from cellspot import simulate

    cfg, dt = movie.config, movie.meta.time_interval
    states, lineage = simulate._cell_states(cfg, np.random.default_rng(seed))
    if not lineage.reset_index(drop=True).equals(movie.lineage.reset_index(drop=True)):
        raise RuntimeError("regenerated cell states do not match the movie's lineage")
    centres: dict[int, list] = {}
    for t, state in enumerate(states):
        for cid, c, *_ in state:
            centres.setdefault(int(cid), []).append((t, *c))
    rows = []
    for cid, tr in centres.items():
        tr = np.asarray(tr)
        steps = np.linalg.norm(np.diff(tr[:, 1:], axis=0), axis=1) / (np.diff(tr[:, 0]) * dt)
        rows.append((cid, len(tr), float(steps.mean()) if len(steps) else np.nan))
    return pd.DataFrame(rows, columns=["track_id", "n_timepoints", "true_speed_um_s"])


def write_batch(movie, batch_dir: str | Path, position_noise_px: float = 0.0,
                seed: int = 0) -> Path:
    """Write a batch folder as the upstream stages would, from the truth (for tests and demos).

    Creates ``tables/{cells,nuclei,spots,cell_tracks,spot_tracks}.parquet``,
    ``labels/{cells,nuclei}.zarr``, ``preprocessed.ome.zarr`` (the raw movie with the drift
    undone, scaled to [0, 1]) and ``drift.csv``.
    """
    batch_dir = Path(batch_dir)
    for name, df in tables_from_truth(movie, position_noise_px, seed).items():
        path = in_batch(batch_dir, "table", name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(path, index=False)
    meta = movie.meta
    for name in ("cells", "nuclei"):
        omezarr.write_labels(in_batch(batch_dir, "labels", name=name),
                             getattr(movie, name).astype(np.uint32), meta, name)
    img = movie.image.astype(np.float32)
    lo, hi = np.percentile(img, [1, 99.9], axis=(0, 2, 3, 4), keepdims=True)
    img = np.clip((img - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    with omezarr.atomic_output(in_batch(batch_dir, "preprocessed")) as tmp:
        arr = omezarr.create_image(tmp, img.shape, np.float32, meta)
        for t, (dz, dy, dx) in enumerate(movie.drift[["dz", "dy", "dx"]].to_numpy()):
            arr[t] = np.stack([ndi.shift(img[t, c], (-dz, -dy, -dx), order=1)
                               for c in range(img.shape[1])])
    drift = movie.drift.assign(quality=1.0, flagged=False)
    drift.to_csv(in_batch(batch_dir, "drift_csv"), index=False)
    return batch_dir
