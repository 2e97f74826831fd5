# Stage: denoising, percentile normalisation and drift correction (cellspot.preprocess/register).
#
#   preprocess   results/{batch}/raw.ome.zarr
#                -> results/{batch}/preprocessed.ome.zarr (float32, normalised, drift-corrected)
#                   results/{batch}/drift.csv (t, dz, dy, dx, quality, flagged; px, relative to t=0)
#   drift_plot   drift.csv -> results/{batch}/drift.png (QC figure of `snakemake --report`; its
#                own rule, so a deleted figure is redrawn without recomputing anything)
#
# Needs from common.smk: TARGETS, code_fingerprint. Channel roles come from `channels:`.

PREPROCESS = config["preprocess"]


rule preprocess:
    input:
        zarr="results/{batch}/raw.ome.zarr",
    output:
        zarr=directory("results/{batch}/preprocessed.ome.zarr"),
        drift_csv="results/{batch}/drift.csv",
    log:
        "results/{batch}/logs/preprocess.log",
    benchmark:
        "results/{batch}/benchmarks/preprocess.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: PREPROCESS["threads"]
    resources:
        mem_mb=scaled_mem(PREPROCESS["mem_mb"]),
        runtime=PREPROCESS["runtime"],
    params:
        settings=without_resources(PREPROCESS),
        channels=config.get("channels", {}),
        code=rule_code("preprocess_run.py"),
    script:
        "../scripts/preprocess_run.py"


rule drift_plot:
    input:
        drift_csv=rules.preprocess.output.drift_csv,
    output:
        drift_png=report(
            "results/{batch}/drift.png",
            caption="../report/preprocess_drift.rst",
            category="QC",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "drift estimate"},
        ),
    log:
        "results/{batch}/logs/drift_plot.log",
    benchmark:
        "results/{batch}/benchmarks/drift_plot.tsv"
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


TARGETS.append("results/{batch}/preprocessed.ome.zarr")
TARGETS.extend(map(str, rules.drift_plot.output))
