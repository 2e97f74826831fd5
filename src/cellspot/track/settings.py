"""Settings of the track stage (config section ``track:``), btrack configurations and the
tracks table's columns."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..errors import TrackError, read_json_file
from ..resources import without_resources
from ..table_specs import TRACKS

TRACK_COLUMNS = TRACKS.columns
POSITION = ["z", "y", "x"]  # position columns of object and tracks tables (pixels)


class TrackSettings(BaseModel):
    """Settings of the tracking stage (the ``track:`` section of the workflow config)."""

    model_config = ConfigDict(extra="forbid")

    cell_config: str = Field("config/btrack/cell_config.json",
                             description="btrack TrackerConfig JSON for cells")
    spot_config: str = Field("config/btrack/spot_config.json",
                             description="btrack TrackerConfig JSON for RNA spots")
    cell_features: list[str] = Field(
        default_factory=lambda: ["volume_um3"],
        description="columns of cells.parquet given to btrack as features; a name ending in "
                    "'*' selects every column with that prefix (e.g. 'mean_*')")
    spot_features: list[str] = Field(default_factory=lambda: ["intensity"])
    track_spots: bool = Field(True, description="also track RNA spots")
    spot_frame: Literal["cell", "sample"] = Field(
        "cell", description="track spots after removing their cell's motion ('cell') or as "
                            "they are ('sample')")
    spot_tile_size: int = Field(1500, ge=100, description="most spots per frame tracked at "
                                "once; more are split into stitched (y, x) tiles")
    detect_divisions: bool = Field(True, description="mark likely divisions for btrack")
    division_max_volume_ratio: float = Field(0.9, gt=0, description="a daughter is smaller "
                                             "than this fraction of its mother")

    @classmethod
    def from_config(cls, section: dict | None) -> "TrackSettings":
        """Settings from the workflow's ``track:`` section (resource keys are ignored)."""
        section = without_resources(section or {})
        return cls(**section)


# --------------------------------------------------------------------------- configuration


def load_tracker_config(config):
    """A validated btrack ``TrackerConfig`` from a JSON path, a dict or a ``TrackerConfig``.

    Besides btrack's own format, ``update_method`` may be given by name (``"EXACT"``,
    ``"APPROXIMATE"``), which keeps the JSON files readable.
    """
    from btrack import constants
    from btrack.config import TrackerConfig

    if isinstance(config, TrackerConfig):
        return config.model_copy(deep=True)
    source = "configuration"
    if not isinstance(config, dict):
        source = str(Path(config))
        config = read_json_file(config, TrackError, "btrack configuration file")
    config = dict(config)
    if isinstance(config.get("update_method"), str):
        try:
            config["update_method"] = constants.BayesianUpdates[config["update_method"].upper()]
        except KeyError as exc:
            raise TrackError(f"{source}: update_method must be one of "
                             f"{[m.name for m in constants.BayesianUpdates]}") from exc
    if "TrackerConfig" in config:
        raise TrackError(f"{source}: legacy btrack format; use the TrackerConfig fields")
    try:
        cfg = TrackerConfig(**config)
    except Exception as exc:  # pydantic validation error: say which file
        raise TrackError(f"{source}: not a valid btrack configuration ({exc})") from exc
    if cfg.motion_model is None:
        raise TrackError(f"{source}: a btrack configuration needs a motion_model")
    return cfg


def select_features(df: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """Expand ``prefix*`` patterns to column names; raise naming any missing column."""
    out = []
    for n in names:
        if n.endswith("*"):
            out += [c for c in df.columns if c.startswith(n[:-1])]
        elif n in df.columns:
            out.append(n)
        else:
            raise TrackError(f"feature column {n!r} not in the object table "
                           f"(columns: {list(df.columns)})")
    return list(dict.fromkeys(out))


