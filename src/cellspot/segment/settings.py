"""Settings of the segmentation stage (config section ``segment:``): the models, their training
data, training and inference (part of the configuration tree, :mod:`cellspot.config`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..resources import gpu_field, mem_field, runtime_field, threads_field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingData(_Strict):
    """Where a model's training annotations come from (rule segment_coco)."""

    source: Literal["simulation", "labels", "coco", "psf_synthetic", "pseudo_labels"] = Field(
        "simulation", description="simulation: a synthetic movie and its exact truth; labels: "
        "your image and label volumes; coco: an existing COCO JSON; psf_synthetic (spots): "
        "spots rendered with the PSF measured on your own images in their spot-free background "
        "(no annotation); pseudo_labels (spots): LoG detections on your images as labels")
    simulation: dict[str, Any] = Field(default_factory=dict, description="SimulationConfig "
                                       "fields of the training movie")
    seed: int = Field(0, description="seed of the simulation and of the train/val split")
    z_step: int = Field(1, ge=1, description="use every z_step-th slice")
    keep_empty: float = Field(0.1, ge=0, le=1, description="fraction of slices without "
                              "objects to keep")
    val_fraction: float = Field(0.2, ge=0, le=1, description="fraction of timepoints/images "
                                "held out for validation")
    spot_radius: float = Field(2.0, gt=0, description="radius (px) of the disc painted as a "
                               "spot's mask")
    image: str | None = Field(None, description="labels: the image (OME-Zarr TCZYX or TIFF)")
    channel_indices: list[int] | None = Field(None, description="labels: channel indices of "
                                              "a TIFF image (model order)")
    labels: dict[str, str] | None = Field(None, description="labels: category -> label volume "
                                          "(TZYX TIFF/Zarr)")
    spots_csv: str | None = Field(None, description="labels (spots): table with t, z, y, x "
                                  "columns")
    coco: str | None = Field(None, description="coco: path of the COCO JSON (images relative "
                             "to it)")
    images: list[str] = Field(default_factory=list, description="psf_synthetic/pseudo_labels: "
                              "your raw images (TIFF, PNG, OME-Zarr)")
    channel: str | int | None = Field(None, description="psf_synthetic/pseudo_labels: RNA "
                                      "channel of an OME-Zarr image")
    n_copies: int = Field(4, ge=1, description="psf_synthetic: rendered images per source "
                          "slice")
    sigma: float | None = Field(None, gt=0, description="PSF sigma (px); null measures it, and "
                                "each rendered spot then takes the size of one measured spot")
    max_slices: int = Field(64, ge=1, description="source slices used at most")

    @model_validator(mode="after")
    def _source_has_its_inputs(self):
        need = {"labels": ["image"], "coco": ["coco"], "psf_synthetic": ["images"],
                "pseudo_labels": ["images"]}.get(self.source, [])
        missing = [k for k in need if not getattr(self, k)]
        if self.source == "labels" and not (self.labels or self.spots_csv):
            missing.append("labels (or spots_csv)")
        if missing:
            raise ValueError(f"source {self.source!r} needs {', '.join(missing)}")
        return self


class TrainSettings(_Strict):
    """How a model is trained (rule segment_train)."""

    max_iters: int = Field(20000, ge=1, description="training iterations")
    batch_size: int = Field(4, ge=1, description="images per iteration")
    lr: float = Field(0.0002, gt=0, description="learning rate (AdamW)")
    checkpoint_interval: int = Field(1000, ge=1, description="iterations between checkpoints")
    val_interval: int = Field(2000, ge=0, description="iterations between validations (0: "
                              "none)")
    log_interval: int = Field(20, ge=1, description="iterations between log lines")
    amp: bool = Field(True, description="mixed precision on GPU")
    seed: int = Field(0, description="random seed")
    num_workers: int = Field(2, ge=0, description="data loader processes")
    crop_size: int = Field(0, ge=0, description="train on random square crops of this size "
                           "(px) of larger slices: faster iterations with the same objects (0: "
                           "whole slices)")
    threads: int = threads_field(4, "a training job (torch)")
    gpu: int = gpu_field(1, "a training job")
    mem_mb: int = mem_field(32000, "a training job")
    runtime: int = runtime_field(720, "a training job")


class InferSettings(_Strict):
    """How a model segments a block of timepoints (rule segment_infer)."""

    batch_size: int = Field(8, ge=1, description="slices (tiles) per forward pass")
    z_batch: int = Field(16, ge=1, description="z-slices read at once")
    tile_size: int = Field(1024, ge=32, description="slices larger than this are tiled (px)")
    tile_overlap: int = Field(128, ge=0, description="overlap of tiles (px); above the object "
                              "size")
    score_threshold: float = Field(0.5, ge=0, le=1, description="minimum instance score")
    tta: bool = Field(False, description="test-time augmentation: predict the 8 rotations/"
                      "reflections of every slice and fuse the instances (8x the time)")
    object_diameter_um: float | Literal["auto"] | None = Field(
        "auto", description="cells model: the nuclei's diameter (µm); slices are rescaled so "
        "that nuclei appear at the size the model was trained at (its card) and results mapped "
        "back. auto: measured on the first timepoint, rescaled only when outside the trained "
        "range; null: never rescaled. The spots model is not rescaled")
    threads: int = threads_field(4, "an inference job (torch)")
    gpu: int = gpu_field(1, "an inference job")
    mem_mb: int = mem_field(16000, "an inference job")
    runtime: int = runtime_field(120, "an inference job")


class ModelSettings(_Strict):
    """One Mask R-CNN model (MMDetection) on 2D slices."""

    config: str = Field(description="MMDetection config file of the model (cells: "
                        "config/maskrcnn_cells.py; spots: config/maskrcnn_spots.py)")
    checkpoint: str = Field("builtin", description="the checkpoint inference uses: builtin (the "
                            "starter model shipped with cellspot, recipes/starter_models.py), "
                            "the path of your own, or empty to train one (rule segment_train)")
    checkpoint_config: str = Field("", description="config of that checkpoint (empty: the one "
                                   "stored in the checkpoint)")
    pretrained: str = Field("builtin", description="checkpoint training starts from "
                            "(fine-tuning): builtin (the starter model), a path, or empty (from "
                            "scratch)")
    depth: Literal[18, 34, 50, 101, 152] = Field(18, description="ResNet depth")
    channels: list[str] = Field(min_length=1, description="input channels of the model, as "
                                "roles of the top-level `channels` map")
    overrides: dict[str, Any] = Field(default_factory=dict, description="nested dict (or "
                                      "dotted keys) merged into the MMDetection config")
    training_data: TrainingData = Field(default_factory=TrainingData)
    train: TrainSettings = Field(default_factory=TrainSettings)
    infer: InferSettings = Field(default_factory=InferSettings)


_TRAINING_MOVIE = {"n_timepoints": 12, "shape": [16, 256, 256], "n_cells": 14, "n_divisions": 2}


def _cells_model() -> ModelSettings:
    return ModelSettings(
        config="config/maskrcnn_cells.py", channels=["nucleus", "cytoplasm", "rna"],
        training_data=TrainingData(simulation=_TRAINING_MOVIE, seed=101, z_step=2))


def _spots_model() -> ModelSettings:
    return ModelSettings(
        config="config/maskrcnn_spots.py", channels=["rna"],
        training_data=TrainingData(simulation=_TRAINING_MOVIE, seed=102, z_step=1),
        infer=InferSettings(tile_size=512, tile_overlap=32))


class SegmentModels(_Strict):
    cells: ModelSettings = Field(default_factory=_cells_model)
    spots: ModelSettings = Field(default_factory=_spots_model)

    @model_validator(mode="before")
    @classmethod
    def _over_the_defaults(cls, data):
        """A model's settings in a config file change its defaults (each model has its own:
        the cells model reads three channels, the spots model one)."""
        if not isinstance(data, dict):
            return data
        base = {"cells": _cells_model(), "spots": _spots_model()}
        return {k: _deep_merge(base[k].model_dump(), v) if k in base and isinstance(v, dict)
                else v for k, v in data.items()}


class SegmentSection(_Strict):
    """Mask R-CNN segmentation (MMDetection) of cells/nuclei and RNA spots on 2D slices."""

    models_dir: str = Field("models", description="folder of the trained models (not per "
                            "batch)")
    timepoints_per_job: int = Field(10, ge=1, description="timepoints per inference job (a "
                                    "long movie makes fewer, longer jobs)")
    models: SegmentModels = Field(default_factory=SegmentModels)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = (_deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict)
                  else v)
    return out
