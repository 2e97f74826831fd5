"""Snakemake adapter for rule ``drift_plot``: the drift table as a QC figure (cellspot.register)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.register import plot_drift, read_drift_csv  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    plot_drift(read_drift_csv(smk.input.drift_csv), smk.output.drift_png,
               title=f"drift of {smk.wildcards.batch}")


run_step(snakemake, main)  # noqa: F821
