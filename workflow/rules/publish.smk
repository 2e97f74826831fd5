# Stage: what a person opens and what a batch records about how it was made.
#
#   view        preprocessed image + every label image -> results/{batch}/{batch}.ome.zarr
#               (napari: `napari --plugin napari-ome-zarr results/b1/b1.ome.zarr`; nothing is
#               copied, the image and labels are relative links to the stage outputs)
#   provenance  -> results/{batch}/provenance.json: workflow version, resolved config, input movie,
#               model checkpoints (SHA-256) and package versions

VIEW_LABELS = ["cells", "nuclei", "semantic", "spots", "cells_tracked"]


rule view:
    input:
        image="results/{batch}/preprocessed.ome.zarr",
        labels=expand("results/{{batch}}/labels/{name}.zarr", name=VIEW_LABELS),
    output:
        zarr=directory("results/{batch}/{batch}.ome.zarr"),
    log:
        "results/{batch}/logs/view.log",
    benchmark:
        "results/{batch}/benchmarks/view.tsv"
    conda:
        "../../envs/ingest.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(500),
        runtime=10,
    params:
        code=rule_code("publish_view.py"),
    script:
        "../scripts/publish_view.py"


rule provenance:
    input:
        movie=batch_movie,
        report="results/{batch}/report/report.html",
        checkpoints=[segment_checkpoint(m) for m in SEG_MODEL_NAMES],
    output:
        json="results/{batch}/provenance.json",
    log:
        "results/{batch}/logs/provenance.log",
    benchmark:
        "results/{batch}/benchmarks/provenance.tsv"
    conda:
        "../../envs/ingest.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(500),
        runtime=10,
    params:
        # Which batches exist (samples sheet, inbox) and job resources do not shape a batch's
        # results.
        config=without_resources(
            {
                k: v
                for k, v in config.items()
                if k not in ("samples", "inbox", "inbox_marker")
            }
        ),
        models=SEG_MODEL_NAMES,
        code=rule_code("publish_provenance.py"),
    script:
        "../scripts/publish_provenance.py"


TARGETS.append("results/{batch}/{batch}.ome.zarr")
TARGETS.append("results/{batch}/provenance.json")
