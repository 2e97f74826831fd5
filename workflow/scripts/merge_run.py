"""Snakemake adapter for rule ``merge``: 2D instances -> 3D labels and tables (cellspot.merge)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.merge import MergeSettings, run_merge  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    settings = MergeSettings.from_config(smk.params.settings, smk.params.channels)
    o = smk.output
    run_merge(list(smk.input.segmentation), smk.input.image,
              {"cells": o.cells, "nuclei": o.nuclei, "semantic": o.semantic, "spots": o.spots},
              {"cells": o.cell_table, "nuclei": o.nucleus_table, "spots": o.spot_table},
              settings)


run_step(snakemake, main)  # noqa: F821
