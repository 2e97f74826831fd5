"""Settings of the merge stage (config section ``merge:``) and the contracts of its outputs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..resources import without_resources
from ..stains import absent_stains
from ..table_specs import SPOTS

COMPARTMENTS = ("outside", "cytoplasm", "nucleus")  # index = value of the semantic map
SEMANTIC_PROPERTIES = [
    {"label-value": 0, "class": "background"},
    {"label-value": 1, "class": "cytoplasm"},
    {"label-value": 2, "class": "nucleus"},
]
SPOT_COLUMNS = SPOTS.columns


# --------------------------------------------------------------------------- settings


class SpotSettings(BaseModel):
    """How per-slice spot detections become 3D spots."""

    model_config = ConfigDict(extra="forbid")

    link_radius_um: float = Field(0.25, gt=0, description="largest xy distance (µm) between "
                                  "detections of one spot in adjacent slices")
    max_gap: int = Field(0, ge=0, description="slices a spot may be missed in and still link")
    valley_ratio: float = Field(0.9, gt=0, le=1, description="a z-profile minimum below this "
                                "fraction of both neighbouring maxima separates two spots")
    localisation: Literal["gaussian", "centroid", "detections"] = Field(
        "gaussian", description="sub-pixel 3D position: 3-point Gaussian fit per axis on the "
        "image, intensity-weighted centroid on the image, or the score-weighted mean of the "
        "detections (no image needed)")
    window_radius: tuple[int, int, int] = Field((1, 2, 2), description="(z, y, x) half-size "
                                                "in voxels of the window for localisation and "
                                                "integrated intensity")
    min_separation_um: float = Field(0.2, ge=0, description="3D spots whose refined positions "
                                     "are closer than this (µm) are one spot; 0 disables")
    molecules: Literal["fit", "spots"] = Field(
        "fit", description="RNA molecules per spot (n_rna): fit = multi-emitter fitting of "
        "regions larger than a single spot and transcription sites by amplitude "
        "(cellspot.merge.molecules); spots = one each")
    site_amplitude: float = Field(2.5, gt=1, description="a fitted spot this many single "
                                  "molecules bright is a transcription site")
    channel: str | int = Field("rna", description="image channel (name or index) of the spots")


class MergeSettings(BaseModel):
    """Settings of the merge stage (config section ``merge:``)."""

    model_config = ConfigDict(extra="forbid")

    iou_threshold: float = Field(0.3, gt=0, le=1, description="smallest IoU of two 2D "
                                 "instances in adjacent slices that are one object")
    max_gap: int = Field(1, ge=0, description="missing slices bridged inside one object")
    max_gap_um: float | None = Field(None, gt=0, description="if set, the bridged gap in µm "
                                     "(overrides max_gap using the z voxel size)")
    fill_gaps: bool = Field(True, description="fill a bridged slice by shape interpolation")
    fragment_containment: float = Field(0.5, gt=0, le=1, description="an unlinked 2D "
                                        "fragment joins a 3D object when at least this fraction "
                                        "of it lies under the object's adjacent slice")
    merge_coverage: float = Field(0.5, gt=0, le=1, description="a 2D instance is split when it "
                                  "covers at least this fraction of a bridged object above and "
                                  "below")
    waist_ratio: float = Field(0.5, ge=0, lt=1, description="cut an object where its section "
                               "area along z dips below this fraction of the maxima on both "
                               "sides (two stacked objects); 0 disables")
    min_volume_vox: int = Field(0, ge=0, description="3D objects smaller than this are dropped")
    nucleus_min_overlap: float = Field(0.5, gt=0, le=1, description="fraction of a nucleus "
                                       "inside a cell for it to belong to that cell")
    split_multinucleate: bool = Field(True, description="split a cell holding several nuclei "
                                      "into one cell per nucleus (touching daughters after a "
                                      "division); false for binucleate cell types")
    cells_from_nuclei: bool = Field(False, description="each cell is its nucleus grown by "
                                    "cell_expansion_um instead of the cells model's cell (e.g. "
                                    "a poor cytoplasm stain); always on when "
                                    "channels.cytoplasm is null")
    cell_expansion_um: float = Field(2.0, gt=0, description="with cells_from_nuclei: how far "
                                     "(µm) a cell reaches beyond its nucleus, never past "
                                     "halfway to the next nucleus (set your cells' cytoplasm "
                                     "thickness)")
    spots: SpotSettings = Field(default_factory=SpotSettings)

    @classmethod
    def from_config(cls, section: dict | None, channels: dict | None = None
                    ) -> "MergeSettings":
        """Settings from the config section ``merge:`` (job resources are ignored here) and
        the stains of ``channels:`` (the spot channel; no cytoplasm stain: cells from nuclei)."""
        d = without_resources(dict(section or {}))
        channels = channels or {}
        if channels.get("rna") is not None:
            d["spots"] = {**dict(d.get("spots") or {}), "channel": channels["rna"]}
        if "cytoplasm" in absent_stains(channels):
            d["cells_from_nuclei"] = True
        return cls(**d)


