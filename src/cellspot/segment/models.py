"""MMDetection Mask R-CNN configs for cells and RNA spots, and the transforms they use.

The models are plain MMDetection configs (``config/maskrcnn_cells.py``,
``config/maskrcnn_spots.py``).
This module loads one with :class:`mmengine.Config`, applies a user's overrides (a nested dict
from ``config.yaml``), fills in data paths and the schedule, and keeps derived settings
consistent (the FPN input channels follow the ResNet depth).

It also registers the microscopy transforms the configs name in MMDetection's ``TRANSFORMS``
registry (the configs import this module through ``custom_imports``):

- ``LoadMicroscopyImage``: float32 ``(H, W, C)`` images from ``.npy``/TIFF/PNG files, or an
  array already in ``results["img"]`` (inference on in-memory slices);
- ``RandomTranspose``: with MMDetection's flips, all 8 rotations/reflections of the square;
- ``RandomIntensity`` (gain, offset, gamma per channel) and ``RandomGaussianNoise``;
- ``SemanticFromInstances``: a semantic map (background / cytoplasm / nucleus) painted from the
  instance masks after augmentation. Mask R-CNN does not read it: it stays registered because
  the shipped starter cells config names it in its pipelines (drop it there when the starter
  models are next rebuilt).

Importing this module imports mmdet, which needs a compiled mmcv (``mmcv.ops``).
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from cellspot.errors import SegmentError  # noqa: F401 - re-exported
from cellspot.segment.starter import MODELS

CLASSES = {"cells": ("nucleus", "cell"), "spots": ("spot",)}
# Output channels of the ResNet stages by depth (FPN input channels).
_RESNET_CHANNELS = {18: [64, 128, 256, 512], 34: [64, 128, 256, 512],
                    50: [256, 512, 1024, 2048], 101: [256, 512, 1024, 2048],
                    152: [256, 512, 1024, 2048]}



def _require_mmdet():
    try:
        import mmcv.ops  # noqa: F401  (compiled ops: RoIAlign, nms)
        import mmdet  # noqa: F401
    except Exception as exc:  # ImportError, or an ABI error of a mismatched mmcv build
        raise SegmentError(
            "the segmentation stage needs MMDetection 3.3 with a compiled mmcv 2.1 "
            f"(import failed: {exc}); run scripts/setup.sh or use envs/segment.yaml"
        ) from exc


_require_mmdet()
# pycocotools 2.0.11 with numpy 2 warns on every mask decode (harmless; floods rule logs).
warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy",
                        category=DeprecationWarning)

from mmcv.transforms import BaseTransform  # noqa: E402
from mmdet.registry import TRANSFORMS  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmengine.config import Config  # noqa: E402


def default_config_path(model: str) -> Path:
    """``config/maskrcnn_<model>.py`` of the cellspot checkout (the workflow's config folder)."""
    if model not in MODELS:
        raise SegmentError(f"unknown model {model!r}: expected one of {MODELS}")
    return Path(__file__).resolve().parents[3] / "config" / f"maskrcnn_{model}.py"


# --------------------------------------------------------------------------- checkpoints


def _load_local_checkpoint(filename: str, map_location=None):
    """MMEngine's local checkpoint loader with ``weights_only=False``.

    Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which refuses MMEngine
    checkpoints: they pickle the message hub, numpy scalars and the config (MMEngine issue
    1655), so ``load_from`` and ``resume`` fail. The files loaded here are this workflow's own
    checkpoints or one the user names in config.yaml, i.e. as trusted as the code being run.
    """
    import torch

    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return torch.load(filename, map_location=map_location, weights_only=False)


def allow_mmengine_checkpoints() -> None:
    """Make MMEngine load local checkpoints with ``weights_only=False`` (see above)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=_load_local_checkpoint, force=True)


allow_mmengine_checkpoints()


# --------------------------------------------------------------------------- configs


def _merge(base: dict, override: Mapping) -> dict:
    """Recursive dict merge (``override`` wins; lists are replaced, not merged)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_model_config(path: str | os.PathLike, overrides: Mapping | None = None,
                      depth: int | None = None) -> Config:
    """Load an MMDetection config and apply ``overrides`` and the ResNet ``depth``.

    Parameters
    ----------
    path : path-like
        An MMDetection config file.
    overrides : mapping, optional
        Nested dict merged into the config (``{"model": {"test_cfg": {...}}}``) or dotted keys
        (``{"model.backbone.depth": 50}``), as in MMDetection's ``--cfg-options``.
    depth : int, optional
        ResNet depth; the FPN input channels are set to match.
    """
    path = Path(path)
    if not path.is_file():
        raise SegmentError(f"{path}: no such model config")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:
        raise SegmentError(f"{path}: not a readable MMDetection config ({exc})") from exc
    if overrides:
        dotted = {k: v for k, v in overrides.items() if "." in k}
        nested = {k: v for k, v in overrides.items() if "." not in k}
        if nested:
            cfg = Config(_merge(cfg.to_dict(), nested), filename=cfg.filename)
        if dotted:
            cfg.merge_from_dict(dotted)
    if depth is not None:
        if depth not in _RESNET_CHANNELS:
            raise SegmentError(f"ResNet depth {depth} not supported: {sorted(_RESNET_CHANNELS)}")
        cfg.model.backbone.depth = int(depth)
    bb = cfg.model.backbone
    if bb.get("type") == "ResNet" and cfg.model.get("neck", {}).get("type") == "FPN":
        n_stages = bb.get("num_stages", 4)
        scale = bb.get("base_channels", 64) / 64  # a narrower ResNet has narrower stages
        cfg.model.neck.in_channels = [int(c * scale)
                                      for c in _RESNET_CHANNELS[bb.depth][:n_stages]]
    return cfg


def check_starter_matches(model: str, config_path: str | os.PathLike,
                          overrides: Mapping | None = None, depth: int | None = None) -> None:
    """Raise :class:`SegmentError` when the configured model differs from the starter model's.

    With ``checkpoint: builtin`` inference builds the starter model's own config; a user who
    also changed ``config``, ``depth`` or ``overrides`` expects that model, which the shipped
    weights do not fit. The message names the settings and the first differing key.
    """
    from cellspot.segment.starter import first_difference, setting, starter_files

    starter = Config.fromfile(str(starter_files(model)["config"]))
    mine = load_model_config(config_path, overrides, depth)
    diff = first_difference(mine.model.to_dict(), starter.model.to_dict())
    if diff:
        raise SegmentError(
            f"{setting(model, 'checkpoint')}: builtin is the starter {model} model, but "
            f"{setting(model, 'config')} ({config_path}) with {setting(model, 'depth')} and "
            f"{setting(model, 'overrides')} describes another model: {diff}. Use the "
            "default config, or train your model (checkpoint: \"\", pretrained: \"\")")


def model_input_channels(cfg: Config) -> int:
    """Number of image channels the model takes."""
    return int(cfg.model.backbone.get("in_channels", 3))


def set_data_root(cfg: Config, coco_dir: str | os.PathLike, with_val: bool = True) -> Config:
    """Point the train (and validation) data at a folder from
    :func:`cellspot.segment.coco.write_coco`.

    Without a validation set (``with_val=False``) the validation loop is switched off.
    """
    root = str(Path(coco_dir).resolve()) + os.sep
    cfg.train_dataloader.dataset.data_root = root
    if with_val:
        for key in ("val_dataloader", "test_dataloader"):
            cfg[key].dataset.data_root = root
        for key in ("val_evaluator", "test_evaluator"):
            cfg[key].ann_file = root + "val.json"
    else:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    return cfg


def set_schedule(cfg: Config, max_iters: int, checkpoint_interval: int | None = None,
                 val_interval: int | None = None, log_interval: int | None = None,
                 batch_size: int | None = None, lr: float | None = None,
                 num_workers: int | None = None) -> Config:
    """Iterations, learning-rate schedule (warm-up, steps at 75/90 %), checkpoints, logging."""
    max_iters = int(max_iters)
    cfg.max_iters = max_iters
    cfg.train_cfg.max_iters = max_iters
    if val_interval is not None:
        cfg.train_cfg.val_interval = int(val_interval)
    warm = max(1, min(200, max_iters // 5))
    cfg.param_scheduler = [
        dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warm),
        dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters,
             milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
    ]
    ck = cfg.default_hooks.checkpoint
    ck.interval = int(checkpoint_interval or max(1, min(ck.get("interval", 1000), max_iters)))
    if log_interval is not None:
        cfg.default_hooks.logger.interval = int(log_interval)
        cfg.log_processor.window_size = int(log_interval)
    if batch_size is not None:
        cfg.train_dataloader.batch_size = int(batch_size)
    if lr is not None:
        cfg.optim_wrapper.optimizer.lr = float(lr)
    if num_workers is not None:
        for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
            if cfg.get(key):
                cfg[key].num_workers = int(num_workers)
                cfg[key].persistent_workers = bool(num_workers)
    return cfg


def inference_pipeline(cfg: Config) -> list[dict]:
    """The config's test pipeline without annotation loading (for in-memory slices)."""
    pipe = cfg.get("test_pipeline") or cfg.test_dataloader.dataset.pipeline
    return [copy.deepcopy(dict(t)) for t in pipe if t["type"] != "LoadAnnotations"]


def upscale_of(cfg: Config) -> float:
    """Input scale factor of the test pipeline (1 when it does not resize)."""
    for t in inference_pipeline(cfg):
        if t["type"] == "Resize" and t.get("scale_factor"):
            sf = t["scale_factor"]
            return float(sf if np.isscalar(sf) else sf[0])
    return 1.0


# --------------------------------------------------------------------------- transforms


def _read_image(path: str) -> np.ndarray:
    p = Path(path)
    if p.suffix == ".npy":
        return np.load(p)
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(p)
    from skimage.io import imread

    img = np.asarray(imread(p))
    if img.dtype.kind in "ui":  # 8/16-bit files: scale to [0, 1]
        img = img.astype(np.float32) / np.iinfo(img.dtype).max
    return img


@TRANSFORMS.register_module()
class LoadMicroscopyImage(BaseTransform):
    """Load a float32 ``(H, W, C)`` image from ``img_path``, or take ``results["img"]``.

    Parameters
    ----------
    num_channels : int, optional
        Channels the model takes. A 1-channel image is repeated; a wider one is cut to
        ``channels`` (indices) or refused.
    channels : sequence of int, optional
        Which channels of a multi-channel file to use.
    """

    def __init__(self, num_channels: int | None = None, channels=None):
        self.num_channels = num_channels
        self.channels = list(channels) if channels is not None else None

    def transform(self, results: dict) -> dict:
        img = results.get("img")
        if img is None:
            img = _read_image(results["img_path"])
        img = np.asarray(img, np.float32)
        if img.ndim == 2:
            img = img[..., None]
        if self.channels is not None:
            img = img[..., self.channels]
        n = self.num_channels
        if n is not None and img.shape[-1] != n:
            if img.shape[-1] == 1:
                img = np.repeat(img, n, -1)
            else:
                raise SegmentError(
                    f"{results.get('img_path', 'image')}: {img.shape[-1]} channels but the "
                    f"model takes {n}")
        results["img"] = np.ascontiguousarray(img)
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        results.setdefault("scale_factor", (1.0, 1.0))  # predict(rescale=True) needs it
        return results


@TRANSFORMS.register_module()
class RandomTranspose(BaseTransform):
    """Swap the y and x axes of the image, boxes, masks and segmentation map with ``prob``."""

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results["img"]
        results["img"] = np.ascontiguousarray(np.swapaxes(img, 0, 1))
        results["img_shape"] = results["img"].shape[:2]
        if results.get("gt_bboxes") is not None:
            b = results["gt_bboxes"]
            results["gt_bboxes"] = type(b)(b.tensor[:, [1, 0, 3, 2]])
        if results.get("gt_masks") is not None:
            m = results["gt_masks"]
            results["gt_masks"] = BitmapMasks(np.ascontiguousarray(m.masks.transpose(0, 2, 1)),
                                              m.width, m.height)
        if results.get("gt_seg_map") is not None:
            results["gt_seg_map"] = np.ascontiguousarray(results["gt_seg_map"].T)
        return results


@TRANSFORMS.register_module()
class RandomIntensity(BaseTransform):
    """Per-channel gain, offset and gamma drawn uniformly from the given ranges, with ``prob``.

    Gamma acts on the magnitude (``sign(v) |v|^g``) so that negative values of a normalised
    image stay finite.
    """

    def __init__(self, gain=(0.7, 1.4), offset=(-0.1, 0.1), gamma=(0.8, 1.25), prob=0.8):
        self.gain, self.offset, self.gamma, self.prob = gain, offset, gamma, prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results["img"].astype(np.float32, copy=True)
        n = img.shape[-1] if img.ndim == 3 else 1
        g = np.random.uniform(*self.gamma, n).astype(np.float32)
        a = np.random.uniform(*self.gain, n).astype(np.float32)
        b = np.random.uniform(*self.offset, n).astype(np.float32)
        img = np.sign(img) * np.abs(img) ** g * a + b
        results["img"] = img
        return results


@TRANSFORMS.register_module()
class RandomGaussianNoise(BaseTransform):
    """Add Gaussian noise with a standard deviation drawn from ``sigma``, with ``prob``."""

    def __init__(self, sigma=(0.0, 0.05), prob=0.5):
        self.sigma, self.prob = sigma, prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results["img"]
        s = np.random.uniform(*self.sigma)
        results["img"] = (img + np.random.normal(0, s, img.shape)).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class SemanticFromInstances(BaseTransform):
    """Paint ``gt_seg_map`` from the instance masks: each class's masks get its value.

    Classes are painted in increasing value, so with ``values=dict(cell=1, nucleus=2)`` a
    nucleus wins over its cell (background 0 / cytoplasm 1 / nucleus 2). Place it after the
    geometric augmentations, so the map follows the flipped masks.

    Parameters
    ----------
    classes : sequence of str
        The dataset's classes, in label order.
    values : mapping class name -> int
        Value painted for each class; classes not named are not painted.
    """

    def __init__(self, classes, values):
        self.classes = tuple(classes)
        unknown = set(values) - set(self.classes)
        if unknown:
            raise SegmentError(f"SemanticFromInstances: unknown classes {sorted(unknown)}")
        self.values = sorted(((int(v), self.classes.index(c)) for c, v in values.items()))

    def transform(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        sem = np.zeros((h, w), np.uint8)
        masks, labels = results.get("gt_masks"), results.get("gt_bboxes_labels")
        if masks is not None and labels is not None and len(labels):
            m = masks.masks.astype(bool)
            for value, label in self.values:
                sel = np.asarray(labels) == label
                if sel.any():
                    sem[m[sel].any(0)] = value
        results["gt_seg_map"] = sem
        return results


def resolved_config_text(cfg: Config) -> str:
    """The config as Python text (what is saved next to the checkpoint)."""
    return cfg.pretty_text
