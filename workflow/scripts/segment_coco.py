"""Snakemake adapter for rule ``segment_coco``: training annotations -> COCO
(cellspot.segment.coco)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.segment.training_data import build_training_coco  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    build_training_coco(smk.wildcards.model, dict(smk.params.settings), smk.output.coco,
                        list(smk.params.channels), roles=list(smk.params.roles),
                        preprocess=dict(smk.params.preprocess))


run_step(snakemake, main)  # noqa: F821
