"""Per-slice 2D instances -> 3D objects (:func:`stitch_slices`).

One-to-one links by the Hungarian algorithm on IoU, bridging of a missing slice (filled by
shape interpolation), resolution of over-segmented (split) and under-segmented (merged)
sections, small caps kept with their object, and stacked objects cut apart where their
section area has a waist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from ..distance import signed_distance
from .label_ops import pair_overlaps, relabel_slices, sequential_labels
from .profile import split_profile

# --------------------------------------------------------------------------- 2D -> graph


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
    _buffers: dict = field(default_factory=dict)  # add_node's growth room

    def overlap(self, z0: int, z1: int):
        key = (z0, z1)
        if key not in self.overlaps:
            self.overlaps[key] = pair_overlaps(self.nodes[z0], self.nodes[z1])
        return self.overlaps[key]

    def iou(self, ia, ib, counts):
        return counts / (self.area[ia] + self.area[ib] - counts)

    def add_node(self, z: int, area: int) -> int:
        """A new node in slice z (a piece of a split instance); returns its id.

        The per-node arrays are views of buffers that grow by doubling, so adding many nodes
        costs amortised O(1) each (``np.append`` per node was quadratic).
        """
        n = len(self.area)
        values = {"node_z": z, "area": area, "nxt": 0, "prv": 0, "alias": 0}
        for name, value in values.items():
            buf = self._buffers.get(name)
            if buf is None or len(buf) <= n:
                buf = np.zeros(max(2 * n, 16), getattr(self, name).dtype)
                buf[:n] = getattr(self, name)
                self._buffers[name] = buf
            buf[n] = value
            setattr(self, name, buf[:n + 1])
        return n


def _build_graph(stack: np.ndarray) -> _Graph:
    nodes, node_z, _, area = relabel_slices(stack)
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
        su = signed_distance(mu[box], sampling)
        sv = signed_distance(mv[box], sampling)
        label = lut[u]
        for z in range(z0 + 1, z1):
            w = (z - z0) / (z1 - z0)
            fill = ((1 - w) * su + w * sv) <= 0
            sub = out[z][box]
            sub[fill & (sub == 0)] = label


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
        for cut in split_profile(area[chain], ratio, links, concave=True):
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
    return sequential_labels(out)


