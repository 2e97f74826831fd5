# Stage: denoising, percentile normalisation and drift correction (cellspot.preprocess/register).
#
#   preprocess   results/{batch}/raw.ome.zarr
#                -> results/{batch}/preprocessed.ome.zarr (float32, normalised, drift-corrected)
#                   results/{batch}/drift.csv (t, dz, dy, dx, quality, flagged; px, relative to t=0)
#   drift_plot   drift.csv -> results/{batch}/drift.png (QC figure of `snakemake --report`; its
#                own rule, so a deleted figure is redrawn without recomputing anything)
#
# Needs rule ingest (include after it) and, from common.smk, TARGETS and rule_code. Channel
# roles come from `channels:`.

PREPROCESS = config["preprocess"]


rule preprocess:
    input:
        zarr=rules.ingest.output.zarr,
    output:
        zarr=directory(batch_file("preprocessed")),
        drift_csv=batch_file("drift_csv"),
    log:
        batch_file("log", step="preprocess"),
    benchmark:
        batch_file("benchmark", step="preprocess")
    conda:
        "../../envs/preprocess.yaml"
    threads: PREPROCESS["threads"]
    resources:
        mem_mb=scaled_mem(PREPROCESS["mem_mb"]),
        runtime=PREPROCESS["runtime"],
    params:
        settings=without_resources(PREPROCESS),
        channels=config["channels"],
        code=rule_code("preprocess_run.py"),
    script:
        "../scripts/preprocess_run.py"


rule drift_plot:
    input:
        drift_csv=rules.preprocess.output.drift_csv,
    output:
        drift_png=report(
            batch_file("drift_png"),
            caption="../report/preprocess_drift.rst",
            category="QC",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "drift estimate"},
        ),
    log:
        batch_file("log", step="drift_plot"),
    benchmark:
        batch_file("benchmark", step="drift_plot")
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(500),
        runtime=10,
    params:
        code=rule_code("drift_plot.py"),
    script:
        "../scripts/drift_plot.py"


TARGETS.append(batch_file("preprocessed"))
TARGETS.extend(map(str, rules.drift_plot.output))
