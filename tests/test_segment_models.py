"""Mask R-CNN configs, training (tiny, CPU), resume, inference and bad input.

Needs MMDetection with a compiled mmcv (``mmcv.ops``); skipped otherwise.
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mmcv.ops", reason="mmcv with compiled ops is not installed")

import torch  # noqa: E402

from cellspot.omezarr import ImageMeta, create_image  # noqa: E402
from cellspot.segment import coco  # noqa: E402
from cellspot.segment.infer import (  # noqa: E402
    Instance,
    Segmenter,
    instance_table,
    paint_instances,
    read_segmentation,
    segment_block,
    tile_cores,
    tile_starts,
)
from cellspot.segment.models import SegmentError, default_config_path, load_model_config, upscale_of  # noqa: E402
from cellspot.segment.train import train_model  # noqa: E402
from cellspot_bench.models import narrow_overrides  # noqa: E402

torch.set_num_threads(2)


# --------------------------------------------------------------------------- configs


def _iou(a, b):
    """IoU of boxes a (N,4) and b (M,4), x0 y0 x1 y1."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def _best_anchor_iou(cfg, size_px, rng, n=50):
    """Max IoU of square boxes of ``size_px`` (original pixels) with the model's anchors."""
    from mmdet.registry import TASK_UTILS
    from mmdet.utils import register_all_modules

    register_all_modules()
    gen = TASK_UTILS.build(cfg.model.rpn_head.anchor_generator)
    up = upscale_of(cfg)
    feat = [(64 // sy, 64 // sx) for sx, sy in gen.strides]
    anchors = np.concatenate([a.numpy() for a in gen.grid_priors(feat, device="cpu")])
    c = rng.uniform(16, 48, (n, 2))
    s = size_px * up
    boxes = np.concatenate([c - s / 2, c + s / 2], 1)
    return _iou(boxes, anchors).max(1)


def test_spot_anchors_cover_3_to_10_px():
    cfg = load_model_config(default_config_path("spots"))
    assigner = cfg.model.train_cfg.rpn.assigner
    rng = np.random.default_rng(0)
    for size in range(3, 11):
        best = _best_anchor_iou(cfg, size, rng, n=200)
        # every spot, wherever it lies, gets a positive anchor (match_low_quality) ...
        assert best.min() >= assigner.min_pos_iou, size
        # ... and most spots one above the positive threshold
        assert np.mean(best >= assigner.pos_iou_thr) >= 0.75, size
    # MMDetection's default anchors (32 px and up) do not: a 3 px spot matches none of them
    cfg.model.rpn_head.anchor_generator.scales = [8]
    cfg.model.rpn_head.anchor_generator.ratios = [0.5, 1.0, 2.0]
    assert _best_anchor_iou(cfg, 3, rng).max() < assigner.min_pos_iou


def test_config_overrides_and_depth():
    cfg = load_model_config(default_config_path("cells"),
                            {"model": {"test_cfg": {"rcnn": {"max_per_img": 7}}},
                             "train_cfg.max_iters": 11}, depth=50)
    assert cfg.model.test_cfg.rcnn.max_per_img == 7
    assert cfg.model.test_cfg.rcnn.score_thr == 0.05  # untouched sibling kept
    assert cfg.train_cfg.max_iters == 11
    # the half-width cells ResNet (32 base channels): a ResNet-50 of it ends in 1024 channels
    assert cfg.model.backbone.depth == 50 and cfg.model.neck.in_channels[-1] == 1024
    spots = load_model_config(default_config_path("spots"), depth=50)
    assert spots.model.neck.in_channels == [256, 512]  # 2-stage backbone
    with pytest.raises(SegmentError, match="no such model config"):
        load_model_config("nope.py")


def test_random_transpose_keeps_masks_and_boxes_together():
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks

    from cellspot.segment.models import RandomTranspose

    m = np.zeros((1, 20, 30), np.uint8)
    m[0, 2:5, 10:18] = 1
    res = {"img": np.zeros((20, 30, 1), np.float32),
           "gt_bboxes": HorizontalBoxes(torch.tensor([[10.0, 2.0, 18.0, 5.0]])),
           "gt_masks": BitmapMasks(m, 20, 30)}
    out = RandomTranspose(prob=1.0)(res)
    assert out["img"].shape == (30, 20, 1) and out["img_shape"] == (30, 20)
    ys, xs = np.nonzero(out["gt_masks"].masks[0])
    assert out["gt_bboxes"].tensor.tolist() == [[xs.min(), ys.min(), xs.max() + 1.0,
                                                 ys.max() + 1.0]]


def test_semantic_map_painted_from_augmented_instances():
    from mmdet.structures.mask import BitmapMasks

    from cellspot.segment.models import SemanticFromInstances

    m = np.zeros((3, 20, 30), np.uint8)
    m[0, 2:12, 2:14] = 1   # cell
    m[1, 4:8, 4:8] = 1     # its nucleus
    m[2, 14:18, 20:28] = 1  # a nucleus alone
    res = {"img": np.zeros((20, 30, 3), np.float32), "gt_masks": BitmapMasks(m, 20, 30),
           "gt_bboxes_labels": np.array([1, 0, 0])}
    t = SemanticFromInstances(classes=("nucleus", "cell"), values={"cell": 1, "nucleus": 2})
    sem = t(res)["gt_seg_map"]
    assert sem.dtype == np.uint8 and sem.shape == (20, 30)
    assert (sem == 2).sum() == 16 + 32 and (sem == 1).sum() == 120 - 16
    assert sem[5, 5] == 2 and sem[3, 3] == 1 and sem[0, 0] == 0 and sem[15, 25] == 2
    res = {"img": np.zeros((20, 30, 3), np.float32), "gt_masks": BitmapMasks(m[:0], 20, 30),
           "gt_bboxes_labels": np.zeros(0, int)}
    assert not t(res)["gt_seg_map"].any()
    with pytest.raises(SegmentError, match="unknown classes"):
        SemanticFromInstances(classes=("nucleus", "cell"), values={"cytoplasm": 1})


# --------------------------------------------------------------------------- pure inference parts


def test_instances_map_back_from_every_rotation_and_reflection():
    from cellspot.segment.infer import _unmap_instance, dihedral

    h, w = 9, 13
    mask = np.zeros((h, w), bool)
    mask[2:5, 3:9] = True
    mask[4, 8:11] = True  # asymmetric, so a wrong mapping shows
    yy, xx = np.mgrid[:h, :w]
    for k in range(8):
        t = dihedral(mask, k)
        r, c = np.nonzero(t)
        inst = Instance(0, 0.9, r.min(), c.min(), t[r.min():r.max() + 1, c.min():c.max() + 1])
        back = _unmap_instance(inst, dihedral(yy, k), dihedral(xx, k))
        lab, _ = paint_instances([back], (h, w))
        assert np.array_equal(lab > 0, mask), k
    assert [dihedral(mask, k).shape for k in range(8)].count((w, h)) == 4


def test_mostly_hidden_instance_is_a_duplicate_and_dropped():
    big = Instance(0, 0.9, 0, 0, np.ones((10, 10), bool))
    dup = Instance(0, 0.6, 1, 1, np.ones((10, 10), bool))    # 19 of 100 pixels visible
    other = Instance(0, 0.5, 0, 12, np.ones((10, 5), bool))  # beside: all visible
    lab, scores = paint_instances([dup, big, other], (12, 20))
    assert sorted(np.unique(lab)) == [0, 1, 2] and list(scores) == [0.9, 0.5]
    assert (lab[10:, :] == 0).all()  # the duplicate's rim is background, not a sliver
    lab, scores = paint_instances([dup, big, other], (12, 20), min_visible=0)
    assert len(scores) == 3


def test_fused_instances_vote_on_masks_and_average_scores():
    from cellspot.segment.infer import fuse_instances

    def disc(cy, cx, r, score, label=0):
        yy, xx = np.mgrid[:20, :20]
        m = np.hypot(yy - cy, xx - cx) <= r
        rows, cols = np.nonzero(m)
        return Instance(label, score, rows.min(), cols.min(),
                        m[rows.min():rows.max() + 1, cols.min():cols.max() + 1])

    runs = [[disc(10, 10, 3, 0.9), disc(3, 3, 2, 0.8)]]          # a spurious one in run 0
    runs += [[disc(10, 10 + (k % 2), 3, 0.7)] for k in range(7)]  # jittered by up to 1 px
    runs[1].append(disc(10, 10, 3, 0.6, label=1))                 # another class: not fused
    fused = fuse_instances(runs)
    assert len(fused) == 3
    main = fused[0]
    assert main.label == 0 and main.score == pytest.approx((0.9 + 7 * 0.7) / 8)
    lab, _ = paint_instances([main], (20, 20))
    ref, _ = paint_instances([disc(10, 10, 3, 1), disc(10, 11, 3, 1)], (20, 20), min_visible=0)
    assert (lab > 0).sum() >= 25 and ((lab > 0) <= (ref > 0)).all()  # within the union
    assert sorted(round(f.score, 3) for f in fused[1:]) == [round(0.6 / 8, 3), 0.1]
    assert fuse_instances([[], []]) == []


def test_tiles_partition_the_image():
    for n, tile, ov in [(50, 64, 8), (200, 64, 16), (1000, 256, 32), (129, 64, 32)]:
        starts = tile_starts(n, tile, ov)
        assert starts[0] == 0 and starts[-1] + min(tile, n) == n
        cores = tile_cores(starts, tile, n)
        assert cores[0][0] == 0 and cores[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
        # each core lies inside its tile, at least overlap/2 from an inner tile edge
        for s, (lo, hi) in zip(starts, cores):
            assert s <= lo < hi <= s + tile


def test_paint_by_score_and_subpixel_centroid():
    yy, xx = np.mgrid[:32, :32]
    true = (10.3, 12.7)
    img = 5 + 100 * np.exp(-((yy - true[0]) ** 2 + (xx - true[1]) ** 2) / (2 * 1.2 ** 2))
    disc = np.hypot(yy - 10, xx - 13) <= 2.5
    big = np.zeros((32, 32), bool)
    big[5:16, 8:18] = True
    insts = [Instance(0, 0.6, 5, 8, big[5:16, 8:18]), Instance(0, 0.9, 0, 0, disc)]
    lab, scores = paint_instances(insts, (32, 32))
    assert scores.tolist() == [0.9, 0.6]
    assert (lab[disc] == 1).all()  # the higher score wins the overlap
    tab = instance_table(lab, img, scores)
    assert tab.loc[0, ["y", "x"]].to_numpy() == pytest.approx(true, abs=0.15)
    assert tab.loc[0, "area"] == disc.sum()
    assert tab.loc[1, "area"] == big.sum() - (big & disc).sum()
    # an instance hidden entirely by a better one disappears, ids stay consecutive
    lab2, s2 = paint_instances([Instance(0, 0.9, 5, 8, big[5:16, 8:18]),
                                Instance(0, 0.1, 6, 9, np.ones((2, 2), bool))], (32, 32))
    assert s2.tolist() == [0.9] and set(np.unique(lab2)) == {0, 1}


# --------------------------------------------------------------------------- training


def _tiny_spot_coco(path, n_images=4, size=64, seed=0):
    from cellspot.segment.spots_classic import render_spot_image

    rng = np.random.default_rng(seed)
    slices = []
    for k in range(n_images):
        bg = rng.normal(10, 1, (size, size))
        img, pos = render_spot_image(bg, 12, 1.2, np.array([40.0]), gain=0.0,
                                     min_separation=5, seed=seed + k)
        slices.append(coco.Slice(coco.normalize_volume(img)[..., None].astype(np.float32),
                                 {"spot": coco.spot_masks(pos, img.shape, 2.0)},
                                 f"g{k % 2}", f"s{k}"))
    return coco.write_coco(slices, ["spot"], path, val_fraction=0.5)


def _tiny_cell_coco(path, size=64):
    rng = np.random.default_rng(1)
    t, z = 2, 2
    yy, xx = np.mgrid[:size, :size]
    nuc = np.zeros((t, z, size, size), np.int32)
    cell = np.zeros_like(nuc)
    for k, (cy, cx) in enumerate([(18, 18), (44, 40)]):
        cell[:, :, np.hypot(yy - cy, xx - cx) < 12] = k + 1
        nuc[:, :, np.hypot(yy - cy, xx - cx) < 6] = k + 1
    img = np.stack([50.0 * (nuc > 0), 30.0 * (cell > 0), np.zeros(nuc.shape)], 1)
    img = img + rng.normal(10, 1, img.shape)
    return coco.coco_from_volumes(img, {"nucleus": nuc, "cell": cell}, path, val_fraction=0.0)


def test_random_crops_never_yield_empty_boxes(tmp_path):
    """Crops cut through spots; an object whose box reaches the crop but whose mask does not
    must be dropped, or its empty box makes the box regression loss NaN."""
    from mmdet.utils import register_all_modules
    from mmengine.dataset import Compose

    from cellspot.segment.train import build_train_config

    _tiny_spot_coco(tmp_path / "coco", n_images=2, size=64)
    cfg = build_train_config("spots", tmp_path / "coco", tmp_path / "w", max_iters=1,
                             crop_size=24, val_interval=0)
    register_all_modules()
    ds = cfg.train_dataloader.dataset
    pipe = Compose(ds.pipeline)
    doc = json.loads((tmp_path / "coco" / "train.json").read_text())
    np.random.seed(0)
    n_boxes = 0
    for img in doc["images"] * 150:
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        res = pipe({"img_path": str(tmp_path / "coco" / img["file_name"]), "img_id": img["id"],
                    "height": img["height"], "width": img["width"],
                    "instances": [{"bbox": [a["bbox"][0], a["bbox"][1],
                                            a["bbox"][0] + a["bbox"][2],
                                            a["bbox"][1] + a["bbox"][3]],
                                   "bbox_label": 0, "ignore_flag": 0,
                                   "mask": a["segmentation"]} for a in anns]})
        b = res["data_samples"].gt_instances.bboxes.tensor
        n_boxes += len(b)
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
    assert n_boxes > 0


TINY = dict(max_iters=2, batch_size=2, checkpoint_interval=1, log_interval=1, val_interval=0,
            lr=1e-4, depth=18, threads=2)


@pytest.fixture(scope="module")
def spot_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("spots")
    paths = _tiny_spot_coco(root / "coco")
    out = train_model("spots", root / "coco", root / "model",
                      **{**TINY, "overrides": narrow_overrides(16, 32)})
    return root, paths, out


@pytest.fixture(scope="module")
def cell_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    _tiny_cell_coco(root / "coco")
    out = train_model("cells", root / "coco", root / "model",
                      **{**TINY, "overrides": narrow_overrides(16, 32)})
    return root, out


def _train_scalars(work):
    rows = []
    for f in sorted(Path(work).glob("*/vis_data/scalars.json")):
        rows += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return [r for r in rows if "loss" in r]


@pytest.mark.slow
def test_tiny_training_writes_outputs_and_resumes(spot_model):
    root, _, out = spot_model
    for key in ("checkpoint", "config", "loss_png"):
        assert out[key].is_file() and out[key].stat().st_size > 0
    assert list(out["tensorboard"].glob("*/events.out.tfevents.*"))
    rows = _train_scalars(root / "model" / "work")
    assert [r["iter"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in rows)
    ck = torch.load(out["checkpoint"], weights_only=False)
    assert ck["meta"]["iter"] == 2 and "cfg" in ck["meta"]
    # a second run with more iterations continues from iteration 2 (not from 0)
    train_model("spots", root / "coco", root / "model",
                **{**TINY, "max_iters": 3, "overrides": narrow_overrides(16, 32)})
    rows = _train_scalars(root / "model" / "work")
    assert [r["iter"] for r in rows] == [1, 2, 3]
    # each run logs into its own folder (scalars and TensorBoard), the PNG shows both
    assert len(list((root / "model" / "work").glob("*/vis_data/scalars.json"))) == 2
    assert torch.load(out["checkpoint"], weights_only=False)["meta"]["iter"] == 3


def test_training_input_errors(tmp_path):
    with pytest.raises(SegmentError, match="train.json"):
        train_model("spots", tmp_path / "nothing", tmp_path / "m", **TINY)
    _tiny_spot_coco(tmp_path / "coco", n_images=2)
    with pytest.raises(SegmentError, match="pretrained checkpoint"):
        train_model("spots", tmp_path / "coco", tmp_path / "m", load_from=tmp_path / "x.pth",
                    **TINY)


# --------------------------------------------------------------------------- inference


@pytest.mark.slow
def test_inference_empty_no_objects_and_large_tiled(spot_model):
    root, _, out = spot_model
    seg = Segmenter(out["config"], out["checkpoint"], device="cpu", batch_size=2,
                    tile_size=64, tile_overlap=16, score_threshold=0.0, max_detections=30)
    rng = np.random.default_rng(0)
    empty = np.zeros((1, 48, 48, 1), np.float32)
    noise = rng.normal(0, 0.05, (1, 48, 48, 1)).astype(np.float32)
    large = rng.normal(0, 0.05, (1, 150, 200, 1)).astype(np.float32)  # 3 x 4 tiles of 64 px
    for imgs in (empty, noise, large):
        stacks, tables = seg.segment_slices(imgs)
        lab = stacks["spot"]
        assert lab.shape == imgs.shape[:3] and lab.dtype == np.int32
        t = tables[0]
        assert len(t) == len(np.unique(lab)) - (1 if (lab == 0).any() else 0)
        if len(t):
            assert (t["y"].between(0, imgs.shape[1] - 1)).all()
            assert (t["x"].between(0, imgs.shape[2] - 1)).all()
            assert t["score"].is_monotonic_decreasing


@pytest.mark.slow
def test_test_time_augmentation_is_equivariant(spot_model):
    """Predictions fused over all 8 rotations/reflections do not depend on the orientation."""
    _, _, out = spot_model
    seg = Segmenter(out["config"], out["checkpoint"], device="cpu", score_threshold=0.1,
                    tta=True, max_detections=40)
    rng = np.random.default_rng(3)
    img = rng.normal(0, 0.05, (1, 40, 56, 1)).astype(np.float32)
    img[0, 10:13, 20:23] += 1.0
    img[0, 30:33, 44:47] += 0.8
    a, ta = seg.segment_slices(img)
    b, tb = seg.segment_slices(np.ascontiguousarray(img.transpose(0, 2, 1, 3)))
    assert np.array_equal(a["spot"] > 0, (b["spot"] > 0).transpose(0, 2, 1))
    assert len(ta[0]) > 0 and (ta[0]["score"] >= 0.1).all()
    np.testing.assert_allclose(np.sort(ta[0]["y"]), np.sort(tb[0]["x"]), atol=1e-6)
    np.testing.assert_allclose(np.sort(ta[0]["score"]), np.sort(tb[0]["score"]), atol=1e-5)


@pytest.mark.slow
def test_segment_block_store_cells(cell_model, tmp_path):
    _, out = cell_model
    meta = ImageMeta(("nucleus", "cytoplasm", "rna"), name="b")
    movie = tmp_path / "pre.ome.zarr"
    arr = create_image(movie, (3, 3, 2, 64, 64), "float32", meta)
    arr[...] = np.random.default_rng(0).normal(0, 0.1, arr.shape).astype(np.float32)
    seg = Segmenter(out["config"], out["checkpoint"], device="cpu", score_threshold=0.0,
                    max_detections=20)
    store = segment_block(movie, tmp_path / "t0001-0003.zarr", seg, "cells",
                          ["nucleus", "cytoplasm", "rna"], 1, 3)
    s = read_segmentation(store)
    assert set(s.arrays) == {"nucleus", "cell"}
    assert s.arrays["nucleus"].shape == (2, 2, 64, 64) and s.arrays["cell"].dtype == np.int32
    assert (s.t_start, s.t_stop) == (1, 3)
    assert list(s.table.columns) == ["t", "z", "class", "instance", "score", "y0", "x0", "y1",
                                     "x1", "area", "y", "x"]
    assert set(s.table["t"]) <= {1, 2}
    for row in s.table.itertuples():  # table rows agree with the label arrays
        lab = np.asarray(s.arrays[row[3]][row.t - 1, row.z])
        assert (lab == row.instance).sum() == row.area
    with pytest.raises(Exception, match="channel 'dapi' not found"):
        segment_block(movie, tmp_path / "x.zarr", seg, "cells", ["dapi", "cytoplasm", "rna"],
                      0, 1)
    assert not (tmp_path / "x.zarr").exists()
    # a stain the movie does not have is zeros for the model: the same as a zero channel
    arr[:, 1] = 0.0
    zero = read_segmentation(segment_block(movie, tmp_path / "z.zarr", seg, "cells",
                                           ["nucleus", "cytoplasm", "rna"], 0, 1))
    absent = read_segmentation(segment_block(movie, tmp_path / "n.zarr", seg, "cells",
                                             ["nucleus", None, "rna"], 0, 1))
    assert np.array_equal(np.asarray(zero.arrays["nucleus"]), np.asarray(absent.arrays["nucleus"]))
    assert len(zero.table) == len(absent.table) > 0
    # none of its stains: no instances, the model not run
    none = read_segmentation(segment_block(movie, tmp_path / "e.zarr", seg, "cells",
                                           [None, None, None], 0, 1))
    assert len(none.table) == 0 and not np.asarray(none.arrays["cell"]).any()


@pytest.mark.slow
def test_missing_or_incompatible_checkpoint(spot_model, cell_model, tmp_path):
    _, _, spots = spot_model
    _, cells = cell_model
    with pytest.raises(SegmentError, match=r"segment\.models\.spots\.checkpoint: .* not found"):
        Segmenter(spots["config"], tmp_path / "none.pth", model="spots")
    with pytest.raises(SegmentError, match=r"segment\.models\.spots\.checkpoint: .*does not "
                       r"fit the model.*segment\.models\.spots\.checkpoint_config"):
        Segmenter(spots["config"], cells["checkpoint"], model="spots")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SegmentError, match="not a readable PyTorch checkpoint"):
        Segmenter(spots["config"], junk)
    # without a config file the one stored in the checkpoint is used
    seg = Segmenter(None, spots["checkpoint"], device="cpu")
    assert seg.classes == ("spot",) and seg.in_channels == 1


@pytest.mark.slow
def test_time_limit_stops_with_a_checkpoint_and_publishes_nothing(tmp_path):
    """A job near its wall time stops cleanly; the model is not published half-trained, and the
    next run resumes from where it stopped."""
    _tiny_spot_coco(tmp_path / "coco")
    kwargs = {**TINY, "max_iters": 3, "overrides": narrow_overrides(16, 32)}
    with pytest.raises(SegmentError, match="stopped at iteration 1 of 3 by the time limit"):
        train_model("spots", tmp_path / "coco", tmp_path / "model", time_limit_s=1e-6, **kwargs)
    assert not (tmp_path / "model" / "checkpoint.pth").exists()
    train_model("spots", tmp_path / "coco", tmp_path / "model", **kwargs)
    assert [r["iter"] for r in _train_scalars(tmp_path / "model" / "work")] == [1, 2, 3]
