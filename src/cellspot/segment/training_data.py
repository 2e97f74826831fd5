"""Training sets for the segment stage from the source a model's ``training_data`` names.

:func:`build_training_coco` reads the user's annotated volumes, a COCO file or their plain
images (annotation-free spot training), or simulates a movie, and writes a COCO dataset with
:mod:`cellspot.segment.coco`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from pydantic import ValidationError

from ..errors import CocoError
from .coco import (
    Slice,
    coco_from_simulation,
    coco_from_volumes,
    import_coco,
    normalize_volume,
    spot_masks,
    spots_to_label_volume,
    write_coco,
)
from .settings import TrainingData

log = logging.getLogger(__name__)


def read_volume(path: str | os.PathLike, channel: str | int | None = None) -> np.ndarray:
    """Read an image or label volume: OME-Zarr (TCZYX or TZYX), Zarr, TIFF, PNG or ``.npy``.

    Returns the array as stored, with ``channel`` (name or index) taken out of an OME-Zarr
    image (axis 1 of TCZYX). Plain files are returned as read (the caller checks the shape).
    """
    from cellspot.omezarr import open_array, read_meta

    path = Path(path)
    if not path.exists():
        raise CocoError(f"{path}: no such file")
    name = path.name.lower()
    if path.is_dir():
        try:
            arr = open_array(path)
        except Exception:
            import zarr

            arr = zarr.open_array(str(path), mode="r")
        if channel is not None and arr.ndim == 5:
            return np.asarray(arr[:, read_meta(path).channel_index(channel)])
        return np.asarray(arr)
    if name.endswith((".tif", ".tiff")):
        import tifffile

        return tifffile.imread(path)
    if name.endswith(".npy"):
        return np.load(path)
    from skimage.io import imread

    return np.asarray(imread(path))


def _as_tczyx(arr: np.ndarray, what: str) -> np.ndarray:
    """(Y,X) / (Z,Y,X) / (T,Z,Y,X) / (T,C,Z,Y,X) -> 5D (one channel added where missing)."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        return arr[None, None, None]
    if arr.ndim == 3:
        return arr[None, None]
    if arr.ndim == 4:
        return arr[:, None]
    if arr.ndim == 5:
        return arr
    raise CocoError(f"{what}: cannot read a {arr.ndim}D array as an image")


def _as_tzyx(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if 2 <= arr.ndim <= 4:
        return arr.reshape((1,) * (4 - arr.ndim) + arr.shape)
    raise CocoError(f"{what}: labels must be 2D-4D (T, Z, Y, X), got {arr.ndim}D")


def _image_slices(paths: Sequence[str], channel, max_slices: int) -> list[np.ndarray]:
    """2D slices of one channel from image files (evenly spaced up to ``max_slices``)."""
    out = []
    for p in paths:
        arr = read_volume(p, channel)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4) and Path(p).suffix.lower() == ".png":
            arr = arr[..., 0]  # an RGB(A) PNG of a grey image
        vol = _as_tczyx(arr, str(p))
        out += [vol[t, 0, z] for t in range(vol.shape[0]) for z in range(vol.shape[2])]
    if not out:
        raise CocoError("no images given for annotation-free spot training data")
    if len(out) > max_slices:
        out = [out[i] for i in np.linspace(0, len(out) - 1, max_slices).round().astype(int)]
    return out


def build_training_coco(model: str, settings: Mapping, out_dir: str | os.PathLike,
                        channels: Sequence[str | int], roles: Sequence[str] | None = None,
                        preprocess: Mapping[str, Mapping] | None = None) -> dict[str, Path]:
    """COCO training set for ``model`` from the source named in ``settings["source"]``.

    ``channels`` are the model's inputs as the user's movie names them, ``roles`` the same
    inputs as roles (``nucleus``, ``cytoplasm``, ``rna``; default: ``channels``). A simulated
    training movie is looked up by role, a user's image by name, so renamed channels train.
    ``preprocess`` (role -> preprocess-stage settings) makes simulated training images look
    like the workflow's preprocessed movie.

    Sources:

    - ``simulation``: a synthetic movie (``settings["simulation"]``: SimulationConfig fields,
      ``settings["seed"]``) and its exact ground truth;
    - ``labels``: a user's image (``image``, TCZYX OME-Zarr or TIFF) and label volumes
      (``labels: {category: path}``, TZYX) or, for spots, a table ``spots_csv`` (t, z, y, x);
    - ``coco``: an existing COCO JSON (``coco``) with its images;
    - ``psf_synthetic`` (spots): spots rendered with the PSF measured on the user's own images
      (``images``), placed into their spot-free background: no annotation needed;
    - ``pseudo_labels`` (spots): the LoG detector's spots on the user's images as labels.

    Common keys: ``val_fraction``, ``seed``, ``z_step``, ``keep_empty``, ``spot_radius``.
    """
    try:
        s = TrainingData.model_validate(dict(settings))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise CocoError(f"training_data.{'.'.join(map(str, err['loc']))}: {err['msg']}"
                        if err["loc"] else f"training_data: {err['msg']}") from None
    source = s.source
    # stains the user's movie does not have (channels.<role>: null)
    absent = [r for r, c in zip(roles or channels, channels) if c is None]
    common = dict(val_fraction=s.val_fraction, seed=s.seed)
    vol_kw = dict(z_step=s.z_step, keep_empty=s.keep_empty, **common)
    radius = s.spot_radius
    if model == "spots" and source in ("psf_synthetic", "pseudo_labels"):
        from cellspot.segment import spots_classic

        slices = _image_slices(s.images, s.channel, s.max_slices)
        sigma = s.sigma

        def gen():
            if source == "pseudo_labels":
                psf = sigma or spots_classic.estimate_psf_sigma(slices)[0]
                for k, img in enumerate(slices):
                    det = spots_classic.detect_spots_log(img, psf)
                    lab = spot_masks(det[["y", "x"]].to_numpy(), img.shape, radius)
                    yield Slice(normalize_volume(img)[..., None], {"spot": lab},
                                f"img{k:04d}", f"img{k:04d}")
            else:
                for k, (img, pos, psf) in enumerate(spots_classic.synthetic_spot_slices(
                        slices, sigma=sigma, n_copies=s.n_copies, seed=common["seed"])):
                    lab = spot_masks(pos, img.shape, max(radius, 1.5 * psf))
                    # group = source image, so that renderings of one image share a split
                    yield Slice(normalize_volume(img)[..., None], {"spot": lab},
                                f"src{k // s.n_copies:04d}",
                                f"syn{k:05d}")

        return write_coco(gen(), ["spot"], out_dir, **common)
    if source == "simulation":
        from cellspot.simulate import SimulationConfig, simulate_movie

        movie = simulate_movie(SimulationConfig(**s.simulation), seed=s.seed)
        log.info("simulated a training movie %s", movie.image.shape)
        return coco_from_simulation(movie, model, out_dir, list(roles or channels),
                                    spot_radius=radius, preprocess=preprocess, absent=absent,
                                    **vol_kw)
    if source == "coco":
        return import_coco(s.coco, out_dir, **common)
    if source == "labels":
        ipath = Path(s.image)
        image = _as_tczyx(read_volume(ipath), str(ipath))
        if (ipath / ".zattrs").is_file() and image.ndim == 5:  # OME-Zarr: channels by name
            from cellspot.omezarr import read_meta

            meta = read_meta(ipath)
            idx = [None if c is None else meta.channel_index(c) for c in channels]
        else:  # a TIFF: the given indices, or the first channels in order
            idx = list(s.channel_indices or range(len(channels)))
        if max((i for i in idx if i is not None), default=-1) >= image.shape[1]:
            raise CocoError(f"{ipath}: {image.shape[1]} channels, the model takes "
                            f"{len(channels)} (channel_indices {idx})")
        image = np.stack([np.zeros_like(image[:, 0]) if i is None else image[:, i]
                          for i in idx], 1)
        labels = {}
        for cat, p in (s.labels or {}).items():
            labels[cat] = _as_tzyx(read_volume(p), p)
        if model == "spots" and s.spots_csv:
            import pandas as pd

            tab = pd.read_csv(s.spots_csv)
            missing = {"z", "y", "x"} - set(tab.columns)
            if missing:
                raise CocoError(f"{s.spots_csv}: columns {sorted(missing)} missing")
            if "t" not in tab:
                tab["t"] = 0
            labels["spot"] = np.stack([
                spots_to_label_volume(tab[tab["t"] == t], image.shape[2:], radius)
                for t in range(image.shape[0])])
        if not labels:
            raise CocoError("source 'labels' needs 'labels' (category: path) or 'spots_csv'")
        for cat, lab in labels.items():
            if lab.shape != image.shape[:1] + image.shape[2:]:
                raise CocoError(f"labels {cat!r} have shape {lab.shape}, the image "
                                f"{image.shape[:1] + image.shape[2:]}")
        return coco_from_volumes(image, labels, out_dir, list(labels), **vol_kw)
    raise CocoError(f"unknown training data source {source!r} for model {model!r}")
