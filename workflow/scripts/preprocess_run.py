"""Snakemake adapter for rule ``preprocess``: denoise, normalise, drift-correct (cellspot.preprocess)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.omezarr import read_meta  # noqa: E402
from cellspot.preprocess import (  # noqa: E402
    PreprocessSettings, limit_heap_growth, preprocess_movie)
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    limit_heap_growth()  # keep resident memory close to the live chunks
    meta = read_meta(smk.input.zarr)
    settings = PreprocessSettings.from_config(smk.params.settings).resolve_channels(
        smk.params.channels, meta.channel_names)
    preprocess_movie(smk.input.zarr, smk.output.zarr, settings, threads=smk.threads,
                     drift_csv=smk.output.drift_csv, drift_png=smk.output.drift_png)


run_step(snakemake, main)  # noqa: F821
