"""The workflow's configuration as one tree of validated models: the model is the schema.

Every setting of ``config/config.yaml`` is a field here, with its default, its bounds and its
description written once. The JSON schema that Snakemake validates the config against
(``config/schema/config.schema.json``) is generated from :class:`WorkflowConfig`
(``python -m cellspot.config --write-schema``; a test checks the committed file is current), and
after validation the workflow runs on the full tree (:func:`resolve`), so a key left out of a
config file takes its default here and nowhere else.

The stage sections are the stages' own settings models (:class:`~cellspot.merge.MergeSettings`,
...) plus the job resources of that stage (``mem_mb``, ``runtime``, ``threads``, ``gpu``), which
the stages ignore and the rules hand to the scheduler (:mod:`cellspot.resources`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import CellspotError
from .merge.settings import MergeSettings
from .preprocess.filters import ChannelSettings
from .preprocess.run import PreprocessSettings
from .report.settings import ReportConfig
from .resources import mem_field, runtime_field, threads_field
from .segment.settings import SegmentSection
from .track.settings import TrackSettings

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema" / "config.schema.json"


class ConfigError(CellspotError):
    """The workflow configuration is invalid (the message names the setting)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- top level


class Channels(_Strict):
    """Which channel of the movie holds which stain (names as in the OME metadata or the
    samples sheet, or 0-based indices)."""

    nucleus: str | int = "nucleus"
    cytoplasm: str | int | None = Field(
        "cytoplasm", description="null: the movie has no cytoplasm stain; each cell is then its "
        "nucleus grown by merge.cell_expansion_um")
    rna: str | int | None = Field(
        "rna", description="null: the movie has no RNA stain; no spots are detected and the "
        "report covers cells only")


class IngestSection(_Strict):
    """TIFF -> OME-Zarr conversion."""

    chunk_mb: float = Field(8, gt=0, description="target chunk size in MiB (one timepoint, one "
                            "channel, a block of z-slices)")
    z_block: int | None = Field(None, ge=1, description="z-slices per chunk (overrides "
                                "chunk_mb)")
    mem_mb: int = mem_field(2000, "an ingest job")


def _preprocess_channels() -> dict:
    """The workflow's default denoising: light smoothing of the stains, a top-hat for spots."""
    stain = {"normalize": {"low": 1.0, "high": 99.8},
             "filters": [{"kind": "gaussian", "sigma_um": 0.25}]}
    return {"nucleus": stain, "cytoplasm": stain,
            "rna": {"normalize": {"low": 1.0, "high": 99.99},
                    "filters": [{"kind": "tophat", "radius_um": 1.0}]}}


class PreprocessSection(PreprocessSettings):
    channels: dict[str, ChannelSettings] = Field(
        default_factory=lambda: {k: ChannelSettings(**v) for k, v in
                                 _preprocess_channels().items()},
        description="denoising and normalisation per channel, keyed by role (see `channels:`) "
        "or channel name: whole-movie percentiles (low -> 0, high -> 1), then the filters in "
        "order")
    threads: int = threads_field(4, "a preprocess job (dask workers)")
    mem_mb: int = mem_field(4000, "a preprocess job")
    runtime: int = runtime_field(120, "a preprocess job")


class MergeSection(MergeSettings):
    mem_mb: int = mem_field(8000, "a merge job")
    runtime: int = runtime_field(120, "a merge job")


class TrackSection(TrackSettings):
    mem_mb: int = mem_field(4000, "a track job")
    runtime: int = runtime_field(60, "a track job")


# --------------------------------------------------------------------------- the tree


class WorkflowConfig(_Strict):
    """cellspot workflow configuration (config/config.yaml). Every key is listed here;
    unknown keys are rejected."""

    samples: str = Field(description="samples sheet (TSV with columns batch, path and "
                         "optionally axes, channel_names, voxel_size, time_interval); empty "
                         "string for none")
    inbox: str = Field("", description="folder scanned for new movies (*.tif, *.tiff); each "
                       "file is a batch; empty for none")
    inbox_marker: str = Field("", description="if set, a movie in the inbox is processed only "
                              "once a file with this suffix exists beside it (e.g. '.done'), "
                              "so a movie still being copied is not touched")
    channels: Channels = Field(default_factory=Channels)
    ingest: IngestSection = Field(default_factory=IngestSection)
    preprocess: PreprocessSection = Field(default_factory=PreprocessSection)
    segment: SegmentSection = Field(default_factory=SegmentSection)
    merge: MergeSection = Field(default_factory=MergeSection)
    track: TrackSection = Field(default_factory=TrackSection)
    report: ReportConfig = Field(default_factory=ReportConfig)


def json_schema() -> dict:
    """The JSON schema (draft 2020-12) of the configuration, generated from the models."""
    schema = WorkflowConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def resolve(config: dict) -> dict:
    """The full configuration: ``config`` validated, every key left out filled with its
    default (plain JSON types, as Snakemake rules read them).

    Raises
    ------
    ConfigError
        One line naming the first invalid setting (e.g. ``segment.models.cells.depth``).
    """
    try:
        return WorkflowConfig.model_validate(config).model_dump(mode="json")
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"config: {where}: {err['msg']}") from None


def validate_config(config: dict, schema: str) -> None:
    """Validate the workflow config and complete it in place.

    Snakemake's schema validation against the schema generated from :mod:`cellspot.config`
    (the convention users know), then the models themselves (rules that span keys, e.g. a
    training source and its inputs), whose full tree replaces ``config``: every key left out
    takes its default from the models. An invalid config stops the run with one line naming the
    setting (Snakemake's own message prints the whole sub-schema).
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from .smk import stop

    try:
        # Defaults come from the models (resolve), not from the schema: jsonschema's default
        # filling would write every branch's defaults into a filter entry (a oneOf).
        validate(config, schema, set_default=False)
        full = resolve(config)
    except WorkflowError as exc:
        stop(concise_validation_error(str(exc)))
    except ConfigError as exc:
        stop(str(exc))
    config.clear()
    config.update(full)


def concise_validation_error(text: str) -> str:
    """'config: <setting>: <problem>' from a jsonschema error message as Snakemake prints it."""
    problem = re.search(r"ValidationError: (.*)", text)
    where = re.search(r"On instance((?:\[[^\]]*\])*)", text)
    keys = re.findall(r"\[['\"]?([^\]'\"]*)['\"]?\]", where.group(1)) if where else []
    setting = ".".join(keys) or "(top level)"
    return (f"config: {setting}: {problem.group(1) if problem else text.splitlines()[-1]} "
            f"(see config/schema/config.schema.json)")


def main(argv=None) -> int:
    """``python -m cellspot.config --write-schema``: regenerate the committed schema."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cellspot.config", description=main.__doc__)
    ap.add_argument("--write-schema", action="store_true", help=f"write {SCHEMA_PATH.name}")
    args = ap.parse_args(argv)
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.write_schema:
        SCHEMA_PATH.write_text(text)
        print(SCHEMA_PATH)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
