"""Snakemake adapter for rule ``ingest``: TIFF/OME-TIFF -> OME-Zarr (cellspot.ingest)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.ingest import ingest_movie  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    b = smk.params.batch
    ingest_movie(smk.input.movie, smk.output.zarr, axes=b["axes"],
                 channel_names=b["channel_names"], voxel_size=b["voxel_size"],
                 time_interval=b["time_interval"], z_block=smk.params.z_block,
                 chunk_mb=smk.params.chunk_mb, name=smk.wildcards.batch)


run_step(snakemake, main)  # noqa: F821
