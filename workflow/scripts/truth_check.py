"""Snakemake adapter for rule ``truth_check``: a simulated movie's run against its truth."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.smk import run_step  # noqa: E402
from cellspot_bench.truth_check import write_check  # noqa: E402


def main(smk):
    i, o = smk.input, smk.output
    summary = write_check(i.truth, o.json, o.csv, o.png, cells=i.cells, nuclei=i.nuclei,
                          cells_tracked=i.cells_tracked, spots=i.spots,
                          cell_tracks=i.cell_tracks, spot_tracks=i.spot_tracks, drift=i.drift,
                          image=i.image, ctc_dir=i.ctc_dir)
    sp, rna = summary["spots"], summary["rna_per_cell"]
    print(f"spot F1 {sp['f1']:.3f}, cell AP@0.5 {summary['cell_ap50']:.3f}, divisions "
          f"{summary['divisions']}, TRA {summary['tracking']['TRA']}, RNA per cell mean error "
          f"{rna['mean_abs_error']}", file=sys.stderr)


run_step(snakemake, main)  # noqa: F821
