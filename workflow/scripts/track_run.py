"""Snakemake adapter for rule ``track``: btrack cell and spot tracking, CTC and napari export."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.smk import run_step  # noqa: E402
from cellspot.track import TrackSettings, track_batch  # noqa: E402


def main(smk):
    settings = TrackSettings.from_config(smk.params.settings).model_copy(
        update={"cell_config": smk.input.cell_config, "spot_config": smk.input.spot_config})
    track_batch(smk.input.cells, smk.input.labels,
                {"cell_tracks": smk.output.cell_tracks, "spot_tracks": smk.output.spot_tracks,
                 "tracked_labels": smk.output.tracked_labels, "ctc": smk.output.ctc,
                 "napari": smk.output.napari, "napari_graph": smk.output.napari_graph},
                settings, spots_table=smk.input.spots)


run_step(snakemake, main)  # noqa: F821
