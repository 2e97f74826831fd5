# Stage: statistics, figures and the HTML report of each batch; one table across all batches.
#
#   report   stage tables + labels + preprocessed image + drift of a batch
#            -> results/{batch}/report/report.html (self-contained),
#               results/{batch}/tables/{cell_stats,cell_track_stats,rna_track_stats,batch_summary}.{parquet,csv},
#               results/{batch}/report/figures/*.png (also items of `snakemake --report`)
#   summary  every batch's batch_summary.parquet -> results/summary/batches.{parquet,csv}
#   truth_check  a simulated movie (samples sheet column `truth`): the run against its truth
#            -> results/{batch}/report/truth_check.{json,csv}, figures/rna_vs_truth.png;
#               the report shows it as its accuracy section
#
# Needs from common.smk: BATCHES, TARGETS, code_fingerprint, batch_truth.

REPORT = config.get("report") or {}  # unset keys take the ReportConfig defaults
REPORT_CODE = rule_code("report_batch.py", "report_summary.py")


rule truth_check:
    input:
        truth=batch_truth,
        cells="results/{batch}/labels/cells.zarr",
        nuclei="results/{batch}/labels/nuclei.zarr",
        spots="results/{batch}/tables/spots.parquet",
        cells_tracked="results/{batch}/labels/cells_tracked.zarr",
        cell_tracks="results/{batch}/tables/cell_tracks.parquet",
        spot_tracks="results/{batch}/tables/spot_tracks.parquet",
        ctc_dir="results/{batch}/track/ctc",
        drift="results/{batch}/drift.csv",
        image="results/{batch}/preprocessed.ome.zarr",
    output:
        json="results/{batch}/report/truth_check.json",
        csv="results/{batch}/report/truth_check.csv",
        png="results/{batch}/report/figures/rna_vs_truth.png",
    log:
        "results/{batch}/logs/truth_check.log",
    benchmark:
        "results/{batch}/benchmarks/truth_check.tsv"
    conda:
        "../../envs/truth_check.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(REPORT.get("mem_mb", 4000)),
        runtime=REPORT.get("runtime", 60),
    params:
        code=rule_code("truth_check.py"),
    script:
        "../scripts/truth_check.py"


rule report:
    input:
        # a simulated movie's report shows the run against its truth (rule truth_check)
        unpack(
            lambda w: (
                {
                    "truth_check": rules.truth_check.output.json,
                    "truth_check_png": rules.truth_check.output.png,
                }
                if batch_truth(w)
                else {}
            )
        ),
        cells="results/{batch}/tables/cells.parquet",
        nuclei="results/{batch}/tables/nuclei.parquet",
        spots="results/{batch}/tables/spots.parquet",
        cell_tracks="results/{batch}/tables/cell_tracks.parquet",
        spot_tracks="results/{batch}/tables/spot_tracks.parquet",
        cell_labels="results/{batch}/labels/cells.zarr",
        nucleus_labels="results/{batch}/labels/nuclei.zarr",
        image="results/{batch}/preprocessed.ome.zarr",
        drift="results/{batch}/drift.csv",
    output:
        html=report(
            "results/{batch}/report/report.html",
            caption="../report/report.rst",
            category="Batch reports",
            labels={"batch": "{batch}", "figure": "page"},
        ),
        cell_stats_parquet="results/{batch}/tables/cell_stats.parquet",
        cell_stats_csv="results/{batch}/tables/cell_stats.csv",
        cell_track_stats_parquet="results/{batch}/tables/cell_track_stats.parquet",
        cell_track_stats_csv="results/{batch}/tables/cell_track_stats.csv",
        rna_track_stats_parquet="results/{batch}/tables/rna_track_stats.parquet",
        rna_track_stats_csv="results/{batch}/tables/rna_track_stats.csv",
        batch_summary_parquet="results/{batch}/tables/batch_summary.parquet",
        batch_summary_csv="results/{batch}/tables/batch_summary.csv",
        qc=report(
            "results/{batch}/report/figures/qc.png",
            caption="../report/qc.rst",
            category="QC",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "qc"},
        ),
        drift=report(
            "results/{batch}/report/figures/drift.png",
            caption="../report/drift.rst",
            category="QC",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "drift"},
        ),
        lineage=report(
            "results/{batch}/report/figures/lineage.png",
            caption="../report/lineage.rst",
            category="Cells",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "lineage"},
        ),
        trajectories=report(
            "results/{batch}/report/figures/trajectories.png",
            caption="../report/trajectories.rst",
            category="Motion",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "trajectories"},
        ),
        speeds=report(
            "results/{batch}/report/figures/speeds.png",
            caption="../report/speeds.rst",
            category="Motion",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "speeds"},
        ),
        rna_counts=report(
            "results/{batch}/report/figures/rna_counts.png",
            caption="../report/rna_counts.rst",
            category="RNA",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "rna_counts"},
        ),
        colocalisation=report(
            "results/{batch}/report/figures/colocalisation.png",
            caption="../report/colocalisation.rst",
            category="RNA",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "colocalisation"},
        ),
        rna_motion=report(
            "results/{batch}/report/figures/rna_motion.png",
            caption="../report/rna_motion.rst",
            category="RNA",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "rna_motion"},
        ),
    log:
        "results/{batch}/logs/report.log",
    benchmark:
        "results/{batch}/benchmarks/report.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(REPORT.get("mem_mb", 4000)),
        runtime=REPORT.get("runtime", 60),
    params:
        settings=without_resources(REPORT),
        channels=config.get("channels", {}),
        code=REPORT_CODE,
    script:
        "../scripts/report_batch.py"


rule summary:
    input:
        # batches no longer listed keep their row (e.g. a movie archived from the inbox)
        expand(
            "results/{batch}/tables/batch_summary.parquet",
            batch=sorted(BATCHES) + processed_elsewhere(),
        ),
    output:
        parquet=report(
            "results/summary/batches.parquet",
            category="Summary",
            caption="../report/summary.rst",
        ),
        csv="results/summary/batches.csv",
    log:
        "results/summary/logs/summary.log",
    benchmark:
        "results/summary/benchmarks/summary.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(1000),
        runtime=10,
    params:
        code=REPORT_CODE,
    script:
        "../scripts/report_summary.py"


# every table and figure a user reads is a target: a deleted one is regenerated
TARGETS.extend(map(str, rules.report.output))
TARGETS.append("results/summary/batches.parquet")
