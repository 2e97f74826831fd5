"""Scale of the merge stage: one timepoint with 500 cells and 20,000 RNA spots on CPU.

Builds a monolayer of 500 dome-shaped cells with nuclei in a (32, 1024, 1024) volume, slices it
into per-slice 2D labels as a segmenter would, renders 20,000 diffraction-limited spots and their
per-slice detections, then times every step of :func:`cellspot.merge.merge_timepoint` and the
Cellpose-style stitching baseline measured in the same run.

    .venv/bin/python benchmarks/merge_scale.py [--cells 500] [--spots 20000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from cellspot import merge
from cellspot.omezarr import ImageMeta
from cellspot_bench.baselines import stitch_slices_cellpose
from cellspot_bench.corrupt import slice_labels


def monolayer(shape, n_cells, rng):
    """3D cells and nuclei: a Voronoi monolayer of domes (ids 1..n)."""
    Z, Y, X = shape
    side = int(np.ceil(np.sqrt(n_cells)))
    step = min(Y, X) / side
    gy, gx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    pts = np.stack([gy.ravel(), gx.ravel()], 1)[:n_cells] * step + step / 2
    pts += rng.uniform(-0.25, 0.25, pts.shape) * step
    seeds = np.zeros((Y, X), np.int32)
    seeds[pts[:, 0].astype(int), pts[:, 1].astype(int)] = np.arange(1, n_cells + 1)
    dist, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    owner = seeds[iy, ix]
    r_cell = rng.uniform(0.45, 0.6, n_cells + 1) * step
    r_nuc = r_cell * rng.uniform(0.45, 0.55, n_cells + 1)
    height = rng.uniform(0.6, 0.9, n_cells + 1) * Z
    z0 = 2
    cells = np.zeros(shape, np.uint32)
    nuclei = np.zeros(shape, np.uint32)
    zc_nuc = z0 + 0.4 * height
    for z in range(Z):
        dz = (z - z0) / height[owner]  # 0 at the bottom, 1 at the top of the dome
        rad = r_cell[owner] * np.sqrt(np.clip(1 - dz ** 2, 0, None)) * (dz >= 0)
        cells[z] = np.where(dist < rad, owner, 0)
        dn = (z - zc_nuc[owner]) / (0.3 * height[owner])
        rad_n = r_nuc[owner] * np.sqrt(np.clip(1 - dn ** 2, 0, None))
        nuclei[z] = np.where((dist < rad_n) & (cells[z] > 0), owner, 0)
    return cells, nuclei


def spots_in(cells, n_spots, rng):
    idx = np.flatnonzero(cells)
    pick = idx[rng.integers(0, len(idx), n_spots)]
    return np.stack(np.unravel_index(pick, cells.shape), 1) + rng.uniform(-0.5, 0.5, (n_spots, 3))


def render(shape, pos, sigma=(1.0, 1.0, 1.0), amp=300.0, bg=20.0, rng=None):
    img = np.full(shape, bg, np.float32)
    r = np.ceil(3 * np.array(sigma)).astype(int)
    oz, oy, ox = np.meshgrid(*(np.arange(-k, k + 1) for k in r), indexing="ij")
    off = np.stack([oz.ravel(), oy.ravel(), ox.ravel()], 1)
    c = np.round(pos).astype(int)
    for chunk in np.array_split(np.arange(len(pos)), max(1, len(pos) // 2000)):
        v = c[chunk, None, :] + off[None]
        d = (v - pos[chunk, None, :]) / np.array(sigma)
        w = amp * np.exp(-0.5 * (d ** 2).sum(-1))
        ok = np.all((v >= 0) & (v < np.array(shape)), -1)
        np.add.at(img, tuple(v[ok].T), w[ok].astype(np.float32))
    if rng is not None:
        img += rng.normal(0, 3, shape).astype(np.float32)
    return img


def detections_of(pos, rng):
    """Per-slice detections: each spot in the slices within 1.5 sigma of its centre."""
    rows = []
    for dz in (-1, 0, 1):
        z = np.round(pos[:, 0]).astype(int) + dz
        keep = np.abs(z - pos[:, 0]) < 1.5
        rows.append(pd.DataFrame({"z": z[keep],
                                  "y": pos[keep, 1] + rng.normal(0, 0.15, keep.sum()),
                                  "x": pos[keep, 2] + rng.normal(0, 0.15, keep.sum()),
                                  "score": rng.uniform(0.5, 1, keep.sum()),
                                  "area": np.full(keep.sum(), 9.0)}))
    return pd.concat(rows, ignore_index=True)


def timed(fn, *a, repeat=1, **k):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=500)
    ap.add_argument("--spots", type=int, default=20000)
    ap.add_argument("--shape", type=int, nargs=3, default=(32, 1024, 1024))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    shape = tuple(args.shape)
    t0 = time.perf_counter()
    cells3d, nuclei3d = monolayer(shape, args.cells, rng)
    pos = spots_in(cells3d, args.spots, rng)
    rna = render(shape, pos, rng=rng)
    image = np.stack([(nuclei3d > 0).astype(np.float32), (cells3d > 0).astype(np.float32), rna])
    cells2d = slice_labels(cells3d, seed=1)
    nuclei2d = slice_labels(nuclei3d, seed=2)
    det = detections_of(pos, rng)
    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.2, 0.2), name="scale")
    print(f"input built in {time.perf_counter() - t0:.1f} s: shape {shape}, "
          f"{len(np.unique(cells3d)) - 1} cells, {len(pos)} spots, {len(det)} detections, "
          f"{int((cells2d.reshape(shape[0], -1).max(1)).sum())} 2D cell instances")

    r = args.repeat
    s = merge.MergeSettings()
    kw = dict(iou_threshold=s.iou_threshold, anisotropy=meta.voxel_size)
    rows = []
    t_cells, c3 = timed(merge.stitch_slices, cells2d, repeat=r, **kw)
    rows.append(("stitch cells (ours)", t_cells))
    t_cp, c3_cp = timed(stitch_slices_cellpose, cells2d, repeat=r)
    rows.append(("stitch cells (Cellpose baseline)", t_cp))
    t_nuc, n3 = timed(merge.stitch_slices, nuclei2d, repeat=r, **kw)
    rows.append(("stitch nuclei (ours)", t_nuc))
    rows.append(("assign nuclei", timed(merge.assign_nuclei, c3, n3, repeat=r)[0]))
    rows.append(("semantic map", timed(merge.semantic_map, c3, n3, repeat=r)[0]))
    t_sp, sp = timed(merge.merge_spots, det, rna, meta.voxel_size, cells=c3, nuclei=n3,
                     repeat=r)
    rows.append(("merge spots (+ cell, compartment, distance)", t_sp))
    t_mol, counted = timed(merge.count_molecules, sp, rna, repeat=r)
    rows.append(("RNA molecules per spot (multi-emitter fit)", t_mol))
    rows.append(("object table cells", timed(merge.object_table, c3, image, meta.voxel_size,
                                             meta.channel_names, repeat=r)[0]))
    t_all, res = timed(merge.merge_timepoint, cells2d, nuclei2d, det, image, meta, s, repeat=r)
    rows.append(("merge_timepoint (everything)", t_all))

    print(f"\n{'step':48s} {'seconds':>8s}")
    for name, sec in rows:
        print(f"{name:48s} {sec:8.2f}")
    from cellspot_bench.metrics import match_points

    ti, pi = match_points(pos, sp[["z", "y", "x"]].to_numpy(), 1.0, scale=meta.voxel_size)
    print(f"\nresult: {len(res.cell_table)} cells (truth {args.cells}), "
          f"{len(res.nucleus_table)} nuclei, {len(res.spot_table)} spots "
          f"(truth {len(pos)}, {len(ti)} matched within 1 µm), "
          f"{int(counted['n_rna'].sum())} RNA molecules counted; Cellpose baseline "
          f"{int(c3_cp.max())} cells")
    print(f"whole timepoint: {t_all:.1f} s on CPU "
          f"({'meets' if t_all < 60 else 'misses'} 'seconds' (< 60 s))")


if __name__ == "__main__":
    main()
