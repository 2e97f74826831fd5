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
# Needs from common.smk: TARGETS, code_fingerprint.

TRACK = config["track"]


rule track:
    input:
        cells="results/{batch}/tables/cells.parquet",
        spots="results/{batch}/tables/spots.parquet",
        labels="results/{batch}/labels/cells.zarr",
        cell_config=TRACK["cell_config"],
        spot_config=TRACK["spot_config"],
    output:
        cell_tracks="results/{batch}/tables/cell_tracks.parquet",
        spot_tracks="results/{batch}/tables/spot_tracks.parquet",
        tracked_labels=directory("results/{batch}/labels/cells_tracked.zarr"),
        ctc=directory("results/{batch}/track/ctc"),
        napari="results/{batch}/track/cells.tracks.csv",
        napari_graph="results/{batch}/track/cells.tracks.graph.json",
    log:
        "results/{batch}/logs/track.log",
    benchmark:
        "results/{batch}/benchmarks/track.tsv"
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
