"""Snakemake adapter for rule ``view``: the batch's OME-Zarr to open in napari (image + labels)."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.omezarr import assemble_view  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    labels = {Path(p).name.removesuffix(".zarr"): p for p in smk.input.labels}
    assemble_view(smk.input.image, labels, smk.output.zarr)


run_step(snakemake, main)  # noqa: F821
