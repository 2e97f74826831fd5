"""Snakemake adapter for rule ``preprocess``: denoise, normalise, drift-correct
(cellspot.preprocess)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.preprocess import limit_heap_growth, preprocess_from_config  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    limit_heap_growth()  # keep resident memory close to the live chunks
    config = {"preprocess": smk.params.settings, "channels": smk.params.channels}
    preprocess_from_config(smk.input.zarr, smk.output.zarr, config, threads=smk.threads,
                           drift_csv=smk.output.drift_csv)


run_step(snakemake, main)  # noqa: F821
