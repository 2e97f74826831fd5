# Stage 1: each batch's movie (TIFF/OME-TIFF) -> chunked OME-Zarr, streaming.


rule ingest:
    input:
        movie=batch_movie,
    output:
        zarr=directory(batch_file("raw")),
    log:
        batch_file("log", step="ingest"),
    benchmark:
        batch_file("benchmark", step="ingest")
    conda:
        "../../envs/ingest.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(config["ingest"]["mem_mb"]),
        runtime=60,
    params:
        batch=batch_info,
        z_block=config["ingest"]["z_block"],
        chunk_mb=config["ingest"]["chunk_mb"],
        code=rule_code("ingest_run.py"),
    script:
        "../scripts/ingest_run.py"


TARGETS.append(batch_file("raw"))
