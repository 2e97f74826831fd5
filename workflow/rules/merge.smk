# Stage: 3D label merging (cellspot.merge): per-slice 2D instances -> 3D cells, nuclei, semantic
# compartments and 3D RNA spots, with per-object tables.
#
#   merge   results/{batch}/segment/{cells,spots}/t*.zarr (per-slice instances + instances.parquet)
#           + results/{batch}/preprocessed.ome.zarr
#        -> results/{batch}/labels/{cells,nuclei,semantic,spots}.zarr  (NGFF label images, TZYX;
#                                         semantic: 0 background, 1 cytoplasm, 2 nucleus)
#           results/{batch}/tables/{cells,nuclei,spots}.parquet       (t, label, z, y, x, volume,
#                                         bbox, mean_<channel>; n_nuclei / cell_id / compartment)
#
# Needs rules preprocess and segment_infer (include after them) and, from common.smk,
# segment_outputs, TARGETS, scaled_mem, rule_code. The view rule links the label images into results/{batch}/{batch}.ome.zarr.

MERGE = config["merge"]


rule merge:
    input:
        segmentation=merge_segmentation,
        image=rules.preprocess.output.zarr,
    output:
        cells=directory(batch_file("labels", name="cells")),
        nuclei=directory(batch_file("labels", name="nuclei")),
        semantic=directory(batch_file("labels", name="semantic")),
        spots=directory(batch_file("labels", name="spots")),
        cell_table=batch_file("table", name="cells"),
        nucleus_table=batch_file("table", name="nuclei"),
        spot_table=batch_file("table", name="spots"),
    log:
        batch_file("log", step="merge"),
    benchmark:
        batch_file("benchmark", step="merge")
    conda:
        "../../envs/merge.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(MERGE["mem_mb"]),
        runtime=MERGE["runtime"],
    params:
        settings=without_resources(MERGE),
        channels=config["channels"],
        code=rule_code("merge_run.py"),
    script:
        "../scripts/merge_run.py"


# every product a user reads is a target: a deleted one is regenerated
TARGETS.extend(map(str, rules.merge.output))
