"""COCO instance-segmentation datasets from 2D slices of label volumes.

The segmentation stage trains MMDetection's Mask R-CNN on 2D slices. This module turns label
volumes (the synthetic ground truth, or a user's annotations as label TIFF/Zarr volumes) into a
COCO dataset that pycocotools and MMDetection's ``CocoDataset`` read:

- every slice is saved as ``images/<name>.npy``, a float32 ``(H, W, C)`` array normalised per
  volume (so slices of one stack keep their relative brightness, as at inference time, where the
  input is the movie normalised as a whole);
- every instance is one annotation with a compressed RLE mask (``counts`` a str), a pixel bbox
  ``[x, y, w, h]``, its area and ``iscrowd = 0``;
- ``train.json`` and ``val.json`` are split by *group* (a timepoint or a volume), not by slice,
  because neighbouring slices of one stack are nearly the same image.

RNA spots are points; :func:`spot_masks` paints them as small discs so that Mask R-CNN can learn
them as instances.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO

from cellspot.omezarr import atomic_output

from ..errors import CocoError, read_json_file

log = logging.getLogger(__name__)
# pycocotools 2.0.11 with numpy 2 warns on every mask decode (harmless; floods rule logs).
warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy",
                        category=DeprecationWarning)



# --------------------------------------------------------------------------- arrays


def normalize_volume(volume: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Scale a ``(..., Y, X)`` volume of one channel so that its ``low``/``high`` percentiles
    map to 0 and 1 (float32, not clipped).

    A constant volume (an empty stack) maps to zeros instead of dividing by zero.
    """
    v = np.asarray(volume, np.float32)
    lo, hi = np.percentile(v, [low, high])
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        return np.zeros_like(v)
    return (v - lo) / (hi - lo)


def spot_masks(positions: np.ndarray, shape: tuple[int, int], radius: float = 2.0) -> np.ndarray:
    """Paint spots at sub-pixel ``(y, x)`` positions as discs of ``radius`` px (int32 labels).

    Instance ``i + 1`` is spot ``i``. Where two discs overlap the pixel goes to the nearer spot,
    so touching spots stay separate instances.
    """
    positions = np.asarray(positions, float).reshape(-1, 2)
    labels = np.zeros(shape, np.int32)
    dist = np.full(shape, np.inf, np.float32)
    r = int(np.ceil(radius))
    for i, (y, x) in enumerate(positions):
        cy, cx = int(round(y)), int(round(x))
        y0, y1 = max(cy - r, 0), min(cy + r + 1, shape[0])
        x0, x1 = max(cx - r, 0), min(cx + r + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(yy - y, xx - x).astype(np.float32)
        win = (d <= radius) & (d < dist[y0:y1, x0:x1])
        if not win.any():  # a disc smaller than a pixel: keep at least the nearest pixel
            win = d == d.min()
        labels[y0:y1, x0:x1][win] = i + 1
        dist[y0:y1, x0:x1][win] = d[win]
    return labels


def encode_mask(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of a boolean 2D mask, JSON-ready (``counts`` a str)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def label_annotations(labels: np.ndarray, category_id: int, image_id: int,
                      first_id: int = 1) -> list[dict]:
    """COCO annotations (RLE, bbox, area) for every instance of a 2D label image."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise CocoError(f"a label slice must be 2D, got shape {labels.shape}")
    anns = []
    ids = np.unique(labels)
    for k, lab in enumerate(ids[ids != 0]):
        rle = encode_mask(labels == lab)
        anns.append({
            "id": first_id + k,
            "image_id": int(image_id),
            "category_id": int(category_id),
            "segmentation": rle,
            "area": float(mask_utils.area(rle)),
            "bbox": [float(b) for b in mask_utils.toBbox(rle)],
            "iscrowd": 0,
        })
    return anns


# --------------------------------------------------------------------------- datasets


@dataclass
class Slice:
    """One training image: a ``(H, W, C)`` float32 array, its label slices and its split group."""

    image: np.ndarray
    labels: Mapping[str, np.ndarray]
    group: str
    name: str


def volume_slices(image: np.ndarray, labels: Mapping[str, np.ndarray], group: str,
                  z_step: int = 1, keep_empty: float = 0.1,
                  rng: np.random.Generator | None = None) -> Iterable[Slice]:
    """2D training slices of one timepoint.

    Parameters
    ----------
    image : (C, Z, Y, X) array
        Normalised channels of one timepoint (model input channels, in order).
    labels : mapping category -> (Z, Y, X) int array
    group : str
        Split group (e.g. ``"t0003"``).
    z_step : int
        Take every ``z_step``-th slice (neighbouring slices are near duplicates).
    keep_empty : float
        Fraction of slices without any instance to keep (they teach the model to stay quiet).
    """
    rng = rng or np.random.default_rng(0)
    image = np.asarray(image)
    if image.ndim != 4:
        raise CocoError(f"image of one timepoint must be (C, Z, Y, X), got shape {image.shape}")
    for name, lab in labels.items():
        if lab.shape != image.shape[1:]:
            raise CocoError(f"labels {name!r} have shape {lab.shape}, the image {image.shape[1:]}")
    for z in range(0, image.shape[1], max(1, z_step)):
        lab_z = {k: np.asarray(v[z]) for k, v in labels.items()}
        if not any(v.any() for v in lab_z.values()) and rng.random() >= keep_empty:
            continue
        yield Slice(np.ascontiguousarray(np.moveaxis(image[:, z], 0, -1), np.float32), lab_z,
                    group, f"{group}_z{z:03d}")


# The stain a category is seen in: a training slice without that stain drops its labels (a
# cell's outline is not in an image without the cytoplasm stain).
SEEN_IN = {"nucleus": "nucleus", "cell": "cytoplasm", "spot": "rna"}


def without_stains(image: np.ndarray, labels: Mapping[str, np.ndarray], channels: Sequence[str],
                   absent: Sequence[str], axis: int = -1
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``image`` and ``labels`` as a movie without the ``absent`` stains gives them: their
    channels (along ``axis``) zero, the labels of categories seen only in them dropped (stain
    dropout: one model for movies with and without a cytoplasm or RNA stain)."""
    image = np.array(image, copy=True)
    for role in absent:
        np.moveaxis(image, axis, 0)[list(channels).index(role)] = 0.0
    return image, {k: v for k, v in labels.items() if SEEN_IN.get(k) not in absent}


def write_coco(slices: Iterable[Slice], categories: Sequence[str], out_dir: str | os.PathLike,
               val_fraction: float = 0.2, seed: int = 0) -> dict[str, Path]:
    """Write ``images/*.npy``, ``train.json`` and ``val.json`` (atomically, as one folder).

    Groups are split at random with ``val_fraction`` of them (at least one when there are two
    or more groups) in the validation set.

    Returns
    -------
    dict with the paths ``train``, ``val`` and ``images``.
    """
    out_dir = Path(out_dir)
    cats = [{"id": i + 1, "name": n, "supercategory": "cell"} for i, n in enumerate(categories)]
    cat_id = {c["name"]: c["id"] for c in cats}
    with atomic_output(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        images, anns, groups = [], [], []
        for s in slices:
            image_id = len(images) + 1
            np.save(tmp / "images" / f"{s.name}.npy", s.image)
            images.append({"id": image_id, "file_name": f"images/{s.name}.npy",
                           "height": int(s.image.shape[0]), "width": int(s.image.shape[1]),
                           "group": s.group})
            for cat, lab in s.labels.items():
                if cat not in cat_id:
                    raise CocoError(f"labels for {cat!r} but categories are {list(categories)}")
                anns += label_annotations(lab, cat_id[cat], image_id, first_id=len(anns) + 1)
            groups.append(s.group)
        if not images:
            raise CocoError("no slices to write: the label volumes are empty")
        uniq = sorted(set(groups))
        rng = np.random.default_rng(seed)
        n_val = int(round(val_fraction * len(uniq)))
        if val_fraction > 0 and len(uniq) > 1:
            n_val = min(max(n_val, 1), len(uniq) - 1)
        val_groups = set(rng.permutation(uniq)[:n_val]) if n_val else set()
        for split in ("train", "val"):
            keep = {im["id"] for im in images if (im["group"] in val_groups) == (split == "val")}
            doc = {"info": {"description": f"cellspot {split} set", "version": "1"},
                   "licenses": [],
                   "images": [im for im in images if im["id"] in keep],
                   "annotations": [a for a in anns if a["image_id"] in keep],
                   "categories": cats}
            (tmp / f"{split}.json").write_text(json.dumps(doc))
    return {"train": out_dir / "train.json", "val": out_dir / "val.json",
            "images": out_dir / "images"}


def coco_from_volumes(image: np.ndarray, labels: Mapping[str, np.ndarray],
                      out_dir: str | os.PathLike, categories: Sequence[str] | None = None,
                      normalize: bool = True, z_step: int = 1, keep_empty: float = 0.1,
                      val_fraction: float = 0.2, seed: int = 0) -> dict[str, Path]:
    """COCO dataset from a movie and its label volumes (one group per timepoint).

    Parameters
    ----------
    image : (T, C, Z, Y, X) array
        The input channels of the model, in order.
    labels : mapping category -> (T, Z, Y, X) int array
        Per-category instance labels (3D ids are fine: each slice is relabelled by its values).
    """
    image = np.asarray(image)
    if image.ndim != 5:
        raise CocoError(f"image must be (T, C, Z, Y, X), got shape {image.shape}")
    categories = list(categories or labels)
    rng = np.random.default_rng(seed)
    if normalize:  # per channel over the whole movie, like the preprocessing stage
        image = np.stack([normalize_volume(image[:, c]) for c in range(image.shape[1])], 1)

    def gen():
        for t in range(image.shape[0]):
            yield from volume_slices(image[t], {k: v[t] for k, v in labels.items()},
                                     f"t{t:04d}", z_step, keep_empty, rng)

    return write_coco(gen(), categories, out_dir, val_fraction, seed)


def spots_to_label_volume(spots, shape_zyx: tuple[int, int, int], radius: float = 2.0,
                          z_half_width: float = 0.5) -> np.ndarray:
    """Spot table (columns z, y, x) of one timepoint -> (Z, Y, X) labels of small discs.

    A spot is painted in the slices within ``z_half_width`` of its z (the slice it is in focus).
    """
    out = np.zeros(shape_zyx, np.int32)
    z = np.asarray(spots["z"], float)
    yx = np.stack([np.asarray(spots["y"], float), np.asarray(spots["x"], float)], 1)
    for zi in range(shape_zyx[0]):
        sel = np.abs(z - zi) <= z_half_width
        if sel.any():
            out[zi] = spot_masks(yx[sel], shape_zyx[1:], radius)
    return out


def _shift_labels(labels: np.ndarray, shift: Sequence[float]) -> np.ndarray:
    """Move a (Z, Y, X) label volume by ``shift`` px, nearest-neighbour (labels stay labels)."""
    from scipy.ndimage import shift as nd_shift

    if not np.any(np.abs(shift) > 1e-6):
        return labels
    return nd_shift(labels, shift, order=0, mode="constant", cval=0)


def preprocessed_like_workflow(image: np.ndarray, roles: Sequence[str],
                               preprocess: Mapping[str, Mapping] | None,
                               voxel_size: Sequence[float]) -> np.ndarray:
    """``(T, C, Z, Y, X)`` model inputs normalised and filtered as the preprocess stage does.

    ``preprocess`` maps each role to its ``preprocess.channels`` settings (normalisation and
    filters); a role without settings gets the stage's default (percentiles 1-99.8, no filter).
    Training images made this way look like what inference sees in ``preprocessed.ome.zarr``.
    """
    from cellspot.preprocess import ChannelSettings, preprocess_channel

    preprocess = preprocess or {}
    return np.stack([preprocess_channel(image[:, c],
                                        ChannelSettings.model_validate(preprocess.get(r) or {}),
                                        voxel_size)
                     for c, r in enumerate(roles)], 1)


def simulation_volumes(movie, model: str, channels: Sequence[str], spot_radius: float = 2.0,
                       preprocess: Mapping[str, Mapping] | None = None,
                       spot_z_half_width: float = 0.5) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Model inputs ``(T, C, Z, Y, X)`` and label volumes of a :mod:`cellspot.simulate` movie.

    ``channels`` are roles (the simulator names its channels ``nucleus``, ``cytoplasm``,
    ``rna``). With ``preprocess`` (role -> settings of the preprocess stage) the images are
    normalised and filtered as the workflow does (:func:`preprocessed_like_workflow`), else
    normalised per channel. A spot is labelled in the slices within ``spot_z_half_width`` of
    its z.

    The movie's image is in the raw (drifted) frame and its truth in the sample frame
    (``raw = sample + drift``), so labels and spot positions are moved by the drift first.
    """
    img = np.asarray(movie.image)
    idx = [movie.meta.channel_index(c) for c in channels]
    img = img[:, idx]
    if preprocess is not None:
        img = preprocessed_like_workflow(img, channels, preprocess, movie.meta.voxel_size)
    else:
        img = np.stack([normalize_volume(img[:, c]) for c in range(img.shape[1])], 1)
    drift = getattr(movie, "drift", None)
    shifts = np.zeros((img.shape[0], 3))
    if drift is not None and len(drift):
        d = drift.set_index("t")
        for t in range(img.shape[0]):
            if t in d.index:
                shifts[t] = d.loc[t, ["dz", "dy", "dx"]].to_numpy(float)
    if model == "cells":
        labels = {
            "nucleus": np.stack([_shift_labels(np.asarray(movie.nuclei[t]), shifts[t])
                                 for t in range(img.shape[0])]),
            "cell": np.stack([_shift_labels(np.asarray(movie.cells[t]), shifts[t])
                              for t in range(img.shape[0])]),
        }
    elif model == "spots":
        spots = movie.spots
        vols = []
        for t in range(img.shape[0]):
            s = spots[spots["t"] == t]
            pos = {"z": s["z"] + shifts[t, 0], "y": s["y"] + shifts[t, 1],
                   "x": s["x"] + shifts[t, 2]}
            vols.append(spots_to_label_volume(pos, img.shape[2:], spot_radius,
                                              spot_z_half_width))
        labels = {"spot": np.stack(vols)}
    else:
        raise CocoError(f"unknown model {model!r}: expected 'cells' or 'spots'")
    return img, labels


def coco_from_simulation(movie, model: str, out_dir: str | os.PathLike,
                         channels: Sequence[str], spot_radius: float = 2.0,
                         preprocess: Mapping[str, Mapping] | None = None,
                         spot_z_half_width: float = 0.5, absent: Sequence[str] = (),
                         **kwargs) -> dict[str, Path]:
    """COCO dataset for model ``"cells"`` or ``"spots"`` from a :mod:`cellspot.simulate` movie
    (:func:`simulation_volumes`; ``kwargs`` go to :func:`coco_from_volumes`), without the
    ``absent`` stains (the user's movie does not have them)."""
    img, labels = simulation_volumes(movie, model, channels, spot_radius, preprocess,
                                     spot_z_half_width)
    img, kept = without_stains(img, labels, channels, absent, axis=1)
    if not kept:
        raise CocoError(f"the {model} model has nothing to learn without the "
                        f"{' and '.join(absent)} stain(s)")
    return coco_from_volumes(img, kept, out_dir, list(labels), normalize=False, **kwargs)


# --------------------------------------------------------------------------- reading/checking


def load_coco(path: str | os.PathLike) -> COCO:
    """Load a COCO JSON with pycocotools, with a clear error when it is missing or malformed."""
    path = Path(path)
    doc = read_json_file(path, CocoError, "COCO file")
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise CocoError(f"{path}: not a COCO instances file (no {key!r} list)")
    coco = COCO()
    coco.dataset = doc
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def check_coco(path: str | os.PathLike) -> dict:
    """Check that every annotation decodes to a mask inside its image with the stated area/bbox.

    Returns counts ``{"images", "annotations", "categories"}``; raises :class:`CocoError` on the
    first inconsistency.
    """
    coco = load_coco(path)
    for ann in coco.dataset["annotations"]:
        im = coco.imgs.get(ann["image_id"])
        if im is None:
            raise CocoError(f"{path}: annotation {ann['id']} refers to a missing image")
        if ann["category_id"] not in coco.cats:
            raise CocoError(f"{path}: annotation {ann['id']} has an unknown category")
        rle = coco.annToRLE(ann)
        m = mask_utils.decode(rle)
        if m.shape != (im["height"], im["width"]):
            raise CocoError(f"{path}: annotation {ann['id']} mask shape {m.shape} differs "
                            f"from its image {(im['height'], im['width'])}")
        if abs(float(m.sum()) - ann["area"]) > 0.5 or not np.allclose(
                mask_utils.toBbox(rle), ann["bbox"]):
            raise CocoError(f"{path}: annotation {ann['id']} area/bbox disagree with its mask")
    return {"images": len(coco.imgs), "annotations": len(coco.anns),
            "categories": len(coco.cats)}


def import_coco(path: str | os.PathLike, out_dir: str | os.PathLike,
                val_fraction: float = 0.2, seed: int = 0) -> dict[str, Path]:
    """Use an existing COCO JSON (e.g. exported from an annotation tool) as training data.

    Images are read from paths relative to the JSON file, converted to normalised float32
    ``.npy`` like :func:`write_coco`'s, and the annotations split by image.
    """
    import tifffile
    from skimage.io import imread

    path = Path(path)
    coco = load_coco(path)
    cats = sorted(coco.cats.values(), key=lambda c: c["id"])

    def gen():
        for im in coco.imgs.values():
            f = path.parent / im["file_name"]
            if not f.is_file():
                raise CocoError(f"{path}: image {f} is missing")
            arr = (np.load(f) if f.suffix == ".npy" else
                   tifffile.imread(f) if f.suffix.lower() in (".tif", ".tiff") else imread(f))
            arr = np.asarray(arr)
            if arr.ndim == 2:
                arr = arr[..., None]
            if arr.shape[:2] != (im["height"], im["width"]):
                raise CocoError(f"{f}: shape {arr.shape[:2]} but {path} says "
                                f"{(im['height'], im['width'])}")
            arr = np.stack([normalize_volume(arr[..., c]) for c in range(arr.shape[-1])], -1)
            labels = {}
            for c in cats:
                anns = coco.loadAnns(coco.getAnnIds(imgIds=im["id"], catIds=c["id"]))
                lab = np.zeros(arr.shape[:2], np.int32)
                for k, a in enumerate(anns):
                    lab[coco.annToMask(a).astype(bool)] = k + 1
                labels[c["name"]] = lab
            yield Slice(arr, labels, f"img{im['id']}", f"img{im['id']:06d}")

    return write_coco(gen(), [c["name"] for c in cats], out_dir, val_fraction, seed)
