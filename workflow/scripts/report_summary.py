"""Snakemake adapter for rule ``summary``: one table of every batch's headline numbers."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.report.build import summarise_batches  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    summarise_batches(list(smk.input), smk.output.parquet, smk.output.csv)


run_step(snakemake, main)  # noqa: F821
