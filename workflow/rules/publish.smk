# Stage: what a person opens and what a batch records about how it was made.
#
#   view        preprocessed image + every label image -> results/{batch}/{batch}.ome.zarr
#               (napari: `napari --plugin napari-ome-zarr results/b1/b1.ome.zarr`; nothing is
#               copied, the image and labels are relative links to the stage outputs)
#   provenance  -> results/{batch}/provenance.json: workflow version, resolved config, input movie,
#               model checkpoints (SHA-256) and package versions

# every label image of the batch: the four of merge and the tracked cells
VIEW_LABELS = ["cells", "nuclei", "semantic", "spots"]


rule view:
    input:
        image=rules.preprocess.output.zarr,
        labels=[rules.merge.output[n] for n in VIEW_LABELS]
        + [rules.track.output.tracked_labels],
    output:
        zarr=directory(batch_file("view")),
    log:
        batch_file("log", step="view"),
    benchmark:
        batch_file("benchmark", step="view")
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
        report=rules.report.output.html,
        checkpoints=[segment_checkpoint(m) for m in SEG_MODEL_NAMES],
    output:
        json=batch_file("provenance"),
    log:
        batch_file("log", step="provenance"),
    benchmark:
        batch_file("benchmark", step="provenance")
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


TARGETS.append(batch_file("view"))
TARGETS.append(batch_file("provenance"))
