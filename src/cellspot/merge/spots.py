"""Per-slice RNA spot detections -> 3D spots (:func:`merge_spots`).

Linking along z, sub-pixel localisation, integrated intensity, the cell and compartment each
spot lies in and its distance to the nucleus surface, molecules per spot.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..distance import signed_distance_at
from ..table_specs import SPOTS
from .compartments import assign_nuclei
from .molecules import molecules_per_spot
from .profile import split_profile
from .settings import SpotSettings

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- RNA spots


def _link_spot_detections(z: np.ndarray, yx_um: np.ndarray, radius: float,
                          max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one links (closest first) of detections in nearby slices."""
    n = len(z)
    nxt = np.full(n, -1)
    prv = np.full(n, -1)
    slices = {int(s): np.flatnonzero(z == s) for s in np.unique(z)}
    trees = {s: cKDTree(yx_um[idx]) for s, idx in slices.items()}
    for d in range(1, max_gap + 2):
        cand = []
        for s, idx in slices.items():
            if s + d not in slices:
                continue
            pairs = trees[s].sparse_distance_matrix(trees[s + d], radius, output_type="ndarray")
            if len(pairs):
                cand.append(np.stack([idx[pairs["i"]], slices[s + d][pairs["j"]],
                                      pairs["v"]], 1))
        if not cand:
            continue
        cand = np.concatenate(cand)
        cand = cand[np.argsort(cand[:, 2], kind="stable")]
        for a, b, _ in cand:
            a, b = int(a), int(b)
            if nxt[a] < 0 and prv[b] < 0:
                nxt[a], prv[b] = b, a
    return nxt, prv


def _window_values(image: np.ndarray, centres: np.ndarray, radius) -> tuple[np.ndarray, np.ndarray]:
    """Image values in a (2r+1) box around integer centres (edge-clamped) and the offsets."""
    rz, ry, rx = radius
    oz, oy, ox = np.meshgrid(np.arange(-rz, rz + 1), np.arange(-ry, ry + 1),
                             np.arange(-rx, rx + 1), indexing="ij")
    off = np.stack([oz.ravel(), oy.ravel(), ox.ravel()], 1)
    pos = centres[:, None, :] + off[None]
    hi = np.array(image.shape) - 1
    pos = np.clip(pos, 0, hi)
    return image[pos[..., 0], pos[..., 1], pos[..., 2]].astype(np.float64), off


def _refine_positions(image: np.ndarray, est: np.ndarray, radius, method: str):
    """Sub-pixel positions, integrated and peak intensity of spots around estimates (px)."""
    shape = np.array(image.shape)
    c = np.clip(np.round(est).astype(np.int64), 0, shape - 1)
    # Move to the brightest voxel of the 3x3x3 neighbourhood (estimates are from 2D detections).
    vals, off = _window_values(image, c, (1, 1, 1))
    c = np.clip(c + off[np.argmax(vals, 1)], 0, shape - 1)
    vals, off = _window_values(image, c, radius)
    shell = np.any(np.abs(off) == np.array(radius), axis=1)
    bg = np.median(vals[:, shell], axis=1) if shell.any() else np.zeros(len(c))
    sig = vals - bg[:, None]
    integrated = sig.sum(1)
    centre = np.flatnonzero(np.all(off == 0, axis=1))[0]
    peak = sig[:, centre]
    if method == "centroid":
        w = np.clip(sig, 0, None)
        tot = w.sum(1)
        shift = (w @ off) / np.where(tot > 0, tot, 1)[:, None]
    else:
        shift = np.zeros((len(c), 3))
        floor = 1e-6 * np.maximum(peak, 1e-12)
        lc = np.log(np.maximum(peak, floor))
        for ax in range(3):
            minus = np.zeros(3, int)
            minus[ax] = -1
            im = np.flatnonzero(np.all(off == minus, axis=1))
            ip = np.flatnonzero(np.all(off == -minus, axis=1))
            if len(im) == 0 or len(ip) == 0:
                continue
            lm = np.log(np.maximum(sig[:, im[0]], floor))
            lp = np.log(np.maximum(sig[:, ip[0]], floor))
            den = lm - 2 * lc + lp
            s = np.where(den < 0, 0.5 * (lm - lp) / np.where(den < 0, den, -1), 0.0)
            # The position at the edge of the field is not constrained on one side.
            s[(c[:, ax] == 0) | (c[:, ax] == shape[ax] - 1)] = 0.0
            shift[:, ax] = np.clip(s, -1.0, 1.0)
    return c + shift, integrated, peak


def link_spot_detections(detections: pd.DataFrame, image: np.ndarray | None = None,
                         voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                         settings: SpotSettings | None = None) -> np.ndarray:
    """The 3D spot (1..N) each per-slice detection belongs to.

    Detections of one spot in nearby slices (xy distance within ``link_radius_um``, at most
    ``max_gap`` slices missed) are linked one-to-one, closest first. A chain whose z-profile
    (the image at the detections, else their scores) has two maxima separated by a minimum
    below ``valley_ratio`` of both is cut there, so two spots close in xy but apart in z stay
    two. Spots are numbered by their first slice, then y, then x.
    """
    s = settings or SpotSettings()
    if detections is None or len(detections) == 0:
        return np.zeros(0, np.int64)
    missing = {"z", "y", "x"} - set(detections.columns)
    if missing:
        raise ValueError(f"spot detections lack columns {sorted(missing)}")
    vs = np.asarray(voxel_size, float)
    z = np.round(detections["z"].to_numpy(float)).astype(np.int64)
    yx = detections[["y", "x"]].to_numpy(float)
    nxt, prv = _link_spot_detections(z, yx * vs[1:], s.link_radius_um, s.max_gap)
    profile = _detection_profile(detections, image)
    member = np.zeros(len(z), np.int64)
    heads = np.flatnonzero(prv < 0)
    order = heads[np.lexsort((yx[heads, 1], yx[heads, 0], z[heads]))]
    label = 0
    for h in order:
        chain = [h]
        while nxt[chain[-1]] >= 0:
            chain.append(nxt[chain[-1]])
        cuts = split_profile(profile[chain], s.valley_ratio) if len(chain) > 2 else []
        for part in np.split(np.asarray(chain), cuts):
            label += 1
            member[part] = label
    return member


def _detection_profile(detections: pd.DataFrame, image: np.ndarray | None) -> np.ndarray:
    """Brightness of each detection: the image at its pixel, else its score (else 1)."""
    if image is None:
        return (detections["score"].to_numpy(float) if "score" in detections
                else np.ones(len(detections)))
    z = np.clip(np.round(detections["z"].to_numpy(float)).astype(int), 0, image.shape[0] - 1)
    y = np.clip(np.round(detections["y"].to_numpy(float)).astype(int), 0, image.shape[1] - 1)
    x = np.clip(np.round(detections["x"].to_numpy(float)).astype(int), 0, image.shape[2] - 1)
    return image[z, y, x].astype(float)


def merge_spots(detections: pd.DataFrame, image: np.ndarray | None = None,
                voxel_size: Sequence[float] = (1.0, 1.0, 1.0), *,
                cells: np.ndarray | None = None, nuclei: np.ndarray | None = None,
                settings: SpotSettings | None = None,
                members: np.ndarray | None = None,
                parents: pd.DataFrame | None = None) -> pd.DataFrame:
    """Merge per-slice spot detections into 3D spots (see :func:`link_spot_detections`).

    Parameters
    ----------
    detections : DataFrame
        Columns ``z`` (slice index), ``y``, ``x`` (sub-pixel, px); optional ``score``, ``area``.
    image : (Z, Y, X) array, optional
        The preprocessed spot channel: z-profiles, sub-pixel positions (``localisation``) and
        background-subtracted integrated intensities are measured on it. Without it, positions
        are brightness-weighted means of the detections and ``intensity`` is the summed score.
    voxel_size : (z, y, x) µm
    cells, nuclei : (Z, Y, X) int arrays, optional
        3D labels: give each spot its ``cell_id`` (inside a nucleus: the nucleus' cell),
        ``compartment`` ("nucleus", "cytoplasm", "outside") and ``distance_to_nucleus_um``
        (signed distance to the nearest nucleus surface, negative inside).
    settings : SpotSettings, optional
    members : array, optional
        Output of :func:`link_spot_detections` if already computed; updated in place when
        chains are merged (``min_separation_um``), so that it keeps matching ``label``.
    parents : DataFrame, optional
        Output of :func:`assign_nuclei` if already computed.

    Returns
    -------
    DataFrame, one row per 3D spot: ``label`` (1..N, as in ``members``), ``z, y, x`` (px),
    ``intensity``, ``peak``, ``score`` (best detection score), ``n_slices``, ``z_first``,
    ``z_last``, ``cell_id``, ``compartment``, ``distance_to_nucleus_um``.
    """
    s = settings or SpotSettings()
    if detections is None or len(detections) == 0:
        return SPOTS.empty()
    if members is None:
        members = link_spot_detections(detections, image, voxel_size, s)
    else:
        members = np.asarray(members)
    vs = np.asarray(voxel_size, float)
    df = _spot_rows(detections, image, members, s)
    if s.min_separation_um > 0 and len(df) > 1:
        # Two chains of one spot (broken where its detections wandered) converge on the same
        # refined position: merge them and measure again.
        pos = df[["z", "y", "x"]].to_numpy() * vs
        pairs = cKDTree(pos).query_pairs(s.min_separation_um, output_type="ndarray")
        if len(pairs):
            from scipy.sparse import coo_matrix
            from scipy.sparse.csgraph import connected_components

            n = len(df)
            graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), (n, n))
            _, comp = connected_components(graph, directed=False)
            # Renumber groups in the order of their first spot, keep label 0 for none.
            _, first = np.unique(comp, return_index=True)
            rank = np.empty(len(first), np.int64)
            rank[np.argsort(first)] = np.arange(1, len(first) + 1)
            remap = np.concatenate([[0], rank[comp]])
            members[:] = remap[members]
            df = _spot_rows(detections, image, members, s)
    return _locate(df, cells, nuclei, vs, parents)


def _spot_rows(detections: pd.DataFrame, image, members: np.ndarray,
               s: SpotSettings) -> pd.DataFrame:
    """Position, intensity and extent of each group of detections (``members`` 1..N)."""
    z = np.round(detections["z"].to_numpy(float)).astype(np.int64)
    yx = detections[["y", "x"]].to_numpy(float)
    score = (detections["score"].to_numpy(float) if "score" in detections
             else np.ones(len(z)))
    profile = _detection_profile(detections, image)
    n = int(members.max())
    w = np.maximum(profile, 0) + 1e-12
    cnt = np.bincount(members, minlength=n + 1)[1:]
    wsum = np.bincount(members, w, n + 1)[1:]
    est = np.stack([np.bincount(members, w * c, n + 1)[1:] / wsum
                    for c in (z.astype(float), yx[:, 0], yx[:, 1])], 1)
    grouped = pd.DataFrame({"m": members, "score": score, "z": z, "p": profile}).groupby("m")
    best_score = grouped["score"].max().to_numpy()
    z_first = grouped["z"].min().to_numpy()
    z_last = grouped["z"].max().to_numpy()
    if image is not None and s.localisation != "detections":
        pos, integrated, peak = _refine_positions(np.asarray(image), est, s.window_radius,
                                                  s.localisation)
    else:
        pos = est
        integrated = np.bincount(members, score, n + 1)[1:]
        peak = grouped["p"].max().to_numpy()
    return pd.DataFrame({"label": np.arange(1, n + 1), "z": pos[:, 0], "y": pos[:, 1],
                         "x": pos[:, 2], "intensity": integrated, "peak": peak,
                         "score": best_score, "n_slices": cnt, "z_first": z_first,
                         "z_last": z_last})


def count_molecules(spots: pd.DataFrame, image: np.ndarray | None,
                    settings: SpotSettings | None = None) -> pd.DataFrame:
    """``spots`` with ``n_rna``, the RNA molecules each spot stands for (see
    :mod:`cellspot.merge.molecules`; one each without an image or with ``molecules: spots``)."""
    s = settings or SpotSettings()
    n = np.ones(len(spots), np.int64)
    if image is not None and s.molecules == "fit" and len(spots):
        n, psf = molecules_per_spot(np.asarray(image), spots[["z", "y", "x"]].to_numpy(float),
                                    spots["peak"].to_numpy(float),
                                    site_amplitude=s.site_amplitude)
        if psf is not None:
            log.info("RNA per spot: PSF sigma %s px, %d spots, %d molecules",
                     tuple(round(v, 2) for v in psf.sigma), len(n), int(n.sum()))
    out = spots.drop(columns=["n_rna"], errors="ignore")
    out.insert(out.columns.get_loc("z_last") + 1, "n_rna", n)
    return out


def _locate(df: pd.DataFrame, cells, nuclei, voxel_size, parents=None) -> pd.DataFrame:
    """Add cell_id, compartment and distance_to_nucleus_um to a table of positions (px)."""
    pts = df[["z", "y", "x"]].to_numpy(float)
    n = len(df)
    cell_id = np.zeros(n, np.int64)
    comp = np.full(n, "outside", dtype=object)
    dist = np.full(n, np.nan)
    ref = cells if cells is not None else nuclei
    if ref is not None and n:
        ijk = tuple(np.clip(np.round(pts).astype(int), 0, np.array(ref.shape) - 1).T)
        if cells is not None:
            cell_id = cells[ijk].astype(np.int64)
            comp[cell_id > 0] = "cytoplasm"
        if nuclei is not None:
            nuc = nuclei[ijk].astype(np.int64)
            in_nuc = nuc > 0
            comp[in_nuc] = "nucleus"
            if cells is not None and in_nuc.any():
                # A spot in a nucleus belongs to that nucleus' cell even where masks disagree.
                if parents is None:
                    parents = assign_nuclei(cells, nuclei)
                parent = parents.set_index("nucleus_id")["cell_id"]
                cell_id[in_nuc] = parent.reindex(nuc[in_nuc]).fillna(0).to_numpy(np.int64)
            dist = signed_distance_at(pts, nuclei, voxel_size)
    df["cell_id"] = cell_id
    df["compartment"] = comp
    df["distance_to_nucleus_um"] = dist
    return df


def spot_labels(members: np.ndarray, detections: pd.DataFrame, shape,
                default_radius: float = 1.0) -> np.ndarray:
    """3D label image of spots: each spot's detections painted as discs in their slices.

    ``members`` is the output of :func:`link_spot_detections`. The disc radius is that of a
    disc of the detection's ``area`` (px), at least one pixel, else ``default_radius``.
    """
    out = np.zeros(shape, np.uint32)
    if members is None or len(members) == 0:
        return out
    z = np.round(detections["z"].to_numpy(float)).astype(np.int64)
    y, x = detections["y"].to_numpy(float), detections["x"].to_numpy(float)
    if "area" in detections:
        r = np.sqrt(np.maximum(detections["area"].to_numpy(float), 1) / np.pi)
    else:
        r = np.full(len(z), default_radius)
    r = np.clip(r, 1.0, 10.0)
    for rr in np.unique(np.ceil(r)):
        sel = np.flatnonzero(np.ceil(r) == rr)
        k = int(rr)
        oy, ox = np.mgrid[-k:k + 1, -k:k + 1]
        for dy, dx in zip(oy.ravel(), ox.ravel()):
            yy = np.round(y[sel]).astype(int) + dy
            xx = np.round(x[sel]).astype(int) + dx
            keep = ((yy - y[sel]) ** 2 + (xx - x[sel]) ** 2 <= r[sel] ** 2 + 0.25) & \
                (yy >= 0) & (yy < shape[1]) & (xx >= 0) & (xx < shape[2]) & \
                (z[sel] >= 0) & (z[sel] < shape[0])
            out[z[sel][keep], yy[keep], xx[keep]] = members[sel][keep]
    return out


