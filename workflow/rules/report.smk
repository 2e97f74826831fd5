# Stage: statistics, figures and the HTML report of each batch; one table across all batches.
#
#   report   stage tables + labels + preprocessed image + drift of a batch
#            -> results/{batch}/report/report.html (self-contained),
#               results/{batch}/tables/{cell_stats,cell_track_stats,rna_track_stats,batch_summary}.{parquet,csv},
#               results/{batch}/report/figures/*.png (also items of `snakemake --report`)
#   summary  every batch's batch_summary.parquet -> results/summary/batches.{parquet,csv}
#
# Needs from common.smk: BATCHES, TARGETS, code_fingerprint.

REPORT = config["report"]
REPORT_CODE = code_fingerprint("report.build", "report.tables", "report.stats",
                               "report.coloc", "report.plots", "report.html", "omezarr")


def _report_table(name, ext):
    return f"results/{{batch}}/tables/{name}.{ext}"


def _report_figure(name, category):
    return report(f"results/{{batch}}/report/figures/{name}.png",
                  caption=f"../report/{name}.rst", category=category, subcategory="{batch}",
                  labels={"batch": "{batch}", "figure": name})


rule report:
    input:
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
        html=report("results/{batch}/report/report.html", caption="../report/report.rst",
                    category="Batch reports", labels={"batch": "{batch}", "figure": "page"}),
        cell_stats_parquet=_report_table("cell_stats", "parquet"),
        cell_stats_csv=_report_table("cell_stats", "csv"),
        cell_track_stats_parquet=_report_table("cell_track_stats", "parquet"),
        cell_track_stats_csv=_report_table("cell_track_stats", "csv"),
        rna_track_stats_parquet=_report_table("rna_track_stats", "parquet"),
        rna_track_stats_csv=_report_table("rna_track_stats", "csv"),
        batch_summary_parquet=_report_table("batch_summary", "parquet"),
        batch_summary_csv=_report_table("batch_summary", "csv"),
        qc=_report_figure("qc", "QC"),
        drift=_report_figure("drift", "QC"),
        lineage=_report_figure("lineage", "Cells"),
        trajectories=_report_figure("trajectories", "Motion"),
        speeds=_report_figure("speeds", "Motion"),
        rna_counts=_report_figure("rna_counts", "RNA"),
        colocalisation=_report_figure("colocalisation", "RNA"),
        rna_motion=_report_figure("rna_motion", "RNA"),
    params:
        settings=REPORT,
        channels=config.get("channels", {}),
        code=REPORT_CODE,
    log:
        "results/{batch}/logs/report.log",
    benchmark:
        "results/{batch}/benchmarks/report.tsv"
    threads: 1
    resources:
        mem_mb=REPORT["mem_mb"],
        runtime=REPORT["runtime"],
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_batch.py"


rule summary:
    input:
        expand("results/{batch}/tables/batch_summary.parquet", batch=sorted(BATCHES)),
    output:
        parquet=report("results/summary/batches.parquet", category="Summary",
                       caption="../report/summary.rst"),
        csv="results/summary/batches.csv",
    params:
        code=REPORT_CODE,
    log:
        "results/summary/logs/summary.log",
    benchmark:
        "results/summary/benchmarks/summary.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_summary.py"


TARGETS.append("results/{batch}/report/report.html")
TARGETS.append("results/summary/batches.parquet")
