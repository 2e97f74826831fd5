"""Mask R-CNN inference on the z-slices of a movie, and the per-block segmentation store.

A job loads the model once (:class:`Segmenter`) and runs every z-slice of its block of timepoints
in batches, on the GPU when there is one, else on the CPU. Slices larger than ``tile_size`` are
cut into overlapping tiles; an instance belongs to the tile whose core (the tile up to the middle
of its overlaps) holds its box centre, so objects cut by a tile edge are taken from the tile
that sees them whole (when the overlap exceeds the object size).

The store's layout and its reader (:func:`read_segmentation`) are in
:mod:`cellspot.segment.store`, which the merge stage uses without torch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import zarr
from scipy import ndimage

from cellspot.omezarr import OmeZarrError, _compressor, atomic_output, open_array, read_meta
from cellspot.segment.store import (  # noqa: F401
    ARRAY_NAMES,
    TABLE_COLUMNS,
    TABLE_NAME,
    Segmentation,
    read_segmentation,
)
from cellspot.table_specs import INSTANCES

from .scale import auto_scale, estimate_diameter_px, labels_at, rescale_slices, slice_scale

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- pure functions


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``n`` px with at least ``overlap`` px
    shared between neighbours (one tile when ``n <= tile``)."""
    if n <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(starts))


def tile_cores(starts: Sequence[int], tile: int, n: int) -> list[tuple[int, int]]:
    """The core ``[lo, hi)`` of each tile: up to the middle of its overlap with a neighbour."""
    ends = [min(s + tile, n) for s in starts]
    bounds = [0] + [(starts[i + 1] + ends[i]) // 2 for i in range(len(starts) - 1)] + [n]
    return [(bounds[i], bounds[i + 1]) for i in range(len(starts))]


@dataclass
class Instance:
    """One predicted instance: class index, score and its mask within a box of the slice."""

    label: int
    score: float
    y0: int
    x0: int
    mask: np.ndarray  # bool, shape of its box


MIN_VISIBLE = 0.5  # an instance mostly under better ones is a duplicate detection


def paint_instances(instances: Sequence[Instance], shape: tuple[int, int],
                    min_visible: float = MIN_VISIBLE) -> tuple[np.ndarray, np.ndarray]:
    """Label image of instances, the higher score on top; ids 1.. in order of decreasing score.

    An instance of which less than ``min_visible`` of its mask stays visible is dropped: box NMS
    lets through near-duplicate masks, whose uncovered rims would otherwise become slivers
    (and, stitched through z, extra objects). Its rim becomes background.

    Returns
    -------
    labels : (Y, X) int32
    scores : float array, ``scores[i]`` of id ``i + 1``; ids left without a pixel (hidden by
        better instances) are removed and the ids made consecutive.
    """
    order = sorted(range(len(instances)), key=lambda i: -instances[i].score)
    labels = np.zeros(shape, np.int32)
    # Paint from the lowest score up so that higher scores overwrite.
    for rank in range(len(order) - 1, -1, -1):
        inst = instances[order[rank]]
        h, w = inst.mask.shape
        view = labels[inst.y0:inst.y0 + h, inst.x0:inst.x0 + w]
        view[inst.mask[:view.shape[0], :view.shape[1]]] = rank + 1
    scores = np.array([instances[i].score for i in order], float)
    visible = np.bincount(labels.ravel(), minlength=len(order) + 1)[1:]
    if min_visible > 0 and len(order):
        area = np.array([instances[i].mask.sum() for i in order], float)
        hidden = visible < min_visible * np.maximum(area, 1)
        if hidden.any():
            labels[hidden[np.maximum(labels - 1, 0)] & (labels > 0)] = 0
    present = np.bincount(labels.ravel(), minlength=len(order) + 1)[1:] > 0
    if not present.all():
        remap = np.zeros(len(order) + 1, np.int32)
        remap[1:][present] = np.arange(1, present.sum() + 1, dtype=np.int32)
        labels = remap[labels]
        scores = scores[present]
    return labels, scores


def instance_table(labels: np.ndarray, image: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Per-instance bbox, area and intensity-weighted sub-pixel centroid of a label slice.

    The weights are the image minus its minimum within each mask (a local background), so the
    centroid follows the intensity peak rather than the mask outline; a mask without contrast
    falls back to its geometric centroid.
    """
    n = len(scores)
    cols = {c: np.zeros(0) for c in ("instance", "score", "y0", "x0", "y1", "x1", "area",
                                     "y", "x")}
    if n == 0:
        return pd.DataFrame(cols)
    idx = np.arange(1, n + 1)
    img = np.asarray(image, np.float64)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels, max_label=n)
    mins = np.asarray(ndimage.minimum(img, labels, idx))
    w = np.where(labels > 0, img - np.concatenate([[0.0], mins])[labels], 0.0)
    yy, xx = np.mgrid[:labels.shape[0], :labels.shape[1]]
    sw = np.asarray(ndimage.sum(w, labels, idx))
    sy = np.asarray(ndimage.sum(w * yy, labels, idx))
    sx = np.asarray(ndimage.sum(w * xx, labels, idx))
    gy = np.asarray(ndimage.sum(yy, labels, idx)) / np.maximum(area, 1)
    gx = np.asarray(ndimage.sum(xx, labels, idx)) / np.maximum(area, 1)
    ok = sw > 1e-12
    y = np.where(ok, sy / np.where(ok, sw, 1), gy)
    x = np.where(ok, sx / np.where(ok, sw, 1), gx)
    return pd.DataFrame({
        "instance": idx, "score": scores,
        "y0": [b[0].start for b in boxes], "x0": [b[1].start for b in boxes],
        "y1": [b[0].stop for b in boxes], "x1": [b[1].stop for b in boxes],
        "area": area, "y": y, "x": x,
    })


def dihedral(a: np.ndarray, k: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The ``k``-th (0-7) of the 8 rotations/reflections of ``a`` in the plane ``axes``:
    a transpose for ``k >= 4``, then ``k % 4`` quarter turns. ``k = 0`` is the identity."""
    if k >= 4:
        a = np.swapaxes(a, *axes)
    return np.rot90(a, k % 4, axes)


def _unmap_instance(inst: Instance, ys: np.ndarray, xs: np.ndarray) -> Instance:
    """An instance found on a transformed slice, in the slice's own pixel grid.

    ``ys``/``xs`` are the original row/column of every pixel of the transformed slice (the
    transform applied to the index grids).
    """
    r, c = np.nonzero(inst.mask)
    oy, ox = ys[inst.y0 + r, inst.x0 + c], xs[inst.y0 + r, inst.x0 + c]
    y0, x0 = int(oy.min()), int(ox.min())
    mask = np.zeros((int(oy.max()) - y0 + 1, int(ox.max()) - x0 + 1), bool)
    mask[oy - y0, ox - x0] = True
    return Instance(inst.label, inst.score, y0, x0, mask)


def _mask_iou(a: Instance, b: Instance) -> float:
    (ah, aw), (bh, bw) = a.mask.shape, b.mask.shape
    y0, x0 = max(a.y0, b.y0), max(a.x0, b.x0)
    y1, x1 = min(a.y0 + ah, b.y0 + bh), min(a.x0 + aw, b.x0 + bw)
    if y1 <= y0 or x1 <= x0:
        return 0.0
    inter = np.count_nonzero(a.mask[y0 - a.y0:y1 - a.y0, x0 - a.x0:x1 - a.x0]
                             & b.mask[y0 - b.y0:y1 - b.y0, x0 - b.x0:x1 - b.x0])
    return inter / (np.count_nonzero(a.mask) + np.count_nonzero(b.mask) - inter)


def fuse_instances(runs: Sequence[Sequence[Instance]], iou_threshold: float = 0.3
                   ) -> list[Instance]:
    """Fuse the instances of several predictions of one slice (test-time augmentation).

    Greedy, best score first: an instance gathers at most one instance of the same class from
    each other run whose mask overlaps it with IoU >= ``iou_threshold`` (0.3: two masks of a
    3-px spot one pixel apart overlap by about that much; distinct cells much less). The fused
    score is the sum of the gathered scores over the number of runs (a detection found in one
    run of 8 keeps 1/8 of its score); the mask is the pixels in at least half of the gathered
    masks.
    """
    from scipy.spatial import cKDTree

    items = [(inst, r) for r, insts in enumerate(runs) for inst in insts]
    if not items:
        return []
    order = sorted(range(len(items)), key=lambda i: -items[i][0].score)
    rank = np.empty(len(items), int)
    rank[order] = np.arange(len(items))
    centres = np.array([(i.y0 + i.mask.shape[0] / 2, i.x0 + i.mask.shape[1] / 2)
                        for i, _ in items])
    reach = max(max(i.mask.shape) for i, _ in items)
    tree = cKDTree(centres)
    used = np.zeros(len(items), bool)
    fused = []
    for i in order:
        if used[i]:
            continue
        inst, run = items[i]
        members = {run: i}
        for j in sorted(tree.query_ball_point(centres[i], reach), key=rank.__getitem__):
            cand, r = items[j]
            if (used[j] or r in members or cand.label != inst.label
                    or _mask_iou(inst, cand) < iou_threshold):
                continue
            members[r] = j
        used[list(members.values())] = True
        group = [items[j][0] for j in members.values()]
        y0, x0 = min(g.y0 for g in group), min(g.x0 for g in group)
        y1 = max(g.y0 + g.mask.shape[0] for g in group)
        x1 = max(g.x0 + g.mask.shape[1] for g in group)
        votes = np.zeros((y1 - y0, x1 - x0), np.int32)
        for g in group:
            votes[g.y0 - y0:g.y0 - y0 + g.mask.shape[0], g.x0 - x0:g.x0 - x0 + g.mask.shape[1]] \
                += g.mask
        mask = votes * 2 >= len(group)
        fused.append(Instance(inst.label, sum(g.score for g in group) / len(runs), y0, x0,
                              mask))
    return sorted(fused, key=lambda f: -f.score)


# --------------------------------------------------------------------------- the model


class Segmenter:
    """A Mask R-CNN model loaded once, applied to batches of 2D slices.

    Parameters
    ----------
    config : path-like
        The resolved MMDetection config (``models/<model>/config.py``); ``None`` takes the config
        stored in the checkpoint.
    checkpoint : path-like
        The trained weights.
    device : str, optional
        ``"cuda"``, ``"cpu"``...; default the GPU when there is one.
    batch_size : int
        Slices (tiles) per forward pass.
    tile_size, tile_overlap : int
        Slices larger than ``tile_size`` (px, either axis) are tiled with this overlap.
    score_threshold : float
        Instances below this score are dropped.
    weight_channel : int, optional
        Channel of the input used to weight centroids (default: the mean of the channels).
    max_detections : int, optional
        Instances per slice (tile) at most; default the config's ``test_cfg.rcnn.max_per_img``.
    tta : bool
        Test-time augmentation: predict all 8 rotations/reflections of every slice and fuse
        the instances (:func:`fuse_instances`; ``score_threshold`` then applies to the fused
        score). 8x the inference time.
    scale : float
        Slices are resized by this factor before the model and the instances mapped back to
        full resolution (:mod:`cellspot.segment.scale`); may be set after loading.
    """

    def __init__(self, config, checkpoint, device: str | None = None, batch_size: int = 4,
                 tile_size: int = 1024, tile_overlap: int = 64, score_threshold: float = 0.5,
                 weight_channel: int | None = None, max_detections: int | None = None,
                 tta: bool = False, model: str | None = None, scale: float = 1.0):
        import torch
        from mmengine.dataset import Compose

        from cellspot.segment.models import inference_pipeline

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.cfg = load_model(config, checkpoint, self.device, model)
        if max_detections is not None:
            self.model.test_cfg.rcnn.max_per_img = int(max_detections)
        self.classes = tuple(self.cfg.get("classes") or
                             self.cfg.train_dataloader.dataset.metainfo["classes"])
        self.in_channels = int(self.cfg.model.backbone.get("in_channels", 3))
        self.pipeline = Compose(inference_pipeline(self.cfg))
        self.batch_size = max(1, int(batch_size))
        self.tile_size, self.tile_overlap = int(tile_size), int(tile_overlap)
        if self.tile_overlap >= self.tile_size:
            raise ValueError("tile_overlap must be smaller than tile_size")
        self.score_threshold = float(score_threshold)
        self.tta = bool(tta)
        # With TTA each pass keeps weak instances too: the threshold applies after fusion.
        self._pass_threshold = min(self.score_threshold, 0.05) if self.tta else self.score_threshold
        self.weight_channel = weight_channel
        self.checkpoint = str(checkpoint)
        self.scale = float(scale)

    # -- forward passes
    def _forward(self, tiles: list[np.ndarray]) -> list:
        import torch
        from mmengine.dataset import pseudo_collate

        out = []
        for i in range(0, len(tiles), self.batch_size):
            batch = [self.pipeline({"img": t, "img_id": i + k, "img_path": ""})
                     for k, t in enumerate(tiles[i:i + self.batch_size])]
            with torch.no_grad():
                res = self.model.test_step(pseudo_collate(batch))
            for r in res:
                p = r.pred_instances
                keep = p.scores >= self._pass_threshold
                out.append((p.labels[keep].cpu().numpy(), p.scores[keep].cpu().numpy(),
                            p.bboxes[keep].cpu().numpy(), p.masks[keep].cpu().numpy()))
        return out

    def predict_instances(self, images: np.ndarray) -> list[list[Instance]]:
        """Instances of each ``(H, W, C)`` slice of ``images`` (N, H, W, C), tiling big ones."""
        return self._predict(images)

    def _predict(self, images: np.ndarray) -> list[list[Instance]]:
        """Instances per slice (with test-time augmentation when ``tta``)."""
        if not self.tta:
            return self._predict_once(images)
        images = np.asarray(images, np.float32)
        images = images[..., None] if images.ndim == 3 else images
        n, h, w = images.shape[:3]
        yy, xx = np.mgrid[:h, :w]
        runs: list[list[list[Instance]]] = [[] for _ in range(n)]
        for k in range(8):
            insts = self._predict_once(np.ascontiguousarray(dihedral(images, k, (1, 2))))
            ys, xs = dihedral(yy, k), dihedral(xx, k)
            for s in range(n):
                runs[s].append([_unmap_instance(i, ys, xs) for i in insts[s]])
        return [[f for f in fuse_instances(r) if f.score >= self.score_threshold]
                for r in runs]

    def _predict_once(self, images: np.ndarray) -> list[list[Instance]]:
        """One prediction of every slice; an instance of a tiled slice comes from the tile
        whose core holds its centre."""
        images = np.asarray(images, np.float32)
        if images.ndim == 3:
            images = images[..., None]
        if images.shape[-1] != self.in_channels:
            raise ValueError(f"the model takes {self.in_channels} channels, the images have "
                             f"{images.shape[-1]}")
        n, h, w = images.shape[:3]
        ys = tile_starts(h, self.tile_size, self.tile_overlap)
        xs = tile_starts(w, self.tile_size, self.tile_overlap)
        ycore, xcore = tile_cores(ys, self.tile_size, h), tile_cores(xs, self.tile_size, w)
        t = self.tile_size
        tiles, where = [], []
        for s in range(n):
            for iy, y0 in enumerate(ys):
                for ix, x0 in enumerate(xs):
                    tiles.append(images[s, y0:y0 + t, x0:x0 + t])
                    where.append((s, y0, x0, ycore[iy], xcore[ix]))
        results: list[list[Instance]] = [[] for _ in range(n)]
        single = len(ys) == len(xs) == 1
        for (s, ty, tx, (cy0, cy1), (cx0, cx1)), (labels, scores, boxes, masks) in zip(
                where, self._forward(tiles)):
            for lab, sc, box, m in zip(labels, scores, boxes, masks):
                by0, bx0 = int(np.floor(max(box[1], 0))), int(np.floor(max(box[0], 0)))
                by1 = int(np.ceil(min(box[3], m.shape[0])))
                bx1 = int(np.ceil(min(box[2], m.shape[1])))
                # The mask may reach a pixel beyond the box: use the mask's own extent.
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                if len(rows) == 0:
                    continue
                by0, by1 = min(by0, rows[0]), max(by1, rows[-1] + 1)
                bx0, bx1 = min(bx0, cols[0]), max(bx1, cols[-1] + 1)
                if not single:
                    cy, cx = ty + (box[1] + box[3]) / 2, tx + (box[0] + box[2]) / 2
                    if not (cy0 <= cy < cy1 and cx0 <= cx < cx1):
                        continue
                results[s].append(Instance(int(lab), float(sc), ty + by0, tx + bx0,
                                           np.ascontiguousarray(m[by0:by1, bx0:bx1])))
        return results

    def segment_slices(self, images: np.ndarray
                       ) -> tuple[dict[str, np.ndarray], list[pd.DataFrame]]:
        """Label stacks per class and one instance table per slice.

        Returns
        -------
        labels : dict class name -> (N, H, W) int32
        tables : list of DataFrames (columns ``class`` plus those of :func:`instance_table`)
        """
        images = np.asarray(images, np.float32)
        if images.ndim == 3:
            images = images[..., None]
        n, h, w = images.shape[:3]
        stacks = {c: np.zeros((n, h, w), np.int32) for c in self.classes}
        tables = []
        seen = images if self.scale == 1.0 else rescale_slices(images, self.scale)
        instances = self._predict(seen)
        for s, insts in enumerate(instances):
            weight = (images[s].mean(-1) if self.weight_channel is None
                      else images[s][..., self.weight_channel])
            rows = []
            for k, c in enumerate(self.classes):
                lab, scores = paint_instances([i for i in insts if i.label == k],
                                              seen.shape[1:3])
                if seen is not images:
                    lab, scores = labels_at(lab, scores, (h, w))
                stacks[c][s] = lab
                tab = instance_table(lab, weight, scores)
                tab.insert(0, "class", c)
                rows.append(tab)
            tables.append(pd.concat(rows, ignore_index=True))
        return stacks, tables


def load_model(config, checkpoint, device: str = "cpu", model_name: str | None = None):
    """Build the model of ``config`` and load ``checkpoint`` strictly, with clear errors.

    ``model_name`` (cells, spots) lets the errors name the config.yaml settings.
    Returns ``(model, cfg)``.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from cellspot.segment.models import SegmentError, _load_local_checkpoint
    from cellspot.segment.starter import setting

    key = setting(model_name or "<model>", "checkpoint")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise SegmentError(
            f"{key}: checkpoint {checkpoint} not found: name an existing checkpoint, builtin "
            "(the starter model), or \"\" to train one (rule segment_train)")
    try:
        ckpt = _load_local_checkpoint(str(checkpoint), map_location="cpu")
    except Exception as exc:
        raise SegmentError(f"{checkpoint}: not a readable PyTorch checkpoint ({exc})") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise SegmentError(f"{checkpoint}: holds no model weights (state_dict)")
    if config is None:
        text = (ckpt.get("meta") or {}).get("cfg")
        if not text:
            raise SegmentError(f"{checkpoint}: no config given and none stored in the checkpoint")
        cfg = Config.fromstring(text, ".py")
    else:
        if not Path(config).is_file():
            raise SegmentError(f"model config {config} not found")
        cfg = Config.fromfile(str(config))
    register_all_modules(init_default_scope=True)
    model = MODELS.build(cfg.model)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if shape:
            parts.append(f"{len(shape)} weights of another shape (e.g. {shape[0]})")
        if missing:
            parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (e.g. {unexpected[0]})")
        raise SegmentError(
            f"{key}: {checkpoint} does not fit the model of "
            f"{config or 'its stored config'} "
            f"({setting(model_name or '<model>', 'checkpoint_config')}): "
            + "; ".join(parts) + ". Was it trained with another config (model, depth, classes)?")
    model.load_state_dict(state, strict=True)
    classes = (ckpt.get("meta") or {}).get("dataset_meta", {}).get("classes")
    if classes is not None:
        cfg.classes = tuple(classes)
    return model.to(device).eval(), cfg


# --------------------------------------------------------------------------- movies


def _create(group: zarr.Group, name: str, shape, dtype) -> zarr.Array:
    return group.create_array(name, shape=tuple(int(s) for s in shape),
                              chunks=(1, 1) + tuple(int(s) for s in shape[2:]), dtype=dtype,
                              compressors=_compressor(), fill_value=0,
                              chunk_key_encoding={"name": "v2", "separator": "/"})


def movie_scale(arr, voxel_size: Sequence[float], channel: int | None, diameter_um,
                trained: dict | None) -> float:
    """The slice scale of a movie (:mod:`cellspot.segment.scale`): from ``diameter_um`` (µm),
    or measured on up to 5 middle slices of timepoint 0 of ``channel`` (``"auto"``), against
    the ``trained`` diameters; 1 when any is missing."""
    if diameter_um is None or trained is None or channel is None:
        return 1.0
    if diameter_um != "auto":
        return slice_scale(float(diameter_um), float(voxel_size[-1]), trained["median"])
    Z = arr.shape[2]
    zs = np.unique(np.linspace(Z // 3, max(Z // 3, 2 * Z // 3 - 1), min(5, Z)).astype(int))
    found = [d for z in zs if (d := estimate_diameter_px(np.asarray(arr[0, channel, z])))]
    return auto_scale(float(np.median(found)) if found else None, trained)


def segment_block(image_path: str | os.PathLike, out_path: str | os.PathLike,
                  segmenter: Segmenter, model: str, channels: Sequence[str | int],
                  t_start: int, t_stop: int, z_batch: int = 16,
                  object_diameter_um=None, trained_diameter: dict | None = None) -> Path:
    """Segment timepoints ``[t_start, t_stop)`` of an OME-Zarr movie into one block store.

    Parameters
    ----------
    image_path : path-like
        ``preprocessed.ome.zarr`` (TCZYX float32).
    model : {"cells", "spots"}
    channels : sequence of channel names or indices, or None
        The model's input channels, in order; None for a stain the movie does not have (the
        model sees zeros there, as in its stain-dropout training). With none of its stains
        present the model is not run and the block holds no instances.
    z_batch : int
        z-slices read and segmented together (memory bound: one slice is Y*X*C floats).
    object_diameter_um, trained_diameter
        The nuclei's size and the model's (:func:`movie_scale`; the first input channel is
        measured): slices are rescaled so that nuclei appear at the trained size.
    """
    arr = open_array(image_path)
    meta = read_meta(image_path)
    cidx = [None if c is None else meta.channel_index(c) for c in channels]
    segmenter.scale = movie_scale(arr, meta.voxel_size, cidx[0], object_diameter_um,
                                  trained_diameter)
    if segmenter.scale != 1.0:
        log.info("%s: slices rescaled by %.3f for the %s model (%s)", image_path,
                 segmenter.scale, model, object_diameter_um)
    present = any(c is not None for c in cidx)
    if not present:
        log.info("%s: none of the %s model's stains is in the movie: no instances", image_path,
                 model)
    if len(cidx) != segmenter.in_channels:
        raise OmeZarrError(f"model {model!r} takes {segmenter.in_channels} channels but "
                           f"{len(cidx)} are configured: {list(channels)}")
    T, _, Z, Y, X = arr.shape
    if not 0 <= t_start < t_stop <= T:
        raise OmeZarrError(f"{image_path}: timepoints {t_start}-{t_stop} outside 0-{T}")
    nt = t_stop - t_start
    out_path = Path(out_path)
    with atomic_output(out_path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        names = [ARRAY_NAMES.get(c, c) for c in segmenter.classes]
        outs = {c: _create(group, ARRAY_NAMES.get(c, c), (nt, Z, Y, X), "int32")
                for c in segmenter.classes}
        tables = []
        for t in range(t_start, t_stop) if present else ():
            for z0 in range(0, Z, z_batch):
                z1 = min(Z, z0 + z_batch)
                vol = np.stack([np.zeros((z1 - z0, Y, X), np.float32) if c is None
                                else np.asarray(arr[t, c, z0:z1], np.float32) for c in cidx], -1)
                stacks, tabs = segmenter.segment_slices(vol)
                for c in segmenter.classes:
                    outs[c][t - t_start, z0:z1] = stacks[c]
                for k, tab in enumerate(tabs):
                    tab.insert(0, "z", z0 + k)
                    tab.insert(0, "t", t)
                    tables.append(tab)
            log.info("t=%d: %d instances", t, sum(len(x) for x in tables if len(x) and
                                                   x["t"].iloc[0] == t))
        table = INSTANCES.conform(pd.concat(tables, ignore_index=True) if tables
                                  else INSTANCES.empty())[INSTANCES.columns]
        table.to_parquet(tmp / TABLE_NAME, index=False)
        group.attrs.update({"model": model, "classes": list(segmenter.classes),
                            "arrays": names, "t_start": int(t_start), "t_stop": int(t_stop),
                            "channels": [None if c is None else str(c) for c in channels],
                            "checkpoint": segmenter.checkpoint,
                            "score_threshold": segmenter.score_threshold,
                            "scale": segmenter.scale,
                            "tta": segmenter.tta})
    return out_path
