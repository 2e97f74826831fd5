"""Training a Mask R-CNN model (cells or spots) with MMEngine's Runner, on GPU or CPU.

Layout of a model folder (``models/<model>/``)::

    checkpoint.pth   the trained weights (an MMEngine checkpoint; ``meta.cfg`` holds the config)
    config.py        the resolved MMDetection config (what inference builds the model from)
    loss.png         loss curves (and validation mAP when there is a validation set)
    tensorboard/     TensorBoard event files, one folder per (resumed) run
    work/            MMEngine's work dir: iteration checkpoints, logs, scalars.json

A killed job resumes from ``work/last_checkpoint`` (iteration, optimiser and scheduler state)
when it is run again with the same ``work/``; the work dir is not a declared Snakemake output,
so Snakemake leaves it in place for the next attempt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Mapping

from cellspot.layout import in_model
from cellspot.omezarr import atomic_output, write_text_atomic
from cellspot.segment.models import (
    SegmentError,
    default_config_path,
    load_model_config,
    set_data_root,
    set_schedule,
)
from cellspot.segment.starter import setting

log = logging.getLogger(__name__)


def _register_time_limit_hook():
    """``TimeLimitHook``: stop training cleanly (with a checkpoint) after a wall-clock budget.

    A SLURM job killed at its time limit loses everything since the last checkpoint; stopping
    a little before keeps all iterations done, and the next job resumes from there.
    """
    import time

    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    if HOOKS.get("TimeLimitHook") is not None:
        return

    @HOOKS.register_module()
    class TimeLimitHook(Hook):
        priority = "LOWEST"  # after the checkpoint hook

        def __init__(self, seconds: float):
            self.seconds = float(seconds)
            self.start = None

        def before_train(self, runner):
            self.start = time.monotonic()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if time.monotonic() - self.start < self.seconds:
                return
            if runner.iter + 1 >= runner.max_iters:
                return  # the last iteration: the checkpoint hook saves it anyway
            runner.logger.info("time limit of %.0f s reached at iteration %d: stopping",
                               self.seconds, runner.iter + 1)
            self.stopped = True
            runner.train_loop.stop_training = True

        def after_train(self, runner):
            # Saved here, once the loop has counted the iteration (inside after_train_iter the
            # checkpoint would record one iteration less, and a resume would repeat it).
            if getattr(self, "stopped", False):
                name = f"iter_{runner.iter}.pth"
                runner.save_checkpoint(runner.work_dir, name)
                Path(runner.work_dir, "last_checkpoint").write_text(
                    str(Path(runner.work_dir, name)))


def _has_images(ann_file: Path) -> bool:
    return ann_file.is_file() and bool(json.loads(ann_file.read_text()).get("images"))


def build_train_config(model: str, coco_dir: str | os.PathLike, work_dir: str | os.PathLike,
                       config_path: str | os.PathLike | None = None,
                       overrides: Mapping | None = None, depth: int | None = None,
                       max_iters: int = 20000, batch_size: int | None = None,
                       lr: float | None = None, checkpoint_interval: int | None = None,
                       val_interval: int | None = None, log_interval: int | None = None,
                       load_from: str | os.PathLike | None = None, amp: bool = True,
                       num_workers: int | None = None, seed: int = 0, device: str | None = None,
                       time_limit_s: float | None = None, crop_size: int | None = None):
    """The resolved training config (an :class:`mmengine.Config`).

    ``time_limit_s`` stops training after that many seconds with a checkpoint (a later run
    resumes); the learning-rate schedule still follows ``max_iters``. ``crop_size`` trains on
    random crops of that size (px) of larger images (faster iterations, same objects).
    """
    import torch

    coco_dir = Path(coco_dir)
    if not _has_images(coco_dir / "train.json"):
        raise SegmentError(f"{coco_dir / 'train.json'}: missing or without images")
    cfg = load_model_config(config_path or default_config_path(model), overrides, depth)
    with_val = _has_images(coco_dir / "val.json") and (val_interval is None or val_interval > 0)
    set_data_root(cfg, coco_dir, with_val=with_val)
    set_schedule(cfg, max_iters, checkpoint_interval=checkpoint_interval,
                 val_interval=val_interval if with_val else None, log_interval=log_interval,
                 batch_size=batch_size, lr=lr, num_workers=num_workers)
    if crop_size:
        pipe = list(cfg.train_dataloader.dataset.pipeline)
        at = next(i for i, t in enumerate(pipe) if t["type"] == "LoadAnnotations") + 1
        pipe[at:at] = [
            dict(type="RandomCrop", crop_size=(int(crop_size), int(crop_size)),
                 allow_negative_crop=True, recompute_bbox=True),
            # RandomCrop keeps an object whose box reaches into the crop even when its mask
            # does not; the recomputed box is then empty and its regression loss NaN.
            dict(type="FilterAnnotations", min_gt_bbox_wh=(0.5, 0.5), min_gt_mask_area=1,
                 by_box=True, by_mask=True, keep_empty=False)]
        cfg.train_dataloader.dataset.pipeline = pipe
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and amp:  # mixed precision on the GPU; CPU autocast gains nothing for Mask R-CNN
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if device is not None:
        cfg.device = device
    if time_limit_s:
        _register_time_limit_hook()
        cfg.custom_hooks = list(cfg.get("custom_hooks") or []) + [
            dict(type="TimeLimitHook", seconds=float(time_limit_s))]
    cfg.work_dir = str(Path(work_dir).resolve())
    # MMEngine's visualizer is a per-name singleton: a second training in the same process
    # would write its scalars into the first one's folder. A unique name per run avoids that.
    cfg.visualizer.name = f"cellspot-{uuid.uuid4().hex[:12]}"
    cfg.randomness = dict(seed=int(seed))
    last = Path(cfg.work_dir) / "last_checkpoint"
    if last.is_file():
        # Resume from the newest checkpoint of this work dir (MMEngine finds it when load_from
        # is None); a pretrained load_from would otherwise be *resumed* from instead.
        cfg.resume, cfg.load_from = True, None
    else:
        cfg.resume = False
        if load_from:
            if not Path(load_from).is_file():
                raise SegmentError(f"{setting(model, 'pretrained')}: pretrained checkpoint "
                                   f"{load_from}: no such file")
            cfg.load_from = str(load_from)
    return cfg


def check_pretrained_fits(model: str, network, path: str | os.PathLike) -> None:
    """Raise :class:`SegmentError` naming ``segment.models.<model>.pretrained`` when the
    checkpoint's weights do not fit the network to train (MMEngine would only warn and train
    the unfitting layers from scratch)."""
    from cellspot.segment.models import _load_local_checkpoint

    ckpt = _load_local_checkpoint(str(path), map_location="cpu")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else {}
    own = network.state_dict()
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
           if k in state and tuple(state[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state]
    if bad or missing:
        what = (f"{len(bad)} weights of another shape (e.g. {bad[0]})" if bad else
                f"{len(missing)} weights missing (e.g. {missing[0]})")
        raise SegmentError(
            f"{setting(model, 'pretrained')}: {path} does not fit the model to train "
            f"({setting(model, 'config')}, {setting(model, 'depth')}, "
            f"{setting(model, 'overrides')}): {what}. Start from a checkpoint of the same "
            "model, or from scratch (pretrained: \"\")")


def _scalars(work_dir: Path) -> tuple[list[dict], list[Path]]:
    """Training scalars of every run in ``work_dir`` (a resumed run overrides earlier iters)."""
    rows: dict[tuple, dict] = {}
    event_dirs = []
    for f in sorted(work_dir.glob("*/vis_data/scalars.json")):
        event_dirs.append(f.parent)
        for line in f.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                key = ("train" if "loss" in d else "val", d.get("iter", d.get("step")))
                rows[key] = d
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] or 0))], event_dirs


def plot_losses(scalars: list[dict], path: str | os.PathLike) -> None:
    """PNG of the loss terms against the iteration (log scale), plus validation mAP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [d for d in scalars if "loss" in d]
    val = [d for d in scalars if any(k.endswith("segm_mAP") for k in d)]
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(11 if val else 6, 4), squeeze=False)
    ax = axes[0, 0]
    keys = sorted({k for d in train for k in d if k.startswith("loss")})
    for k in keys:
        pts = [(d["iter"], d[k]) for d in train if k in d and d[k] > 0]
        if pts:
            x, y = zip(*pts)
            ax.plot(x, y, label=k, lw=2 if k == "loss" else 1)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax.set_title("training losses")
    if val:
        ax = axes[0, 1]
        for k in sorted({k for d in val for k in d if k.endswith("_mAP")}):
            x = [d.get("step", d.get("iter")) for d in val if k in d]
            ax.plot(x, [d[k] for d in val if k in d], "o-", label=k)
        ax.set_xlabel("iteration")
        ax.set_title("validation (COCO mAP)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def train_model(model: str, coco_dir: str | os.PathLike, out_dir: str | os.PathLike,
                threads: int | None = None, outputs: dict | None = None,
                **kwargs) -> dict[str, Path]:
    """Train (or resume training) and write checkpoint, config, loss PNG and TensorBoard logs.

    Parameters
    ----------
    model : {"cells", "spots"}
    coco_dir : path-like
        Folder with ``train.json``/``val.json``/``images`` (:mod:`cellspot.segment.coco`).
    out_dir : path-like
        The model folder (``models/<model>``); training's own files go to its ``work/``.
    threads : int, optional
        CPU threads for torch (the rule's ``threads``).
    outputs : dict, optional
        Paths for ``checkpoint``, ``config``, ``loss_png``, ``tensorboard`` (the rule's
        outputs); by default the names of :data:`cellspot.layout.MODEL_FILES` in ``out_dir``.
    **kwargs
        Passed to :func:`build_train_config`.

    Returns
    -------
    dict of output paths: ``checkpoint``, ``config``, ``loss_png``, ``tensorboard``.
    """
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    if threads:
        torch.set_num_threads(int(threads))
    register_all_modules(init_default_scope=True)
    out_dir = Path(out_dir)
    work_dir = in_model(out_dir, "work")
    cfg = build_train_config(model, coco_dir, work_dir, **kwargs)
    log.info("training %s for %d iterations in %s (resume=%s, load_from=%s, %s)", model,
             cfg.train_cfg.max_iters, work_dir, cfg.resume, cfg.load_from,
             cfg.optim_wrapper.type)
    runner = Runner.from_cfg(cfg)
    if cfg.load_from:
        check_pretrained_fits(model, runner.model, cfg.load_from)
    # MMEngine's logger does not propagate: send its lines (losses, ETA) to the rule's log too.
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler) and h not in runner.logger.handlers:
            runner.logger.addHandler(h)
    runner.train()
    if runner.iter < cfg.train_cfg.max_iters:
        # Stopped by the time limit: fail the job rather than publish a half-trained model; the
        # retry (or next run) resumes from the checkpoint just written.
        raise SegmentError(f"{model}: training stopped at iteration {runner.iter} of "
                           f"{cfg.train_cfg.max_iters} by the time limit; run again to resume "
                           f"from {work_dir}")

    last = work_dir / "last_checkpoint"
    if not last.is_file():
        raise SegmentError(f"{work_dir}: training ended without a checkpoint")
    ckpt = Path(last.read_text().strip())
    paths = {k: Path((outputs or {}).get(k) or in_model(out_dir, k))
             for k in ("checkpoint", "config", "loss_png", "tensorboard")}
    with atomic_output(paths["checkpoint"]) as tmp:
        shutil.copyfile(ckpt, tmp)
    # Inference config: the resolved training config (data paths are irrelevant there).
    write_text_atomic(paths["config"], cfg.pretty_text)
    scalars, event_dirs = _scalars(work_dir)
    plot_losses(scalars, paths["loss_png"])
    with atomic_output(paths["tensorboard"]) as tmp:
        tmp.mkdir()
        for d in event_dirs:
            run = tmp / d.parent.name
            run.mkdir()
            for f in d.glob("events.out.tfevents.*"):
                shutil.copyfile(f, run / f.name)
    return paths
