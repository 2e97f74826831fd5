"""3D label merging: per-slice 2D instances -> 3D cells, nuclei, compartments and RNA spots.

The segmentation models see 2D z-slices. This stage

* stitches the 2D instances of adjacent slices into 3D objects (:func:`stitch_slices`):
  one-to-one links by the Hungarian algorithm on IoU, bridging of a missing slice (filled by
  shape interpolation), resolution of over-segmented (split) and under-segmented (merged)
  sections, small caps kept with their object, and stacked objects cut apart where their
  section area has a waist;
* relates nuclei to cells (:func:`assign_nuclei`) and builds a semantic map
  (:func:`semantic_map`: 0 background, 1 cytoplasm, 2 nucleus);
* merges per-slice RNA spot detections into 3D spots with a sub-pixel position, an integrated
  intensity, the cell and compartment they lie in and their distance to the nucleus surface
  (:func:`merge_spots`);
* measures every object (:func:`object_table`).

:func:`stitch_slices_cellpose` is the Cellpose ``stitch3D`` rule (greedy argmax of the IoU with
the previous slice, threshold 0.25), kept as the baseline of ``benchmarks/merge_accuracy.py``.

All functions are pure functions of arrays and tables; :func:`run_merge` is the file-level driver
used by the Snakemake rule ``merge`` (also ``python -m cellspot.merge``); :func:`slice_labels`
turns 3D truth into the per-slice input (with segmentation errors) for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from .omezarr import ImageMeta, OmeZarrError, atomic_output, create_labels, open_array, read_meta
from .resources import without_resources
from .rna_counts import molecules_per_spot
from .segment_store import read_segmentation
from .split_cells import absorb_anucleate_fragments, split_multinucleate

log = logging.getLogger(__name__)

COMPARTMENTS = ("outside", "cytoplasm", "nucleus")  # index = value of the semantic map
SEMANTIC_PROPERTIES = [
    {"label-value": 0, "class": "background"},
    {"label-value": 1, "class": "cytoplasm"},
    {"label-value": 2, "class": "nucleus"},
]
SPOT_COLUMNS = ["label", "z", "y", "x", "intensity", "peak", "score", "n_slices", "z_first",
                "z_last", "n_rna", "cell_id", "compartment", "distance_to_nucleus_um"]


# --------------------------------------------------------------------------- settings


class SpotSettings(BaseModel):
    """How per-slice spot detections become 3D spots."""

    model_config = ConfigDict(extra="forbid")

    link_radius_um: float = Field(0.25, gt=0, description="largest xy distance (µm) between "
                                  "detections of one spot in adjacent slices")
    max_gap: int = Field(0, ge=0, description="slices a spot may be missed in and still link")
    valley_ratio: float = Field(0.9, gt=0, le=1, description="a z-profile minimum below this "
                                "fraction of both neighbouring maxima separates two spots")
    localisation: Literal["gaussian", "centroid", "detections"] = Field(
        "gaussian", description="sub-pixel 3D position: 3-point Gaussian fit per axis on the "
        "image, intensity-weighted centroid on the image, or the score-weighted mean of the "
        "detections (no image needed)")
    window_radius: tuple[int, int, int] = Field((1, 2, 2), description="(z, y, x) half-size "
                                                "in voxels of the window for localisation and "
                                                "integrated intensity")
    min_separation_um: float = Field(0.2, ge=0, description="3D spots whose refined positions "
                                     "are closer than this (µm) are one spot; 0 disables")
    molecules: Literal["fit", "spots"] = Field(
        "fit", description="RNA molecules per spot (n_rna): fit = multi-emitter fitting of "
        "regions larger than a single spot and transcription sites by amplitude "
        "(cellspot.rna_counts); spots = one each")
    site_amplitude: float = Field(2.5, gt=1, description="a fitted spot this many single "
                                  "molecules bright is a transcription site")
    channel: str | int = Field("rna", description="image channel (name or index) of the spots")


class MergeSettings(BaseModel):
    """Settings of the merge stage (config section ``merge:``)."""

    model_config = ConfigDict(extra="forbid")

    iou_threshold: float = Field(0.3, gt=0, le=1, description="smallest IoU of two 2D "
                                 "instances in adjacent slices that are one object")
    max_gap: int = Field(1, ge=0, description="missing slices bridged inside one object")
    max_gap_um: float | None = Field(None, gt=0, description="if set, the bridged gap in µm "
                                     "(overrides max_gap using the z voxel size)")
    fill_gaps: bool = Field(True, description="fill a bridged slice by shape interpolation")
    fragment_containment: float = Field(0.5, gt=0, le=1, description="an unlinked 2D "
                                        "fragment joins a 3D object when at least this fraction "
                                        "of it lies under the object's adjacent slice")
    merge_coverage: float = Field(0.5, gt=0, le=1, description="a 2D instance is split when it "
                                  "covers at least this fraction of a bridged object above and "
                                  "below")
    waist_ratio: float = Field(0.5, ge=0, lt=1, description="cut an object where its section "
                               "area along z dips below this fraction of the maxima on both "
                               "sides (two stacked objects); 0 disables")
    min_volume_vox: int = Field(0, ge=0, description="3D objects smaller than this are dropped")
    nucleus_min_overlap: float = Field(0.5, gt=0, le=1, description="fraction of a nucleus "
                                       "inside a cell for it to belong to that cell")
    split_multinucleate: bool = Field(True, description="split a cell holding several nuclei "
                                      "into one cell per nucleus (touching daughters after a "
                                      "division); false for binucleate cell types")
    spots: SpotSettings = Field(default_factory=SpotSettings)

    @classmethod
    def from_config(cls, section: dict | None, spot_channel: str | int | None = None
                    ) -> "MergeSettings":
        """Settings from the config section ``merge:`` (job resources are ignored here)."""
        d = without_resources(dict(section or {}))
        if spot_channel is not None:
            d["spots"] = {**dict(d.get("spots") or {}), "channel": spot_channel}
        return cls(**d)


# --------------------------------------------------------------------------- 2D -> graph


def _relabel_slices(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Give every 2D instance of a (Z, Y, X) stack a unique node id (1..N, slice by slice).

    Returns
    -------
    nodes : (Z, Y, X) int32 array of node ids (0 = background)
    node_z : (N + 1,) slice of each node (index 0 unused)
    offsets : (Z + 1,) slice z holds nodes ``offsets[z] + 1 .. offsets[z + 1]``
    area : (N + 1,) pixels of each node
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) label stack, got shape {stack.shape}")
    if stack.dtype.kind not in "ui":
        raise ValueError(f"labels must be integers, got {stack.dtype}")
    nodes = np.zeros(stack.shape, np.int32)
    offsets = np.zeros(stack.shape[0] + 1, np.int64)
    areas = [np.zeros(1, np.int64)]
    n = 0
    for z, sl in enumerate(stack):
        if sl.size and sl.min() < 0:
            raise ValueError("labels must be >= 0")
        m = int(sl.max()) if sl.size else 0
        if m == 0:
            offsets[z + 1] = n
            continue
        if m <= 4 * sl.size:  # small ids: a lookup table (O(pixels), no sorting)
            counts = np.bincount(sl.ravel(), minlength=m + 1)
            present = np.flatnonzero(counts)
            present = present[present > 0]
            lut = np.zeros(m + 1, np.int32)
            lut[present] = np.arange(n + 1, n + 1 + len(present))
            nodes[z] = lut[sl]
            areas.append(counts[present])
        else:
            present, inv, counts = np.unique(sl, return_inverse=True, return_counts=True)
            keep = present > 0
            ranks = np.cumsum(keep) * keep
            nodes[z] = np.where(keep[inv], ranks[inv] + n, 0).reshape(sl.shape)
            present, counts = present[keep], counts[keep]
            areas.append(counts)
        n += len(present)
        offsets[z + 1] = n
    node_z = np.zeros(n + 1, np.int64)
    for z in range(stack.shape[0]):
        node_z[offsets[z] + 1:offsets[z + 1] + 1] = z
    return nodes, node_z, offsets, np.concatenate(areas).astype(np.int64)


def _pair_overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel overlaps of the node ids of two slices: (ids in a, ids in b, counts), both > 0."""
    a, b = a.ravel(), b.ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        e = np.zeros(0, np.int64)
        return e, e, e
    a, b = a[both].astype(np.int64), b[both].astype(np.int64)
    a0, b0 = a.min(), b.min()
    na, nb = a.max() - a0 + 1, b.max() - b0 + 1
    if na * nb <= 8_000_000:  # dense counting is O(pixels); fall back to sorting when huge
        counts = np.bincount((a - a0) * nb + (b - b0), minlength=na * nb)
        key = np.flatnonzero(counts)
        return key // nb + a0, key % nb + b0, counts[key]
    key, counts = np.unique((a - a0) * nb + (b - b0), return_counts=True)
    return key // nb + a0, key % nb + b0, counts


def _hungarian_links(ia, ib, iou, threshold) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one links maximising total IoU among candidate pairs with IoU >= threshold."""
    keep = iou >= threshold
    ia, ib, iou = ia[keep], ib[keep], iou[keep]
    if len(ia) == 0:
        return ia, ib
    ra, ra_inv = np.unique(ia, return_inverse=True)
    rb, rb_inv = np.unique(ib, return_inverse=True)
    cost = np.zeros((len(ra), len(rb)))
    cost[ra_inv, rb_inv] = -iou
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < 0
    return ra[r[ok]], rb[c[ok]]


@dataclass
class _Graph:
    """2D instances (nodes) of a stack and their links along z."""

    nodes: np.ndarray       # (Z, Y, X) node ids
    node_z: np.ndarray
    area: np.ndarray        # pixels per node
    nxt: np.ndarray         # linked node in a later slice, 0 = none
    prv: np.ndarray
    alias: np.ndarray       # node merged into another node (a resolved split), 0 = none
    overlaps: dict          # (z, z + d) -> (ia, ib, counts)

    def overlap(self, z0: int, z1: int):
        key = (z0, z1)
        if key not in self.overlaps:
            self.overlaps[key] = _pair_overlaps(self.nodes[z0], self.nodes[z1])
        return self.overlaps[key]

    def iou(self, ia, ib, counts):
        return counts / (self.area[ia] + self.area[ib] - counts)

    def add_node(self, z: int, area: int) -> int:
        """A new node in slice z (a piece of a split instance); returns its id."""
        values = {"node_z": z, "area": area, "nxt": 0, "prv": 0, "alias": 0}
        for name, value in values.items():
            setattr(self, name, np.append(getattr(self, name), value))
        return len(self.area) - 1


def _build_graph(stack: np.ndarray) -> _Graph:
    nodes, node_z, _, area = _relabel_slices(stack)
    n = len(node_z)
    zeros = np.zeros(n, np.int64)
    return _Graph(nodes, node_z, area, zeros.copy(), zeros.copy(), zeros.copy(), {})


def _join_split_instances(g: _Graph, containment: float) -> None:
    """Re-join a 2D instance that the segmenter cut in two (over-segmentation) before linking.

    Instances of slice z that each lie for at least ``containment`` on one instance P of slice
    z - 1 and on one instance N of slice z + 1, and whose union overlaps both P and N better
    (IoU) than any of them alone, are one instance. Requiring agreement above *and* below
    keeps two objects that start under one object's end apart.
    """
    Z = g.nodes.shape[0]
    for z in range(1, Z - 1):
        up, dn = g.overlap(z - 1, z), g.overlap(z, z + 1)
        frac_up = up[2] / g.area[up[1]]
        frac_dn = dn[2] / g.area[dn[0]]
        # Each fragment's main neighbour above and below (ascending order: the last one wins).
        o_up, o_dn = np.argsort(frac_up, kind="stable"), np.argsort(frac_dn, kind="stable")
        best_up = {int(up[1][i]): (int(up[0][i]), int(up[2][i])) for i in o_up
                   if frac_up[i] >= containment}
        best_dn = {int(dn[0][i]): (int(dn[1][i]), int(dn[2][i])) for i in o_dn
                   if frac_dn[i] >= containment}
        groups: dict[tuple[int, int], list[int]] = {}
        for f in set(best_up) & set(best_dn):
            groups.setdefault((best_up[f][0], best_dn[f][0]), []).append(f)
        changed = False
        for (p, n), frags in groups.items():
            if len(frags) < 2:
                continue
            a_f = g.area[frags].sum()
            ok = True
            for nb, side in ((p, best_up), (n, best_dn)):
                c = np.array([side[f][1] for f in frags])
                single = (c / (g.area[frags] + g.area[nb] - c)).max()
                union = c.sum() / (a_f + g.area[nb] - c.sum())
                ok &= union > single
            if not ok:
                continue
            main = max(frags, key=lambda f: g.area[f])
            plane = g.nodes[z]
            plane[np.isin(plane, frags)] = main
            for f in frags:
                if f != main:
                    g.area[main] += g.area[f]
                    g.area[f] = 0
            changed = True
        if changed:
            for key in [k for k in g.overlaps if z in k]:
                del g.overlaps[key]


def _link_adjacent(g: _Graph, threshold: float) -> None:
    for z in range(g.nodes.shape[0] - 1):
        ia, ib, cnt = g.overlap(z, z + 1)
        a, b = _hungarian_links(ia, ib, g.iou(ia, ib, cnt), threshold)
        g.nxt[a], g.prv[b] = b, a


def _link_gaps(g: _Graph, threshold: float, max_gap: int) -> list[tuple[int, int]]:
    """Link object ends to object starts across up to ``max_gap`` empty slices."""
    gaps = []
    Z = g.nodes.shape[0]
    for d in range(2, max_gap + 2):
        for z in range(Z - d):
            ia, ib, cnt = g.overlap(z, z + d)
            free = (g.nxt[ia] == 0) & (g.prv[ib] == 0)
            a, b = _hungarian_links(ia[free], ib[free], g.iou(ia[free], ib[free], cnt[free]),
                                    threshold)
            g.nxt[a], g.prv[b] = b, a
            gaps.extend(zip(a.tolist(), b.tolist()))
    return gaps


def _bbox_of(mask: np.ndarray, pad: int = 1):
    idx = np.nonzero(mask)
    lo = [max(int(i.min()) - pad, 0) for i in idx]
    hi = [min(int(i.max()) + pad + 1, s) for i, s in zip(idx, mask.shape)]
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _resolve_merges(g: _Graph, gaps: list[tuple[int, int]], coverage: float,
                    sampling: tuple[float, float]) -> set[tuple[int, int]]:
    """Split 2D instances that merge a bridged object with a neighbour (under-segmentation).

    A bridged link ``u (z0) -> v (z1)`` skips the slices between. If one instance M of a
    skipped slice covers at least ``coverage`` of both ``u`` and ``v``, M holds that object:
    M's pixels are shared between the objects it covers (and M's own object) by nearest seed,
    the seeds being the objects' masks in the slices above and below.
    Returns the gaps that were resolved this way (they are not interpolated).
    """
    resolved = set()
    # instance M -> objects it covers: list of (u, v)
    covers: dict[int, list[tuple[int, int]]] = {}
    for u, v in gaps:
        z0, z1 = int(g.node_z[u]), int(g.node_z[v])
        if z1 - z0 != 2:
            continue
        z = z0 + 1
        ia, ib, cnt = g.overlap(z0, z)
        sel = ia == u
        cand_u = dict(zip(ib[sel].tolist(), (cnt[sel] / g.area[u]).tolist()))
        ia, ib, cnt = g.overlap(z, z1)
        sel = ib == v
        cand_v = dict(zip(ia[sel].tolist(), (cnt[sel] / g.area[v]).tolist()))
        for m in set(cand_u) & set(cand_v):
            if cand_u[m] >= coverage and cand_v[m] >= coverage:
                covers.setdefault(m, []).append((u, v))
    for m, objs in covers.items():
        z = int(g.node_z[m])
        own = []
        if g.prv[m] or g.nxt[m]:
            own = [(g.prv[m], g.nxt[m])]
        elif len(objs) == 1:
            # M did not pass the IoU threshold but is the object's only candidate: link it.
            u, v = objs[0]
            g.nxt[u], g.prv[m], g.nxt[m], g.prv[v] = m, u, v, m
            resolved.add((u, v))
            continue
        groups = own + objs
        mask_m = g.nodes[z] == m
        box = _bbox_of(mask_m)
        crop_m = mask_m[box]
        seeds = np.zeros(crop_m.shape, np.int32)
        for k, (p, q) in enumerate(groups, start=1):
            for nb in (p, q):
                if nb:
                    seeds[(g.nodes[int(g.node_z[nb])][box] == nb) & crop_m & (seeds == 0)] = k
        if not seeds.any():
            continue
        _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, sampling=sampling,
                                                 return_indices=True)
        owner = np.where(crop_m, seeds[iy, ix], 0)
        plane = g.nodes[z]
        for k, (p, q) in enumerate(groups, start=1):
            piece = owner == k
            if not piece.any():
                continue
            if k == 1 and own:
                node = m  # M keeps its own object's links
            else:
                node = g.add_node(z, 0)
                if (p, q) in objs:
                    g.nxt[p], g.prv[node], g.nxt[node], g.prv[q] = node, p, q, node
                    resolved.add((p, q))
            sub = plane[box]
            sub[piece] = node
            g.area[node] = int(piece.sum())
        for key in [k for k in g.overlaps if z in k]:
            del g.overlaps[key]  # slice z changed
        if not own:  # an unlinked M fully handed out to the objects it covered
            g.area[m] = int((plane == m).sum())
    return resolved


def _absorb_fragments(g: _Graph, containment: float, max_gap: int) -> list[tuple[int, int]]:
    """Join unlinked single-slice fragments (over-segmentation, small caps) to their object.

    A fragment F (no link up or down) is joined to the object of a node P in an adjacent slice
    when at least ``containment`` of F lies on P and adding F to P's object in F's slice does
    not lower the IoU with P (or P's object has no instance in F's slice: F is its cap). Across
    up to ``max_gap`` missing slices F may only become the cap of an object ending at P.
    Returns the new bridged links (upper node, lower node).
    """
    Z = g.nodes.shape[0]
    new_gaps: list[tuple[int, int]] = []
    orphans = np.flatnonzero((g.nxt == 0) & (g.prv == 0) & (g.area > 0))
    orphans = orphans[orphans > 0]
    if len(orphans) == 0:
        return new_gaps
    by_z: dict[int, np.ndarray] = {}
    for f in orphans:
        by_z.setdefault(int(g.node_z[f]), []).append(int(f))
    for z, frags in by_z.items():
        best: dict[int, tuple[float, int]] = {}
        for zn in [z + sgn * d for d in range(1, max_gap + 2) for sgn in (-1, 1)]:
            if not 0 <= zn < Z:
                continue
            ia, ib, cnt = g.overlap(min(z, zn), max(z, zn))
            f_side, p_side = (ia, ib) if zn > z else (ib, ia)
            for f in frags:
                sel = f_side == f
                for p, c in zip(p_side[sel].tolist(), cnt[sel].tolist()):
                    if c / g.area[f] < containment or (g.nxt[p] == 0 and g.prv[p] == 0):
                        continue
                    n = g.nxt[p] if zn < z else g.prv[p]
                    if abs(zn - z) > 1 and n:
                        continue  # across a gap only onto an object's end
                    if n and int(g.node_z[n]) != z:
                        n = 0  # P bridges this slice: F fills the gap
                    if n:
                        on = _overlap_count(g, n, p)
                        before = on / (g.area[n] + g.area[p] - on)
                        after = (on + c) / (g.area[n] + g.area[f] + g.area[p] - on - c)
                        if after < before:
                            continue
                        gain = after - before
                    else:
                        gain = c / (g.area[f] + g.area[p] - c)
                    if gain >= best.get(f, (-1.0, 0))[0]:
                        best[f] = (gain, p, n, zn)
        for f, (_, p, n, zn) in best.items():
            if abs(zn - z) > 1 and (g.nxt[f] or g.prv[f] or (g.prv[p] if zn > z else g.nxt[p])):
                continue  # taken meanwhile by another fragment of this slice
            if abs(zn - z) > 1:
                new_gaps.append((f, p) if zn > z else (p, f))
            if n:
                g.alias[f] = n
            elif zn > z:  # F becomes the node above P
                old = g.prv[p]
                g.prv[p], g.nxt[f] = f, p
                if old:
                    g.nxt[old], g.prv[f] = f, old
            else:
                old = g.nxt[p]
                g.nxt[p], g.prv[f] = f, p
                if old:
                    g.prv[old], g.nxt[f] = f, old
    return new_gaps


def _overlap_count(g: _Graph, a: int, b: int) -> int:
    za, zb = int(g.node_z[a]), int(g.node_z[b])
    if za > zb:
        a, b, za, zb = b, a, zb, za
    ia, ib, cnt = g.overlap(za, zb)
    sel = (ia == a) & (ib == b)
    return int(cnt[sel].sum())


def _interpolate_gaps(g: _Graph, gaps, out: np.ndarray, lut: np.ndarray,
                      sampling: tuple[float, float]) -> None:
    """Fill the slices a bridged object skips by interpolating its signed distance."""
    for u, v in gaps:
        if g.nxt[u] != v:
            continue
        z0, z1 = int(g.node_z[u]), int(g.node_z[v])
        mu, mv = g.nodes[z0] == u, g.nodes[z1] == v
        box = _bbox_of(mu | mv, pad=2)
        su = _signed_distance(mu[box], sampling)
        sv = _signed_distance(mv[box], sampling)
        label = lut[u]
        for z in range(z0 + 1, z1):
            w = (z - z0) / (z1 - z0)
            fill = ((1 - w) * su + w * sv) <= 0
            sub = out[z][box]
            sub[fill & (sub == 0)] = label


def _signed_distance(mask: np.ndarray, sampling) -> np.ndarray:
    """Negative inside, positive outside (distances to the nearest pixel of the other side)."""
    return (ndi.distance_transform_edt(~mask, sampling=sampling)
            - ndi.distance_transform_edt(mask, sampling=sampling))


def _split_waists(g: _Graph, ratio: float) -> None:
    """Cut objects whose area along z has a waist: two stacked objects linked cap to cap.

    Nuclei and cells are roughly convex, so the area of their sections rises and falls once;
    a minimum below ``ratio`` of the maxima on both sides separates two objects. The cut
    falls on the weaker (lower IoU) of the minimum's two links.
    """
    area = g.area.astype(float).copy()
    for f in np.flatnonzero(g.alias):
        area[g.alias[f]] += g.area[f]
    heads = np.flatnonzero((g.prv == 0) & (g.nxt != 0) & (g.alias == 0))
    for h in heads[heads > 0]:
        chain = [int(h)]
        while g.nxt[chain[-1]] and len(chain) <= len(g.area):
            chain.append(int(g.nxt[chain[-1]]))
        if len(chain) < 3:
            continue
        links = np.array([_link_iou(g, a, b) for a, b in zip(chain[:-1], chain[1:])])
        for cut in _split_profile(area[chain], ratio, links, concave=True):
            a, b = chain[cut - 1], chain[cut]
            g.nxt[a], g.prv[b] = 0, 0


def _absorb_short_objects(g: _Graph, lut: np.ndarray, containment: float,
                          max_slices: int = 3) -> None:
    """Give short pieces running alongside a larger object to that object (in ``lut``).

    Split fragments that also link to each other across slices form short objects of their
    own. An object of at most ``max_slices`` slices whose every section lies for at least
    ``containment`` on one other object H in the adjacent slices, where H also has a section
    in that slice and is at least twice as large, is part of H. A small object stacked above
    or below H is kept: H has no section in its slices.
    """
    Z = g.nodes.shape[0]
    live = np.flatnonzero((lut > 0) & (g.area > 0))
    if len(live) == 0:
        return
    obj_nodes = pd.Series(live).groupby(lut[live]).apply(list).to_dict()
    volume = pd.Series(g.area[live]).groupby(lut[live]).sum().to_dict()
    present = set(zip(lut[live].tolist(), g.node_z[live].tolist()))
    for lab, nodes in obj_nodes.items():
        zs = {int(g.node_z[n]) for n in nodes}
        if len(zs) > max_slices:
            continue
        host = None
        for z in zs:
            cover: dict[int, int] = {}
            mine = [n for n in nodes if g.node_z[n] == z]
            area = g.area[mine].sum()
            for zn in (z - 1, z + 1):
                if not 0 <= zn < Z:
                    continue
                ia, ib, cnt = g.overlap(min(z, zn), max(z, zn))
                f_side, p_side = (ia, ib) if zn > z else (ib, ia)
                sel = np.isin(f_side, mine)
                for p, c in zip(p_side[sel].tolist(), cnt[sel].tolist()):
                    h = int(lut[p])
                    if h and h != lab:
                        cover[h] = max(cover.get(h, 0), 0) + c
            # Count each host once per adjacent slice at most: use the better side.
            best = max(cover, key=cover.get, default=None)
            if best is None or cover[best] < containment * area or (best, z) not in present \
                    or (host is not None and best != host):
                host = None
                break
            host = best
        if host is not None and volume.get(host, 0) >= 2 * volume[lab]:
            lut[nodes] = host


def _link_iou(g: _Graph, a: int, b: int) -> float:
    c = _overlap_count(g, a, b)
    return c / (g.area[a] + g.area[b] - c)


def _chains_to_labels(g: _Graph) -> np.ndarray:
    """Object id of every node (lut), objects numbered 1..K in order of their first slice."""
    n = len(g.area)
    lut = np.zeros(n, np.int64)
    k = 0
    order = np.argsort(g.node_z[1:], kind="stable") + 1
    # First from chain heads; then nodes not reached from a head (defensive: inconsistent links)
    # become objects of their own.
    for heads_only in (True, False):
        for start in order:
            if (heads_only and g.prv[start]) or g.alias[start] or lut[start] or g.area[start] == 0:
                continue
            k += 1
            node = start
            while node and not lut[node]:
                lut[node] = k
                node = g.nxt[node]
    for f in np.flatnonzero(g.alias):
        lut[f] = lut[g.alias[f]]
    return lut


def _gap_slices(max_gap: int, max_gap_um: float | None, anisotropy) -> int:
    if max_gap_um is None:
        return max_gap
    return int(np.floor(max_gap_um / float(anisotropy[0]) + 1e-9))


def stitch_slices(labels_2d: np.ndarray, iou_threshold: float = 0.3, max_gap: int = 1,
                  anisotropy: Sequence[float] = (1.0, 1.0, 1.0), *,
                  max_gap_um: float | None = None, fill_gaps: bool = True,
                  fragment_containment: float = 0.5, merge_coverage: float = 0.5,
                  waist_ratio: float = 0.5, min_volume_vox: int = 0) -> np.ndarray:
    """Stitch per-slice 2D instances into 3D instance labels.

    Steps: (1) sections cut in two by the segmenter are re-joined when both pieces sit on the
    same instances above and below and their union matches those better; (2) instances of
    adjacent slices are linked one-to-one, maximising the total IoU (Hungarian algorithm);
    (3) object ends and starts up to ``max_gap`` slices apart are linked the same way; (4) an
    instance of a bridged slice that covers the bridged object is split between the objects it
    holds (under-segmentation); (5) unlinked fragments and small caps join the object they lie
    on; (6) objects whose section area has a deep waist are cut in two (stacked objects);
    (7) short pieces running alongside a larger object join it; (8) bridged slices are filled
    by interpolating the object's signed distance.

    Parameters
    ----------
    labels_2d : (Z, Y, X) int array
        Instance labels of each z-slice; ids need only be unique within a slice (0 = background).
    iou_threshold : float
        Smallest IoU of two instances in adjacent slices that belong to one object. Links are
        one-to-one and maximise the total IoU (Hungarian algorithm), slice pair by slice pair.
    max_gap : int
        Number of consecutive slices an object may be missing from (a dropped detection, or a
        slice where it was merged with a neighbour) and still be one object.
    anisotropy : (float, float, float)
        Voxel size ``(z, y, x)`` (µm). The in-plane sizes scale the distances used when
        splitting a merged instance and interpolating a missing slice; the z size converts
        ``max_gap_um``.
    max_gap_um : float, optional
        Bridged gap in micrometres; overrides ``max_gap``.
    fill_gaps : bool
        Fill a bridged slice with the object's shape interpolated between its neighbours
        (signed-distance interpolation), only where that slice is background.
    fragment_containment : float
        An unlinked single-slice instance that lies for at least this fraction on an object of
        an adjacent slice is part of that object (a split fragment, or a cap too small to reach
        the IoU threshold).
    merge_coverage : float
        An instance in a bridged slice covering at least this fraction of the bridged object's
        instances above and below is split between the objects it covers.
    waist_ratio : float
        An object whose section area along z dips below this fraction of the maxima on both
        sides is cut there into two stacked objects (0 disables).
    min_volume_vox : int
        Objects with fewer voxels are removed.

    Returns
    -------
    (Z, Y, X) uint32 array of 3D instance labels, numbered 1..K.
    """
    labels_2d = np.asarray(labels_2d)
    out_shape = labels_2d.shape
    g = _build_graph(labels_2d)
    if len(g.area) <= 1:
        return np.zeros(out_shape, np.uint32)
    sampling = (float(anisotropy[1]), float(anisotropy[2]))
    gap = _gap_slices(max_gap, max_gap_um, anisotropy)
    # Pieces of a split section overlap a growing or shrinking neighbour less: half the bar.
    _join_split_instances(g, fragment_containment / 2)
    _link_adjacent(g, iou_threshold)
    gaps = _link_gaps(g, iou_threshold, gap) if gap > 0 else []
    resolved = _resolve_merges(g, gaps, merge_coverage, sampling) if gaps else set()
    gaps += _absorb_fragments(g, fragment_containment, gap)
    if waist_ratio > 0:
        _split_waists(g, waist_ratio)
    lut = _chains_to_labels(g)
    _absorb_short_objects(g, lut, fragment_containment)
    lut = lut.astype(np.uint32)
    out = lut[g.nodes]
    if fill_gaps and gaps:
        _interpolate_gaps(g, [uv for uv in gaps if uv not in resolved], out, lut, sampling)
    if min_volume_vox > 0:
        vol = np.bincount(out.ravel())
        small = np.flatnonzero(vol < min_volume_vox)
        out[np.isin(out, small[small > 0])] = 0
    return _sequential_fast(out, lut)


def _sequential_fast(out: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Renumber 1..K only if absorbed or removed objects left gaps (skips a full pass)."""
    used = np.unique(lut[lut > 0])
    if len(used) == 0 or (used[-1] == len(used) and out.max() == len(used)):
        return out
    return _sequential(out)


def _sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 1..K keeping their order (no gaps)."""
    m = int(labels.max()) if labels.size else 0
    if m == 0:
        return labels.astype(np.uint32)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=m + 1))
    lut = np.zeros(m + 1, np.uint32)
    lut[present[present > 0]] = np.arange(1, (present > 0).sum() + 1, dtype=np.uint32)
    return lut[labels]


def stitch_slices_cellpose(labels_2d: np.ndarray, stitch_threshold: float = 0.25) -> np.ndarray:
    """Cellpose's ``stitch3D``: the baseline of the benchmarks.

    Slice by slice from the top, each instance takes the label of the previous (already
    stitched) slice's instance it overlaps best, if that IoU is at least ``stitch_threshold``
    and it is also that instance's best match; otherwise it starts a new object. No gaps are
    bridged and splits or merges are not resolved. Re-implemented after
    ``cellpose.utils.stitch3D`` (Stringer et al. 2021, BSD-3-Clause) to avoid the dependency.
    """
    masks, _, offsets, _ = _relabel_slices(np.asarray(labels_2d))
    masks = masks.astype(np.int64)
    # Cellpose numbers each slice 1..n; start from that.
    for z in range(masks.shape[0]):
        masks[z] = np.where(masks[z] > 0, masks[z] - offsets[z], 0)
    mmax = int(masks[0].max()) if masks.size else 0
    for i in range(masks.shape[0] - 1):
        n_new, n_old = int(masks[i + 1].max()), int(masks[i].max())
        if n_new == 0:
            continue
        if n_old == 0:
            masks[i + 1] = np.where(masks[i + 1] > 0, masks[i + 1] + mmax, 0)
            mmax += n_new
            continue
        ia, ib, cnt = _pair_overlaps(masks[i + 1], masks[i])
        area_new = np.bincount(masks[i + 1].ravel(), minlength=n_new + 1)
        area_old = np.bincount(masks[i].ravel(), minlength=mmax + 1)
        iou = np.zeros((n_new + 1, mmax + 1))
        iou[ia, ib] = cnt / (area_new[ia] + area_old[ib] - cnt)
        iou = iou[1:, 1:]
        iou[iou < stitch_threshold] = 0.0
        iou[iou < iou.max(axis=0)] = 0.0
        istitch = iou.argmax(axis=1) + 1
        ino = np.flatnonzero(iou.max(axis=1) == 0.0)
        istitch[ino] = np.arange(mmax + 1, mmax + len(ino) + 1)
        mmax += len(ino)
        masks[i + 1] = np.append(0, istitch)[masks[i + 1]]
    return _sequential(masks)


# --------------------------------------------------------------------------- compartments


def assign_nuclei(cells: np.ndarray, nuclei: np.ndarray, min_overlap: float = 0.5) -> pd.DataFrame:
    """The cell that contains each nucleus.

    Parameters
    ----------
    cells, nuclei : (Z, Y, X) int arrays
        3D instance labels.
    min_overlap : float
        Fraction of the nucleus that must lie in one cell; a nucleus mostly outside every cell
        gets ``cell_id`` 0. A cell may hold several nuclei (a dividing cell).

    Returns
    -------
    DataFrame with columns ``nucleus_id, cell_id, overlap`` (fraction of the nucleus in the cell).
    """
    cells, nuclei = np.asarray(cells), np.asarray(nuclei)
    if cells.shape != nuclei.shape:
        raise ValueError(f"cells {cells.shape} and nuclei {nuclei.shape} differ in shape")
    m = int(nuclei.max()) if nuclei.size else 0
    size = np.bincount(nuclei.ravel()) if m <= 4 * nuclei.size else None
    ids = np.flatnonzero(size) if size is not None else np.unique(nuclei)
    ids = ids[ids > 0]
    if len(ids) == 0:
        return pd.DataFrame({"nucleus_id": pd.Series([], dtype="int64"),
                             "cell_id": pd.Series([], dtype="int64"),
                             "overlap": pd.Series([], dtype="float64")})
    pn, pc, counts = _pair_overlaps(nuclei, cells)
    df = pd.DataFrame({"nucleus_id": pn, "cell_id": pc, "count": counts})
    best = df[df.cell_id > 0].sort_values("count", ascending=False).drop_duplicates("nucleus_id")
    best = best.set_index("nucleus_id").reindex(ids)
    cell = best["cell_id"].fillna(0).astype(np.int64).to_numpy().copy()
    if size is None:
        size = pd.Series(nuclei[nuclei > 0]).value_counts().reindex(ids).to_numpy()
    else:
        size = size[ids]
    frac = best["count"].fillna(0).to_numpy() / size
    cell[frac < min_overlap] = 0
    return pd.DataFrame({"nucleus_id": ids.astype(np.int64), "cell_id": cell, "overlap": frac})


def semantic_map(cells: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """0 background, 1 cytoplasm (cell minus nucleus), 2 nucleus (uint8).

    Nucleus voxels are 2 even where the cell mask misses them: the nucleus is segmented on its
    own stain, which is the better evidence there.
    """
    cells, nuclei = np.asarray(cells), np.asarray(nuclei)
    if cells.shape != nuclei.shape:
        raise ValueError(f"cells {cells.shape} and nuclei {nuclei.shape} differ in shape")
    out = (cells > 0).astype(np.uint8)
    out[nuclei > 0] = 2
    return out


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


def _split_profile(values: np.ndarray, ratio: float, links: np.ndarray | None = None,
                   concave: bool = False) -> list[int]:
    """Cut points of a profile along z at minima below ``ratio`` x both neighbouring maxima.

    Returns indices ``i`` where a new part starts. With ``concave`` (section areas of convex
    objects), the minimum joins the side that keeps both parts' profiles concave at the cut;
    otherwise (or on a tie) the side it is linked to more strongly (``links[k]`` between
    members ``k`` and ``k + 1``, e.g. IoU), else the side whose value is closer to it.
    """
    values = np.asarray(values, float)
    cuts = []
    start = 0
    n = len(values)
    i = 1
    while i < n - 1:
        v = values[i]
        if (v < values[i - 1] and v <= values[i + 1]
                and v < ratio * min(values[start:i].max(), values[i + 1:].max())):
            bend = _concavity_violation(values, start, i)
            if concave and bend[0] != bend[1]:
                to_left = bend[0] < bend[1]
            elif links is not None:
                to_left = links[i - 1] >= links[i]
            else:
                to_left = abs(v - values[i - 1]) <= abs(v - values[i + 1])
            cut = i + 1 if to_left else i
            cuts.append(cut)
            start = cut
            i = cut + 1
            continue
        i += 1
    return cuts


def _concavity_violation(values: np.ndarray, start: int, i: int) -> tuple[float, float]:
    """How much cutting after / before the minimum ``i`` makes the parts' ends convex.

    The section area of a convex object is a concave function of z; a positive second
    difference at a part's end (its last or first three values) is a violation.
    """
    def viol(a, b, c):
        return max(0.0, a - 2 * b + c)

    n = len(values)
    v = values
    left = 0.0  # minimum with the left part: left ends ... i-2, i-1, i; right starts i+1..
    if i - 2 >= start:
        left += viol(v[i - 2], v[i - 1], v[i])
    if i + 3 < n:
        left += viol(v[i + 1], v[i + 2], v[i + 3])
    right = 0.0  # minimum with the right part
    if i - 3 >= start:
        right += viol(v[i - 3], v[i - 2], v[i - 1])
    if i + 2 < n:
        right += viol(v[i], v[i + 1], v[i + 2])
    return left, right


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


def _nucleus_surface_distance(points_px: np.ndarray, nuclei: np.ndarray,
                              voxel_size) -> np.ndarray:
    """Signed distance (µm) of points to the nearest nucleus surface: < 0 inside a nucleus.

    The same definition as a Euclidean distance transform (``cellspot.report.coloc``): outside,
    the distance to the nearest nucleus voxel; inside, minus the distance to the nearest
    background voxel; measured from the sub-pixel position to voxel centres. NaN without nuclei.
    """
    out = np.full(len(points_px), np.nan)
    if len(points_px) == 0 or not nuclei.any():
        return out
    vs = np.asarray(voxel_size, float)
    fg = nuclei > 0
    edge = np.zeros_like(fg)  # voxels with a 6-neighbour on the other side of the surface
    for lo, hi in (((slice(1, None),), (slice(None, -1),)),
                   ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                   ((Ellipsis, slice(1, None)), (Ellipsis, slice(None, -1)))):
        diff = fg[lo] != fg[hi]  # plain slicing keeps memory access contiguous
        edge[lo] |= diff
        edge[hi] |= diff
    pts = np.asarray(points_px, float)
    inside = fg[tuple(np.clip(np.round(pts).astype(int), 0, np.array(fg.shape) - 1).T)]
    for sel, surface, sign in ((~inside, edge & fg, 1.0), (inside, edge & ~fg, -1.0)):
        if sel.any():
            vox = np.argwhere(surface)
            if len(vox):
                out[sel] = sign * cKDTree(vox * vs).query(pts[sel] * vs)[0]
    return out


def _empty_spots() -> pd.DataFrame:
    dtypes = {"label": "int64", "z": "float64", "y": "float64", "x": "float64",
              "intensity": "float64", "peak": "float64", "score": "float64",
              "n_slices": "int64", "z_first": "int64", "z_last": "int64", "n_rna": "int64",
              "cell_id": "int64",
              "compartment": "object", "distance_to_nucleus_um": "float64"}
    return pd.DataFrame({k: pd.Series([], dtype=v) for k, v in dtypes.items()})


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
        cuts = _split_profile(profile[chain], s.valley_ratio) if len(chain) > 2 else []
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
        return _empty_spots()
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
    :mod:`cellspot.rna_counts`; one each without an image or with ``molecules: spots``)."""
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
            dist = _nucleus_surface_distance(pts, nuclei, voxel_size)
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


# --------------------------------------------------------------------------- measurements


def _empty_objects(channel_names) -> pd.DataFrame:
    cols = {"label": "int64", "z": "float64", "y": "float64", "x": "float64",
            "volume_vox": "int64", "volume_um3": "float64"}
    cols.update({f"bbox_{a}{e}": "int64" for e in "01" for a in "zyx"})
    cols.update({f"mean_{c}": "float64" for c in channel_names})
    return pd.DataFrame({k: pd.Series([], dtype=v) for k, v in cols.items()})


def object_table(labels: np.ndarray, intensity: np.ndarray | None = None,
                 voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                 channel_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Centroid, volume, bounding box and mean intensities of every object of a 3D label image.

    Parameters
    ----------
    labels : (Z, Y, X) int array
    intensity : (C, Z, Y, X) or (Z, Y, X) array, optional
    voxel_size : (z, y, x) µm
    channel_names : names of the C channels (``mean_<name>`` columns); default ``c0, c1, ...``

    Returns
    -------
    DataFrame with ``label, z, y, x`` (centroid, px), ``volume_vox, volume_um3``,
    ``bbox_z0, bbox_y0, bbox_x0, bbox_z1, bbox_y1, bbox_x1`` (half-open) and ``mean_<channel>``.
    """
    labels = np.asarray(labels)
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.ndim == 3:
            intensity = intensity[None]
        if intensity.shape[1:] != labels.shape:
            raise ValueError(f"intensity {intensity.shape} does not match labels {labels.shape}")
        names = list(channel_names) if channel_names is not None else [
            f"c{i}" for i in range(intensity.shape[0])]
    else:
        names = []
    rows = []
    voxel_um3 = float(np.prod(voxel_size))
    for i, slc in enumerate(ndi.find_objects(labels)):
        if slc is None:
            continue
        lab = i + 1
        mask = labels[slc] == lab
        idx = np.nonzero(mask)
        nvox = len(idx[0])
        row = {"label": lab}
        for a, ix, s in zip("zyx", idx, slc):
            row[a] = ix.mean() + s.start
        row["volume_vox"] = nvox
        row["volume_um3"] = nvox * voxel_um3
        for a, s in zip("zyx", slc):
            row[f"bbox_{a}0"] = s.start
        for a, s in zip("zyx", slc):
            row[f"bbox_{a}1"] = s.stop
        for c, name in enumerate(names):
            row[f"mean_{name}"] = float(intensity[c][slc][mask].mean())
        rows.append(row)
    if not rows:
        return _empty_objects(names)
    return pd.DataFrame(rows)


def _spot_object_columns(spots: pd.DataFrame, blobs: np.ndarray, intensity, voxel_size,
                         names) -> pd.DataFrame:
    """Volume, bbox and mean intensities of the spot blobs, joined onto the spot table."""
    idx = np.flatnonzero(blobs)
    lab = blobs.ravel()[idx]
    zz, yy, xx = np.unravel_index(idx, blobs.shape)
    d = pd.DataFrame({"label": lab, "z_": zz, "y_": yy, "x_": xx})
    for c, name in enumerate(names):
        d[f"mean_{name}"] = intensity[c].ravel()[idx]
    agg = {"volume_vox": ("z_", "size")}
    for a in "zyx":
        agg[f"bbox_{a}0"] = (f"{a}_", "min")
    for a in "zyx":
        agg[f"bbox_{a}1"] = (f"{a}_", "max")
    for name in names:
        agg[f"mean_{name}"] = (f"mean_{name}", "mean")
    stats = d.groupby("label").agg(**agg)
    for a in "zyx":
        stats[f"bbox_{a}1"] += 1
    stats["volume_um3"] = stats["volume_vox"] * float(np.prod(voxel_size))
    out = spots.join(stats, on="label")
    out["volume_vox"] = out["volume_vox"].fillna(0).astype(np.int64)
    for a in "zyx":
        for e in "01":
            out[f"bbox_{a}{e}"] = out[f"bbox_{a}{e}"].fillna(-1).astype(np.int64)
    return out


# --------------------------------------------------------------------------- one timepoint


@dataclass
class MergedTimepoint:
    """3D results of one timepoint."""

    cells: np.ndarray       # (Z, Y, X) uint32
    nuclei: np.ndarray      # (Z, Y, X) uint32
    semantic: np.ndarray    # (Z, Y, X) uint8
    spots: np.ndarray       # (Z, Y, X) uint32
    cell_table: pd.DataFrame
    nucleus_table: pd.DataFrame
    spot_table: pd.DataFrame


def merge_timepoint(cells_2d: np.ndarray | None, nuclei_2d: np.ndarray | None,
                    detections: pd.DataFrame | None, image: np.ndarray | None,
                    meta: ImageMeta, settings: MergeSettings | None = None,
                    shape: Sequence[int] | None = None) -> MergedTimepoint:
    """Stitch, relate and measure everything of one timepoint.

    ``image`` is the (C, Z, Y, X) preprocessed image (for mean intensities and spot
    localisation). Missing classes (None) give empty labels; ``shape`` is needed when all are
    missing and there is no image.
    """
    s = settings or MergeSettings()
    if shape is None:
        for a in (cells_2d, nuclei_2d):
            if a is not None:
                shape = a.shape
                break
        else:
            if image is None:
                raise ValueError("merge_timepoint needs labels, an image or a shape")
            shape = image.shape[1:]
    shape = tuple(int(v) for v in shape)
    vs = meta.voxel_size
    kw = dict(iou_threshold=s.iou_threshold, max_gap=s.max_gap, anisotropy=vs,
              max_gap_um=s.max_gap_um, fill_gaps=s.fill_gaps,
              fragment_containment=s.fragment_containment, merge_coverage=s.merge_coverage,
              waist_ratio=s.waist_ratio, min_volume_vox=s.min_volume_vox)
    cells = stitch_slices(cells_2d, **kw) if cells_2d is not None else np.zeros(shape, np.uint32)
    nuclei = (stitch_slices(nuclei_2d, **kw) if nuclei_2d is not None
              else np.zeros(shape, np.uint32))
    for name, a in (("cells", cells), ("nuclei", nuclei)):
        if a.shape != shape:
            raise ValueError(f"{name} labels {a.shape} do not match the image {shape}")
    names = list(meta.channel_names) if image is not None else []
    parents = assign_nuclei(cells, nuclei, s.nucleus_min_overlap)
    if s.split_multinucleate and len(parents):
        cells, n_joined = absorb_anucleate_fragments(cells, parents)
        cells, n_split = split_multinucleate(cells, nuclei, parents, vs)
        if n_joined or n_split:
            cells = _sequential(cells)
            parents = assign_nuclei(cells, nuclei, s.nucleus_min_overlap)
    sem = semantic_map(cells, nuclei)
    ntab = object_table(nuclei, image, vs, names)
    ntab["cell_id"] = parents.set_index("nucleus_id")["cell_id"].reindex(ntab["label"]) \
        .fillna(0).to_numpy(np.int64) if len(ntab) else pd.Series([], dtype="int64")
    ctab = object_table(cells, image, vs, names)
    per_cell = parents[parents.cell_id > 0].groupby("cell_id").size()
    ctab["n_nuclei"] = per_cell.reindex(ctab["label"]).fillna(0).to_numpy(np.int64) \
        if len(ctab) else pd.Series([], dtype="int64")
    spot_img = None
    if image is not None and detections is not None and len(detections):
        spot_img = image[meta.channel_index(s.spots.channel)]
    members = link_spot_detections(detections, spot_img, vs, s.spots)
    spots = merge_spots(detections, spot_img, vs, cells=cells, nuclei=nuclei,
                        settings=s.spots, members=members, parents=parents)
    spots = count_molecules(spots, spot_img, s.spots)
    blobs = spot_labels(members, detections, shape)
    if len(spots):
        stab = _spot_object_columns(spots, blobs, image if image is not None else np.zeros(
            (0,) + shape), vs, names)
    else:
        stab = pd.concat([_empty_spots(), _empty_objects(names).drop(
            columns=["label", "z", "y", "x"])], axis=1)
    return MergedTimepoint(cells, nuclei, sem, blobs, ctab, ntab, _object_columns_first(stab))


def _object_columns_first(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in the order of :func:`object_table`, then the rest."""
    first = ["label", "z", "y", "x", "volume_vox", "volume_um3"] + [
        f"bbox_{a}{e}" for e in "01" for a in "zyx"] + [c for c in df if c.startswith("mean_")]
    return df[[c for c in first if c in df] + [c for c in df if c not in first]]


# --------------------------------------------------------------------------- test input


def slice_labels(labels3d: np.ndarray, seed: int | None = None, p_drop: float = 0.0,
                 p_split: float = 0.0, p_merge: float = 0.0,
                 min_split_area: int = 20) -> np.ndarray:
    """Turn 3D instance labels into the per-slice 2D labels a 2D segmenter produces.

    Each slice's objects become 2D instances (connected components of each object's section)
    with ids shuffled per slice. Optional noise, per 2D instance: dropped (``p_drop``), cut in
    two along a random line through its centroid (``p_split``, instances of at least
    ``min_split_area`` pixels), merged with a touching instance (``p_merge``).
    """
    from skimage.measure import label as cc_label

    rng = np.random.default_rng(seed)
    labels3d = np.asarray(labels3d)
    out = np.zeros(labels3d.shape, np.int32)
    for z, sl in enumerate(labels3d):
        lab = cc_label(sl, background=0, connectivity=1).astype(np.int32)
        n = int(lab.max())
        if n == 0:
            continue
        if p_merge > 0:
            pairs = set()
            for a, b in ((lab[1:], lab[:-1]), (lab[:, 1:], lab[:, :-1])):
                touch = (a != b) & (a > 0) & (b > 0)
                pairs |= {tuple(sorted(p)) for p in zip(a[touch].tolist(), b[touch].tolist())}
            taken = set()
            lut = np.arange(n + 1)
            for a, b in sorted(pairs):
                if a in taken or b in taken or rng.random() >= p_merge:
                    continue
                lut[b] = a
                taken |= {a, b}
            lab = lut[lab]
        if p_split > 0:
            nxt = int(lab.max()) + 1
            for i, slc in enumerate(ndi.find_objects(lab)):
                if slc is None or rng.random() >= p_split:
                    continue
                m = lab[slc] == i + 1
                if m.sum() < min_split_area:
                    continue
                yy, xx = np.nonzero(m)
                theta = rng.uniform(0, np.pi)
                side = (yy - yy.mean()) * np.cos(theta) + (xx - xx.mean()) * np.sin(theta) > 0
                sub = lab[slc]
                sub[yy[side], xx[side]] = nxt
                nxt += 1
        if p_drop > 0:
            ids = np.unique(lab)
            ids = ids[ids > 0]
            drop = ids[rng.random(len(ids)) < p_drop]
            lab[np.isin(lab, drop)] = 0
        ids = np.unique(lab)
        ids = ids[ids > 0]
        lut = np.zeros(int(lab.max()) + 1, np.int32)
        lut[ids] = rng.permutation(len(ids)) + 1
        out[z] = lut[lab]
    return out


# --------------------------------------------------------------------------- segmentation I/O


class SegmentationBlocks:
    """The per-slice segmentation of a batch, block stores of the segment stage, by timepoint.

    Each store is ``results/{batch}/segment/{model}/tAAAA-BBBB.zarr`` (layout in
    :mod:`cellspot.segment_store`): arrays ``cell``/``nucleus`` (model "cells") or ``spots``
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
    YAML config (``--config``), the spot channel from its ``channels: rna:``.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cellspot.merge", description=main.__doc__)
    ap.add_argument("segmentation", nargs="+", help="block stores of the segment stage")
    ap.add_argument("--image", required=True, help="preprocessed.ome.zarr")
    ap.add_argument("--out", required=True, help="batch results folder")
    ap.add_argument("--config", help="config YAML with a merge: section")
    args = ap.parse_args(argv)
    section, channel = {}, None
    if args.config:
        import yaml

        cfg = yaml.safe_load(Path(args.config).read_text()) or {}
        section = cfg.get("merge") or {}
        channel = (cfg.get("channels") or {}).get("rna")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(args.out)
    run_merge(args.segmentation, args.image,
              {n: out / "labels" / f"{n}.zarr" for n in LABEL_NAMES},
              {n: out / "tables" / f"{n}.parquet" for n in TABLE_NAMES},
              MergeSettings.from_config(section, spot_channel=channel))


if __name__ == "__main__":
    main()
