"""Settings of the report stage (config section ``report:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ReportConfig(BaseModel):
    """Settings of the report stage (config key ``report:``)."""

    model_config = ConfigDict(extra="forbid")

    qc_timepoints: list[int] | None = Field(
        None, description="timepoints of the QC images (negative counts from the end); "
        "default: n_qc_timepoints evenly spaced")
    n_qc_timepoints: int = Field(3, ge=1, le=12)
    coloc_timepoints: int = Field(10, ge=1, description="most timepoints used by the "
                                  "colocalisation permutation test (evenly spaced)")
    n_permutations: int = Field(1000, ge=10)
    seed: int = 0
    msd_max_lag: int = Field(10, ge=1, description="largest MSD lag, in timepoints")
    diffusion_fit_lags: int = Field(4, ge=1, description="MSD lags fitted for D")
    min_rna_track_length: int = Field(3, ge=2)
    border_cells: Literal["exclude", "include"] = Field(
        "exclude", description="cells cut by the xy image border in per-cell means and "
        "medians (they are always counted and listed, flagged at_border)")
    max_rna_tracks_plotted: int = Field(200, ge=0)
    max_qc_size: int = Field(1024, ge=64, description="QC images are downsampled to at most "
                             "this many pixels per side")
    dpi: int = Field(100, ge=30, le=600)
    mem_mb: int = Field(4000, ge=100, description="memory requested for a report job")
    runtime: int = Field(60, ge=1, description="minutes requested for a report job")
