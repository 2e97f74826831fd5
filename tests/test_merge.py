"""Tests of the merge stage: 2D slices -> 3D objects, compartments, 3D spots, tables, outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from cellspot import merge
from cellspot.omezarr import ImageMeta, OmeZarrError, create_image, open_array, read_attrs
from cellspot_bench.baselines import stitch_slices_cellpose
from cellspot_bench.corrupt import slice_labels
from cellspot_bench.metrics import average_precision, iou_matrix
from conftest import SHARED_DATA

QCANET = SHARED_DATA / "nuclei3d_qcanet" / "instances_derived" / "8_cell_stage.tif"


def ellipsoids(shape, objects):
    """Label volume of ellipsoids ``(label, (cz, cy, cx), (rz, ry, rx))``."""
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    out = np.zeros(shape, np.uint16)
    for lab, c, r in objects:
        inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        out[inside <= 1] = lab
    return out


@pytest.fixture
def scene():
    """Four touching/stacked objects in a small volume: side by side and one above another."""
    return ellipsoids((20, 40, 60), [
        (1, (7, 12, 14), (5, 9, 10)),
        (2, (7, 12, 33), (5, 9, 9)),     # touches 1 in xy
        (3, (8, 30, 45), (5.5, 8, 10)),
        (4, (17, 30, 45), (3.4, 8, 10)),  # stacked under 3, caps in adjacent slices
    ])


def same_partition(truth, pred, min_iou=1.0):
    """Every truth object is one predicted object (IoU >= min_iou) and vice versa."""
    iou, t, p = iou_matrix(truth, pred)
    return len(t) == len(p) and iou.max(1).min() >= min_iou - 1e-9


def test_relabel_ids_only_unique_within_slice(scene):
    slices = slice_labels(scene, seed=0)
    assert slices.max() <= 4  # ids restart in every slice
    assert same_partition(scene, merge.stitch_slices(slices))


@pytest.mark.skipif(not QCANET.exists(), reason="real 3D nuclei data not present")
def test_stitch_real_nuclei_clean_exact():
    import tifffile

    truth = tifffile.imread(QCANET)
    out = merge.stitch_slices(slice_labels(truth, seed=1), anisotropy=(2.18, 1, 1))
    assert same_partition(truth, out)
    assert out.dtype == np.uint32 and out.max() == len(np.unique(truth)) - 1


def test_missing_slice_bridged_and_filled(scene):
    slices = slice_labels(scene, seed=0)
    z = 7
    lab1 = scene[z] == 1
    dropped = slices.copy()
    dropped[z][lab1] = 0
    out = merge.stitch_slices(dropped, max_gap=1)
    iou, t, p = iou_matrix(scene, out)
    assert len(p) == 4 and iou.max(1).min() > 0.97
    # The missing section is interpolated from its neighbours.
    obj = out[z][lab1]
    assert (obj == np.bincount(obj)[1:].argmax() + 1).mean() > 0.9
    # Without gap bridging (and in Cellpose's rule) the object breaks in two.
    assert merge.stitch_slices(dropped, max_gap=0).max() == 5
    assert stitch_slices_cellpose(dropped).max() >= 5


def test_split_instance_rejoined(scene):
    slices = slice_labels(scene, seed=0)
    for z in (5, 7):  # a middle slice, cut in halves across the object
        s = slices.copy()
        m = scene[z] == 3
        yy, xx = np.nonzero(m)
        s[z][yy[xx < 45], xx[xx < 45]] = 50
        out = merge.stitch_slices(s)
        assert same_partition(scene, out), z
    # The same cut in two consecutive slices: the pieces link to each other, then rejoin.
    s = slices.copy()
    for z in (6, 7):
        m = scene[z] == 3
        yy, xx = np.nonzero(m)
        s[z][yy[xx < 42], xx[xx < 42]] = 50
    assert same_partition(scene, merge.stitch_slices(s))
    assert stitch_slices_cellpose(s).max() > 4


def test_merged_instance_split_between_objects(scene):
    slices = slice_labels(scene, seed=0)
    z = 7
    s = slices.copy()
    s[z][(scene[z] == 1) | (scene[z] == 2)] = 99  # the segmenter joined 1 and 2 in this slice
    out = merge.stitch_slices(s)
    iou, t, p = iou_matrix(scene, out)
    assert len(p) == 4 and iou.max(1).min() > 0.95
    for lab in (1, 2):
        sec = out[z][scene[z] == lab]
        assert (sec == np.bincount(sec).argmax()).mean() > 0.9


def test_stacked_objects_stay_apart(scene):
    out = merge.stitch_slices(slice_labels(scene, seed=0), waist_ratio=0.5)
    # Which object a cap slice belongs to is ambiguous from areas alone: allow one cap.
    assert same_partition(scene, out, min_iou=0.95)
    # Without the waist rule the caps of 3 and 4 link into one object.
    assert merge.stitch_slices(slice_labels(scene, seed=0), waist_ratio=0).max() == 3


def test_noisy_slices_not_worse_than_cellpose(scene):
    truth = scene
    for seed in range(3):
        s = slice_labels(truth, seed=seed, p_drop=0.1, p_split=0.1, p_merge=0.1)
        ours = average_precision(truth, merge.stitch_slices(s), 0.5)
        base = average_precision(truth, stitch_slices_cellpose(s), 0.5)
        assert ours >= base


def test_cellpose_baseline_rule():
    # Two columns; the second shifts until its IoU with the slice above falls below 0.25.
    a = np.zeros((3, 10, 20), np.int32)
    a[:, 2:8, 2:8] = 1
    a[0, 2:8, 10:16] = 2
    a[1, 2:8, 12:18] = 2   # IoU with slice 0: 24 / 48 = 0.5 -> linked
    a[2, 2:8, 17:20] = 2   # IoU with slice 1: 6 / 48 < 0.25 -> a new object
    out = stitch_slices_cellpose(a)
    assert len(np.unique(out[:, 2:8, 2:8])) == 1
    assert out[0, 3, 11] == out[1, 3, 13] != out[2, 3, 17]
    assert out.max() == 3


def test_empty_inputs():
    empty = np.zeros((4, 8, 8), np.int32)
    assert not merge.stitch_slices(empty).any()
    assert not stitch_slices_cellpose(empty).any()
    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.2, 0.2))
    res = merge.merge_timepoint(empty, empty, pd.DataFrame(columns=["z", "y", "x"]),
                                np.zeros((3, 4, 8, 8), np.float32), meta)
    assert not res.cells.any() and not res.nuclei.any() and not res.semantic.any()
    assert not res.spots.any()
    for tab in (res.cell_table, res.nucleus_table, res.spot_table):
        assert len(tab) == 0
        for col in ("label", "z", "y", "x", "volume_vox", "volume_um3", "bbox_z0", "bbox_x1",
                    "mean_rna"):
            assert col in tab, col
    assert "n_nuclei" in res.cell_table and "cell_id" in res.nucleus_table
    assert {"cell_id", "compartment", "distance_to_nucleus_um"} <= set(res.spot_table)


def test_compartments_and_semantic_map():
    cells = np.zeros((6, 20, 40), np.uint32)
    cells[:, 2:18, 2:18] = 1
    cells[:, 2:18, 20:38] = 2
    nuclei = np.zeros_like(cells)
    nuclei[2:4, 6:12, 6:12] = 7          # in cell 1
    nuclei[2:4, 5:9, 23:27] = 3          # cell 2 is dividing: two nuclei
    nuclei[2:4, 10:14, 30:34] = 4
    nuclei[2:4, 0:2, 0:2] = 9            # outside every cell
    parents = merge.assign_nuclei(cells, nuclei).set_index("nucleus_id")["cell_id"]
    assert parents.to_dict() == {3: 2, 4: 2, 7: 1, 9: 0}
    sem = merge.semantic_map(cells, nuclei)
    assert sem.dtype == np.uint8 and set(np.unique(sem)) == {0, 1, 2}
    assert np.all(sem[nuclei > 0] == 2)
    assert np.all(sem[(cells > 0) & (nuclei == 0)] == 1)
    assert np.all(sem[(cells == 0) & (nuclei == 0)] == 0)

    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.2, 0.2))
    keep = merge.MergeSettings(split_multinucleate=False)
    res = merge.merge_timepoint(slice_labels(cells), slice_labels(nuclei), None,
                                None, meta, keep)
    assert res.cell_table.set_index("label")["n_nuclei"].sort_values().tolist() == [1, 2]
    ntab = res.nucleus_table
    per_cell = ntab["cell_id"].value_counts()
    assert per_cell.get(0) == 1 and sorted(per_cell.drop(0).tolist()) == [1, 2]
    # by default the dividing cell becomes one cell per nucleus
    res = merge.merge_timepoint(slice_labels(cells), slice_labels(nuclei), None,
                                None, meta)
    assert res.cell_table["n_nuclei"].tolist() == [1, 1, 1]


def test_spots_compartment_cell_and_distance():
    cells = np.zeros((8, 30, 30), np.uint32)
    cells[:, 2:28, 2:20] = 5
    nuclei = np.zeros_like(cells)
    nuclei[2:6, 8:16, 6:14] = 1
    det = pd.DataFrame({"z": [4, 4, 4], "y": [12.0, 12.0, 12.0], "x": [10.0, 17.0, 25.0],
                        "score": [1.0, 1.0, 1.0]})
    sp = merge.merge_spots(det, None, (0.5, 0.2, 0.2), cells=cells, nuclei=nuclei)
    sp = sp.sort_values("x")
    assert sp["compartment"].tolist() == ["nucleus", "cytoplasm", "outside"]
    assert sp["cell_id"].tolist() == [5, 5, 0]
    d = sp["distance_to_nucleus_um"].to_numpy()
    assert d[0] < 0 < d[1] < d[2]
    # x=17 lies 4 px (0.8 µm) beyond the last nucleus voxel column (x=13)
    assert d[1] == pytest.approx(0.8, abs=0.01)


def gaussian_spots(shape, positions, sigma=(1.0, 1.2, 1.2), amp=100.0):
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    img = np.zeros(shape)
    for p in positions:
        img += amp * np.exp(-((zz - p[0]) ** 2 / (2 * sigma[0] ** 2)
                              + (yy - p[1]) ** 2 / (2 * sigma[1] ** 2)
                              + (xx - p[2]) ** 2 / (2 * sigma[2] ** 2)))
    return img + 10.0


def detect_per_slice(img, thr=20.0, bg=10.0):
    """What a 2D detector reports: local maxima of each slice, 3x3 centroid, score, area."""
    from scipy import ndimage as ndi

    rows = []
    for z, sl in enumerate(img):
        peaks = (sl == ndi.maximum_filter(sl, size=3)) & (sl - bg > thr)
        for y, x in zip(*np.nonzero(peaks)):
            w = sl[y - 1:y + 2, x - 1:x + 2] - bg
            oy, ox = np.mgrid[-1:2, -1:2]
            rows.append((z, y + (w * oy).sum() / w.sum(), x + (w * ox).sum() / w.sum(),
                         sl[y, x] - bg, 9.0))
    return pd.DataFrame(rows, columns=["z", "y", "x", "score", "area"])


def test_spots_close_in_xy_apart_in_z_stay_two():
    truth = np.array([[4.3, 10.4, 12.6], [8.3, 10.6, 12.4], [7.0, 20.2, 6.7]])
    img = gaussian_spots((16, 30, 30), truth)
    det = detect_per_slice(img, thr=15.0)
    # The first two spots are seen in one unbroken run of slices at (almost) the same xy.
    zs = np.sort(det[det.x > 10].z.to_numpy())
    assert len(zs) >= 6 and np.all(np.diff(zs) == 1)
    for loc in ("gaussian", "centroid"):
        sp = merge.merge_spots(det, img, (0.3, 0.1, 0.1),
                               settings=merge.SpotSettings(localisation=loc))
        assert len(sp) == 3, loc
        pos = sp.sort_values("z")[["z", "y", "x"]].to_numpy()
        order = np.argsort(truth[:, 0])
        tol = 0.15 if loc == "gaussian" else 0.35
        np.testing.assert_allclose(pos, truth[order], atol=tol)
    assert (sp["n_slices"] >= 2).all() and (sp["intensity"] > 0).all()
    blobs = merge.spot_labels(merge.link_spot_detections(det, img, (0.3, 0.1, 0.1)), det,
                              img.shape)
    assert set(np.unique(blobs)) == {0, 1, 2, 3}


def test_object_table_exact():
    lab = np.zeros((4, 10, 12), np.uint32)
    lab[1:3, 2:6, 3:9] = 2
    img = np.stack([np.full(lab.shape, 5.0), np.arange(lab.size, dtype=float).reshape(lab.shape)])
    tab = merge.object_table(lab, img, (0.5, 0.2, 0.2), ["a", "b"])
    row = tab.iloc[0]
    assert row["label"] == 2 and row["volume_vox"] == 48
    assert row["volume_um3"] == pytest.approx(48 * 0.02)
    assert (row["z"], row["y"], row["x"]) == (1.5, 3.5, 5.5)
    assert [row[f"bbox_{a}"] for a in ("z0", "y0", "x0", "z1", "y1", "x1")] == [1, 2, 3, 3, 6, 9]
    assert row["mean_a"] == 5.0 and row["mean_b"] == img[1][lab == 2].mean()


def _write_block(path, arrays: dict, table: pd.DataFrame, t_start, t_stop):
    """A block store in the segment stage's layout (cellspot.segment.infer)."""
    from cellspot.segment.store import TABLE_COLUMNS, TABLE_NAME

    grp = zarr.open_group(str(path), mode="w", zarr_format=2)
    for name, a in arrays.items():
        grp.create_array(name, data=a.astype(np.int32))
    for c in TABLE_COLUMNS:
        if c not in table:
            table[c] = 0
    table[TABLE_COLUMNS].to_parquet(Path(path) / TABLE_NAME, index=False)
    grp.attrs.update({"arrays": list(arrays), "t_start": t_start, "t_stop": t_stop,
                      "classes": list(arrays)})


def test_run_merge_writes_labels_and_tables(tmp_path, scene):
    T = 2
    cells3d = scene
    nuclei3d = np.where(merge.semantic_map(scene, np.zeros_like(scene)) > 0, 0, 0).astype(
        np.uint16)
    nuclei3d[5:9, 9:15, 10:18] = 1
    spots_truth = np.array([[7.2, 12.3, 30.1], [8.0, 30.0, 45.0]])
    rna = gaussian_spots(scene.shape, spots_truth)
    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.2, 0.2), name="b1")
    image = tmp_path / "preprocessed.ome.zarr"
    arr = create_image(image, (T, 3) + scene.shape, np.float32, meta)
    arr[0, 2] = rna
    det = detect_per_slice(rna)
    det["t"], det["class"] = 0, "spot"
    # t = 1 has no objects at all
    cells_block = {"cell": np.stack([slice_labels(cells3d), np.zeros_like(cells3d)]),
                   "nucleus": np.stack([slice_labels(nuclei3d), np.zeros_like(cells3d)])}
    seg = tmp_path / "segment"
    (seg / "cells").mkdir(parents=True)
    (seg / "spots").mkdir()
    _write_block(seg / "cells" / "t0000-0002.zarr", cells_block,
                 pd.DataFrame({"t": [], "class": []}), 0, 2)
    _write_block(seg / "spots" / "t0000-0002.zarr",
                 {"spots": np.zeros((T,) + scene.shape, np.int32)}, det, 0, 2)
    labels = {n: tmp_path / "labels" / f"{n}.zarr" for n in merge.LABEL_NAMES}
    tables = {n: tmp_path / "tables" / f"{n}.parquet" for n in merge.TABLE_NAMES}
    merge.run_merge([seg / "cells" / "t0000-0002.zarr", seg / "spots" / "t0000-0002.zarr"],
                    image, labels, tables)

    cells = np.asarray(open_array(labels["cells"]))
    assert cells.shape == (T,) + scene.shape
    assert same_partition(cells3d, cells[0]) and not cells[1].any()
    assert "image-label" in read_attrs(labels["semantic"])
    assert set(np.unique(open_array(labels["semantic"])[0])) == {0, 1, 2}
    ctab = pd.read_parquet(tables["cells"])
    assert len(ctab) == 4 and (ctab["t"] == 0).all()
    assert ctab["n_nuclei"].sum() == 1
    for col in ("label", "z", "y", "x", "volume_vox", "volume_um3", "bbox_z0", "bbox_y0",
                "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1", "mean_nucleus", "mean_cytoplasm",
                "mean_rna"):
        assert col in ctab
    ntab = pd.read_parquet(tables["nuclei"])
    assert ntab["cell_id"].tolist() == [int(np.bincount(cells[0][nuclei3d > 0]).argmax())]
    stab = pd.read_parquet(tables["spots"])
    assert len(stab) == 2
    assert set(stab["compartment"]) <= {"nucleus", "cytoplasm", "outside"}
    assert stab.sort_values("x")["cell_id"].tolist() == [
        int(cells[0][tuple(np.round(p).astype(int))]) for p in spots_truth]
    assert (np.asarray(open_array(labels["spots"])[0]) > 0).sum() == stab["volume_vox"].sum()
    assert not any(p.name.startswith(".") for p in (tmp_path / "labels").iterdir())
    # The lead's view rule links them over the image, as napari opens them.
    from cellspot.omezarr import assemble_view

    view = tmp_path / "b1.ome.zarr"
    assemble_view(image, labels, view)
    np.testing.assert_array_equal(open_array(view / "labels" / "cells"), cells)
    assert read_attrs(view / "labels")["labels"] == list(merge.LABEL_NAMES)


def test_run_merge_clear_error_on_bad_segmentation(tmp_path):
    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.2, 0.2))
    image = tmp_path / "img.ome.zarr"
    create_image(image, (1, 3, 4, 8, 8), np.float32, meta)
    bad = tmp_path / "nothing.zarr"
    bad.mkdir()
    labels = {n: tmp_path / f"{n}.zarr" for n in merge.LABEL_NAMES}
    tables = {n: tmp_path / f"{n}.parquet" for n in merge.TABLE_NAMES}
    with pytest.raises(Exception, match="nothing.zarr"):
        merge.run_merge([bad], image, labels, tables)
    assert not any(p.exists() for p in labels.values())


def test_settings_validated():
    with pytest.raises(Exception):
        merge.MergeSettings(iou_threshold=0)
    with pytest.raises(Exception):
        merge.MergeSettings(unknown_key=1)
    s = merge.MergeSettings(spots={"localisation": "centroid"})
    assert s.spots.localisation == "centroid"


def test_distance_to_nucleus_matches_distance_transform():
    from cellspot.distance import signed_distance, signed_distance_at

    rng = np.random.default_rng(0)
    nuclei = ellipsoids((12, 30, 30), [(1, (5, 10, 10), (3, 6, 5)), (2, (6, 20, 20), (4, 5, 6))])
    vs = (0.6, 0.2, 0.25)
    pts = rng.integers(0, [12, 30, 30], (200, 3))
    mine = signed_distance_at(pts.astype(float), nuclei, vs)
    ref = signed_distance(nuclei, vs)[tuple(pts.T)]
    np.testing.assert_allclose(mine, ref, atol=1e-9)
    assert (mine < 0).any() and (mine > 0).any()


def test_merge_reads_segment_stores_without_torch():
    """One store reader (cellspot.segment.store) serves both stages; the merge stage's
    environment has no torch or MMDetection, so importing it must not pull them in."""
    import subprocess
    import sys

    code = ("import sys, cellspot.merge, cellspot.segment.store; "
            "bad = {'torch', 'mmdet', 'mmcv'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_broken_chain_of_one_spot_merged_after_localisation():
    truth = np.array([[5.0, 15.2, 15.3]])
    img = gaussian_spots((12, 30, 30), truth)
    # The detector's xy wandered by 3 px between slices 4 and 5 (> link radius 0.25 µm).
    det = pd.DataFrame({"z": [3, 4, 5, 6], "y": [15.2] * 4, "x": [14.0, 14.0, 17.0, 17.0],
                        "score": [1.0, 2.0, 2.0, 1.0]})
    vs = (0.3, 0.1, 0.1)
    members = merge.link_spot_detections(det, img, vs)
    assert members.max() == 2
    sp = merge.merge_spots(det, img, vs, members=members)
    assert len(sp) == 1 and set(members) == {1}
    np.testing.assert_allclose(sp[["z", "y", "x"]].to_numpy()[0], truth[0], atol=0.15)
    apart = merge.merge_spots(det, img, vs, settings=merge.SpotSettings(min_separation_um=0))
    assert len(apart) == 2


def test_run_merge_uncovered_timepoint_and_shape_mismatch(tmp_path):
    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), (0.5, 0.2, 0.2))
    image = tmp_path / "img.ome.zarr"
    create_image(image, (2, 3, 6, 16, 16), np.float32, meta)
    cells = np.zeros((1, 6, 16, 16), np.int32)
    cells[0, 1:4, 3:9, 3:9] = 1
    block = tmp_path / "t0000-0001.zarr"  # covers t = 0 only; no spot store at all
    _write_block(block, {"cell": cells, "nucleus": np.zeros_like(cells)},
                 pd.DataFrame({"t": [], "class": []}), 0, 1)
    labels = {n: tmp_path / "out" / f"{n}.zarr" for n in merge.LABEL_NAMES}
    tables = {n: tmp_path / "out" / f"{n}.parquet" for n in merge.TABLE_NAMES}
    # fewer timepoints segmented than the image has (a movie that grew after planning)
    with pytest.raises(OmeZarrError, match=r"does not cover 1 of them \(t = 1\.\.1\)"):
        merge.run_merge([block], image, labels, tables)
    assert not any(p.exists() for p in [*labels.values(), *tables.values()])

    small = tmp_path / "small.zarr"
    _write_block(small, {"cell": cells[:, :, :8, :8]}, pd.DataFrame({"t": [], "class": []}),
                 0, 1)
    with pytest.raises(Exception, match="do not match the image"):
        merge.run_merge([small], image, labels, tables)


def test_cells_grown_from_nuclei_without_a_cytoplasm_stain():
    """channels.cytoplasm: null -> each cell is its nucleus grown by cell_expansion_um in µm,
    stopping halfway to the next nucleus; anisotropic voxels count in µm."""
    vs = (1.0, 0.25, 0.25)
    nuclei = np.zeros((5, 40, 80), np.uint32)
    nuclei[1:4, 15:25, 10:20] = 4
    nuclei[1:4, 15:25, 34:44] = 9        # 14 px = 3.5 µm from nucleus 4
    cells = merge.grow_cells(nuclei, 2.0, vs)
    assert set(np.unique(cells)) == {0, 4, 9}
    assert np.all(cells[nuclei > 0] == nuclei[nuclei > 0])
    row = cells[2, 20]
    assert row[2] == 4 and row[1] == 0          # 8 px = 2 µm left of nucleus 4: the limit
    assert row[26] == 4 and row[27] == 9        # the gap is split halfway
    assert cells[0, 20, 15] == 4 and cells[2, 7, 15] == 4   # 1 z slice = 1 µm; 8 px = 2 µm
    assert cells[2, 6, 15] == 0                 # 9 px = 2.25 µm above: outside
    assert not merge.grow_cells(np.zeros((2, 4, 4), np.uint32), 2.0).any()

    meta = ImageMeta(("nucleus", "rna"), vs)
    s = merge.MergeSettings.from_config({"cell_expansion_um": 2.0},
                                        {"nucleus": "nucleus", "cytoplasm": None, "rna": "rna"})
    assert s.cells_from_nuclei and s.spots.channel == "rna"
    res = merge.merge_timepoint(None, slice_labels(nuclei), None, None, meta, s)
    assert res.cell_table["n_nuclei"].tolist() == [1, 1]
    assert np.array_equal(res.semantic == 2, nuclei > 0)
    assert (res.semantic == 1).sum() == ((cells > 0) & (nuclei == 0)).sum()
    assert not merge.MergeSettings.from_config({}, {"cytoplasm": "c"}).cells_from_nuclei
