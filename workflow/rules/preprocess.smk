# Stage: denoising, percentile normalisation and drift correction (cellspot.preprocess/register).
#
#   preprocess   results/{batch}/raw.ome.zarr
#                -> results/{batch}/preprocessed.ome.zarr (float32, normalised, drift-corrected)
#                   results/{batch}/drift.csv (t, dz, dy, dx, quality, flagged; px, relative to t=0)
#                   results/{batch}/drift.png (QC figure of `snakemake --report`)
#
# Needs from common.smk: TARGETS, code_fingerprint. Channel roles come from `channels:`.

PREPROCESS = config["preprocess"]


rule preprocess:
    input:
        zarr="results/{batch}/raw.ome.zarr",
    output:
        zarr=directory("results/{batch}/preprocessed.ome.zarr"),
        drift_csv="results/{batch}/drift.csv",
        drift_png=report("results/{batch}/drift.png", caption="../report/preprocess_drift.rst",
                         category="QC", subcategory="{batch}",
                         labels={"batch": "{batch}", "figure": "drift estimate"}),
    params:
        settings=PREPROCESS,
        channels=config.get("channels", {}),
        code=code_fingerprint("preprocess", "register", "omezarr"),
    log:
        "results/{batch}/logs/preprocess.log",
    benchmark:
        "results/{batch}/benchmarks/preprocess.tsv"
    threads: PREPROCESS["threads"]
    resources:
        mem_mb=scaled_mem(PREPROCESS["mem_mb"]),
        runtime=PREPROCESS["runtime"],
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../scripts/preprocess_run.py"


TARGETS.append("results/{batch}/preprocessed.ome.zarr")
TARGETS.append("results/{batch}/drift.png")
