"""Snakemake adapter for rule ``report``: statistics, figures and HTML of one batch."""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.report.build import ReportConfig, ReportInputs, ReportOutputs, make_report  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    i, o = smk.input, smk.output
    inputs = ReportInputs(Path(i.cells), Path(i.nuclei), Path(i.spots), Path(i.cell_tracks),
                          Path(i.spot_tracks), Path(i.cell_labels), Path(i.nucleus_labels),
                          Path(i.image), Path(i.drift),
                          truth_check=Path(i.truth_check) if "truth_check" in i.keys() else None,
                          truth_check_png=(Path(i.truth_check_png)
                                           if "truth_check_png" in i.keys() else None))
    outputs = ReportOutputs(Path(o.html), Path(o.cell_stats_parquet).parent,
                            Path(o.qc).parent)
    make_report(inputs, outputs, ReportConfig(**smk.params.settings), smk.params.channels,
                batch=smk.wildcards.batch)
    missing = [p for p in map(str, o) if not Path(p).exists()]
    if missing:  # the rule's file names and the package's must agree
        raise RuntimeError(f"report did not write {missing}")


run_step(snakemake, main)  # noqa: F821
