# Stage: tracking of cells (with divisions) and RNA spots with btrack (cellspot.track, cellspot.ctc).
#
#   track   results/{batch}/tables/cells.parquet, tables/spots.parquet, labels/cells.zarr
#           + the btrack configurations named in config["track"] (config/btrack/*.json)
#        -> results/{batch}/tables/cell_tracks.parquet   (track_id, t, z, y, x, label, parent, root,
#                                                         generation, dummy + cell features)
#           results/{batch}/tables/spot_tracks.parquet   (same columns; cell_track_id of the cell)
#           results/{batch}/labels/cells_tracked.zarr    (NGFF labels: a cell keeps its id over time)
#           results/{batch}/track/ctc/                   (Cell Tracking Challenge: res_track.txt, mask###.tif)
#           results/{batch}/track/cells.tracks.csv       (napari tracks layer) + cells.tracks.graph.json
#
# Needs rule merge (include after it) and, from common.smk, TARGETS and rule_code.

TRACK = config["track"]


rule track:
    input:
        cells=rules.merge.output.cell_table,
        spots=rules.merge.output.spot_table,
        labels=rules.merge.output.cells,
        cell_config=TRACK["cell_config"],
        spot_config=TRACK["spot_config"],
    output:
        cell_tracks=batch_file("table", name="cell_tracks"),
        spot_tracks=batch_file("table", name="spot_tracks"),
        tracked_labels=directory(batch_file("labels", name="cells_tracked")),
        ctc=directory(batch_file("ctc")),
        napari=batch_file("napari_tracks"),
        napari_graph=batch_file("napari_graph"),
    log:
        batch_file("log", step="track"),
    benchmark:
        batch_file("benchmark", step="track")
    conda:
        "../../envs/track.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(TRACK["mem_mb"]),
        runtime=TRACK["runtime"],
    params:
        settings=without_resources(TRACK),
        code=rule_code("track_run.py"),
    script:
        "../scripts/track_run.py"


# every track product is a target: a deleted one is regenerated
TARGETS.extend(map(str, rules.track.output))
