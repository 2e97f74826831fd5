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
# Needs rules preprocess, merge and track (include after them) and, from common.smk, BATCHES,
# TARGETS, rule_code, batch_truth.

REPORT = config["report"]
REPORT_CODE = rule_code("report_batch.py", "report_summary.py")


rule truth_check:
    input:
        truth=batch_truth,
        cells=rules.merge.output.cells,
        nuclei=rules.merge.output.nuclei,
        spots=rules.merge.output.spot_table,
        cells_tracked=rules.track.output.tracked_labels,
        cell_tracks=rules.track.output.cell_tracks,
        spot_tracks=rules.track.output.spot_tracks,
        ctc_dir=rules.track.output.ctc,
        drift=rules.preprocess.output.drift_csv,
        image=rules.preprocess.output.zarr,
    output:
        json=batch_file("truth_json"),
        csv=batch_file("truth_csv"),
        png=batch_file("figure", name="rna_vs_truth"),
    log:
        batch_file("log", step="truth_check"),
    benchmark:
        batch_file("benchmark", step="truth_check")
    conda:
        "../../envs/truth_check.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(REPORT["mem_mb"]),
        runtime=REPORT["runtime"],
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
        cells=rules.merge.output.cell_table,
        nuclei=rules.merge.output.nucleus_table,
        spots=rules.merge.output.spot_table,
        cell_tracks=rules.track.output.cell_tracks,
        spot_tracks=rules.track.output.spot_tracks,
        cell_labels=rules.merge.output.cells,
        nucleus_labels=rules.merge.output.nuclei,
        image=rules.preprocess.output.zarr,
        drift=rules.preprocess.output.drift_csv,
    output:
        html=report(
            batch_file("report_html"),
            caption="../report/report.rst",
            category="Batch reports",
            labels={"batch": "{batch}", "figure": "page"},
        ),
        cell_stats_parquet=batch_file("table", name="cell_stats"),
        cell_stats_csv=batch_file("table_csv", name="cell_stats"),
        cell_track_stats_parquet=batch_file("table", name="cell_track_stats"),
        cell_track_stats_csv=batch_file("table_csv", name="cell_track_stats"),
        rna_track_stats_parquet=batch_file("table", name="rna_track_stats"),
        rna_track_stats_csv=batch_file("table_csv", name="rna_track_stats"),
        batch_summary_parquet=batch_file("table", name="batch_summary"),
        batch_summary_csv=batch_file("table_csv", name="batch_summary"),
        qc=report(
            batch_file("figure", name="qc"),
            caption="../report/qc.rst",
            category="QC",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "qc"},
        ),
        drift=report(
            batch_file("figure", name="drift"),
            caption="../report/drift.rst",
            category="QC",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "drift"},
        ),
        lineage=report(
            batch_file("figure", name="lineage"),
            caption="../report/lineage.rst",
            category="Cells",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "lineage"},
        ),
        trajectories=report(
            batch_file("figure", name="trajectories"),
            caption="../report/trajectories.rst",
            category="Motion",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "trajectories"},
        ),
        speeds=report(
            batch_file("figure", name="speeds"),
            caption="../report/speeds.rst",
            category="Motion",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "speeds"},
        ),
        rna_counts=report(
            batch_file("figure", name="rna_counts"),
            caption="../report/rna_counts.rst",
            category="RNA",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "rna_counts"},
        ),
        colocalisation=report(
            batch_file("figure", name="colocalisation"),
            caption="../report/colocalisation.rst",
            category="RNA",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "colocalisation"},
        ),
        rna_motion=report(
            batch_file("figure", name="rna_motion"),
            caption="../report/rna_motion.rst",
            category="RNA",
            subcategory="{batch}",
            labels={"batch": "{batch}", "figure": "rna_motion"},
        ),
    log:
        batch_file("log", step="report"),
    benchmark:
        batch_file("benchmark", step="report")
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(REPORT["mem_mb"]),
        runtime=REPORT["runtime"],
    params:
        settings=without_resources(REPORT),
        channels=config["channels"],
        code=REPORT_CODE,
    script:
        "../scripts/report_batch.py"


rule summary:
    input:
        # batches no longer listed keep their row (e.g. a movie archived from the inbox)
        expand(
            rules.report.output.batch_summary_parquet,
            batch=sorted(BATCHES) + processed_elsewhere(),
        ),
    output:
        parquet=report(
            summary_file("parquet"),
            category="Summary",
            caption="../report/summary.rst",
        ),
        csv=summary_file("csv"),
    log:
        summary_file("log", step="summary"),
    benchmark:
        summary_file("benchmark", step="summary")
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
TARGETS.append(summary_file("parquet"))
